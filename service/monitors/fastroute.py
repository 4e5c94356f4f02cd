"""``POST /monitors/{name}/observations`` as a bare ASGI handler, answered before FastAPI's
routing (as service.fastpath does for the compute endpoints): its routing and request
machinery cost as much as the loss computation of a 1,000-sample batch.

Where the store's calls wait on a network (PostgreSQL) the work runs in the threadpool, off
the event loop. A SQLite commit is a local append of about 1 KB to the WAL (~0.1 ms, less
than the kernel run that the compute endpoints already do on the loop): it runs inline,
since handing it to a thread and back costs more than the commit, twice over on a busy
machine."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from service.errors import PROBLEM_JSON, ProblemError, refuse
from service.fastpath import Headers, check_content_type, read_body, respond
from service.monitors.ingest import find, observe

log = logging.getLogger("lossd.monitors")
PREFIX, SUFFIX = "/monitors/", "/observations"
JSON_HEADERS: Headers = [(b"content-type", b"application/json")]


def monitor_name(path: str) -> str | None:
    """The monitor of an observations path, else None."""
    if path.startswith(PREFIX) and path.endswith(SUFFIX):
        name = path[len(PREFIX) : -len(SUFFIX)]
        if name and "/" not in name:
            return name
    return None


def record(state: Any, name: str, scope: Scope, body: bytes) -> tuple[int, bytes, Headers]:
    try:
        check_content_type(scope["headers"])
        monitor = find(state.monitors, name)
        result = observe(state.runtime, state.monitors, monitor, body, state.settings.max_elements)
        return 200, orjson.dumps(result), JSON_HEADERS
    except ProblemError as problem:
        return problem.status, problem.body(), [(b"content-type", PROBLEM_JSON.encode())]


async def answer(state: Any, name: str, scope: Scope, receive: Receive, send: Send, max_body: int) -> None:
    try:
        body = await read_body(receive, scope, max_body)
    except HTTPException as error:
        await refuse(scope, send, error)
        return
    if body is None:
        return
    try:
        if state.monitors.waits_on_network:
            status, payload, headers = await run_in_threadpool(record, state, name, scope, body)
        else:
            status, payload, headers = record(state, name, scope, body)
    except Exception:  # a bug or a database failure, not a client error: log it, answer a bare 500
        log.exception("POST %s failed", scope["path"])
        problem = ProblemError(500, "Internal Server Error", "the server failed to record these observations")
        status, payload, headers = 500, problem.body(), [(b"content-type", PROBLEM_JSON.encode())]
    await respond(send, status, payload, headers)
