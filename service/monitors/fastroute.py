"""``POST /monitors/{name}/observations`` as a bare ASGI handler, answered before FastAPI's
routing (as service.fastpath does for the compute endpoints): its routing and request
machinery cost as much as the loss computation of a 1,000-sample batch.

Where the store's calls wait on a network (PostgreSQL) the work runs in the threadpool, off
the event loop. A SQLite commit is a local append of about 1 KB to the WAL (~0.1 ms, less
than the kernel run that the compute endpoints already do on the loop): it runs inline,
since handing it to a thread and back costs more than the commit, twice over on a busy
machine."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from service.errors import ProblemError
from service.fastpath import (
    JSON_HEADERS,
    Reply,
    check_content_type,
    internal_error,
    problem_reply,
    receive_body,
    respond,
)
from service.monitors.ingest import find, observe

PREFIX, SUFFIX = "/monitors/", "/observations"


def monitor_name(path: str) -> str | None:
    """The monitor of an observations path, else None."""
    if path.startswith(PREFIX) and path.endswith(SUFFIX):
        name = path[len(PREFIX) : -len(SUFFIX)]
        if name and "/" not in name:
            return name
    return None


def record(state: Any, name: str, scope: Scope, body: bytes) -> Reply:
    try:
        check_content_type(scope["headers"])
        monitor = find(state.monitors, name)
        settings = state.settings
        result = observe(state.runtime, state.monitors, monitor, body, settings.max_elements, settings.max_segments)
        return 200, orjson.dumps(result), JSON_HEADERS
    except ProblemError as problem:
        return problem_reply(problem)


async def answer(state: Any, name: str, scope: Scope, receive: Receive, send: Send, max_body: int) -> None:
    body = await receive_body(scope, receive, send, max_body)
    if body is None:
        return
    try:
        if state.monitors.waits_on_network:
            status, payload, headers = await run_in_threadpool(record, state, name, scope, body)
        else:
            status, payload, headers = record(state, name, scope, body)
    except Exception:  # a bug or a database failure
        status, payload, headers = internal_error(scope, "the server failed to record these observations")
    await respond(send, status, payload, headers)
