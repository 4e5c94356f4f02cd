"""LOSSD_MAX_BODY_BYTES, LOSSD_MAX_ELEMENTS and LOSSD_MAX_CONCURRENCY on a real server
(tests/service/conftest.py): raw HTTP/1.1 connections hold a request open mid-body."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from tests.service.conftest import MAX_BODY, MAX_ELEMENTS, Guarded

MSE = {"predictions": [[0.5, 1.0]], "targets": [[0.0, 1.0]]}
CHUNK = 64 * 1024


def connection(guarded: Guarded) -> http.client.HTTPConnection:
    url = urlsplit(guarded.url)
    # The timeout only keeps a broken server from hanging the suite; nothing asserts on time.
    return http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)


def start_request(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> None:
    """Send the request line and headers only: the body is the caller's to send, or not."""
    conn.putrequest("POST", path, skip_accept_encoding=True)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()


def assert_log_clean(guarded: Guarded) -> None:
    log = guarded.log.read_text()
    assert "Traceback" not in log and "Exception in ASGI" not in log, log


def test_announced_body_over_the_limit_is_refused_before_it_is_sent(guarded: Guarded) -> None:
    conn = connection(guarded)
    headers = {**guarded.authorized(), "Content-Type": "application/json", "Content-Length": str(100 * MAX_BODY)}
    start_request(conn, "/loss/mse", headers)
    conn.send(b"{" + b" " * 1023)  # 1 KiB of the 25 MiB announced, then nothing more
    response = conn.getresponse()
    problem = orjson.loads(response.read())
    assert response.status == 413
    assert response.getheader("Content-Type") == "application/problem+json"
    assert response.getheader("Connection") == "close"
    assert problem["status"] == 413 and f"limit of {MAX_BODY} bytes" in problem["detail"]
    assert "LOSSD_MAX_BODY_BYTES" in problem["detail"]
    conn.close()


def chunked_upload_past_the_limit(guarded: Guarded, path: str) -> tuple[http.client.HTTPResponse, bytes]:
    """A chunked upload (no length announced) that stops just past the limit without ending:
    only a server that counts as it reads can answer it."""
    conn = connection(guarded)
    headers = {**guarded.authorized(), "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    start_request(conn, path, headers)
    for _ in range(MAX_BODY // CHUNK + 1):
        conn.send(b"%x\r\n%s\r\n" % (CHUNK, b" " * CHUNK))
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response, body


def test_chunked_upload_over_the_limit_is_refused_midway(guarded: Guarded) -> None:
    response, body = chunked_upload_past_the_limit(guarded, "/loss/mse")
    assert response.status == 413
    assert response.getheader("Content-Type") == "application/problem+json"
    assert f"limit of {MAX_BODY} bytes" in orjson.loads(body)["detail"]


def test_v2_chunked_upload_over_the_limit_is_an_error_object(guarded: Guarded) -> None:
    response, body = chunked_upload_past_the_limit(guarded, "/v2/models/mse/infer")
    assert response.status == 413
    assert f"limit of {MAX_BODY} bytes" in orjson.loads(body)["error"]


def test_routed_endpoint_refuses_an_announced_body_over_the_limit(guarded: Guarded) -> None:
    """Endpoints behind FastAPI (here the V2 repository index) apply the same limit."""
    conn = connection(guarded)
    start_request(conn, "/v2/repository/index", {**guarded.authorized(), "Content-Length": str(MAX_BODY + 1)})
    conn.send(b" " * 1024)
    response = conn.getresponse()
    body = orjson.loads(response.read())
    assert response.status == 413
    assert "LOSSD_MAX_BODY_BYTES" in body["error"]
    conn.close()
    assert_log_clean(guarded)


def test_body_just_under_the_limit_is_served(guarded: Guarded) -> None:
    body = orjson.dumps(MSE)
    padded = body + b" " * (MAX_BODY - len(body))  # JSON allows trailing whitespace
    response = httpx.post(
        f"{guarded.url}/loss/mse", content=padded, headers={**guarded.authorized(), "Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["loss"] == 0.125


def test_too_many_elements_is_413_naming_the_limit(guarded: Guarded) -> None:
    n = MAX_ELEMENTS // 2 + 1  # two inputs of n elements each: just over the limit
    rest = httpx.post(
        f"{guarded.url}/loss/mse",
        json={"predictions": [[0.0]] * n, "targets": [[0.0]] * n},
        headers=guarded.authorized(),
    )
    assert rest.status_code == 413
    assert rest.headers["content-type"] == "application/problem+json"
    assert f"LOSSD_MAX_ELEMENTS = {MAX_ELEMENTS}" in rest.json()["detail"]
    tensors = [
        {"name": name, "shape": [n, 1], "datatype": "FP32", "data": [0.0] * n} for name in ("predictions", "targets")
    ]
    v2 = httpx.post(f"{guarded.url}/v2/models/mse/infer", json={"inputs": tensors}, headers=guarded.authorized())
    assert v2.status_code == 413
    assert f"LOSSD_MAX_ELEMENTS = {MAX_ELEMENTS}" in v2.json()["error"]
    assert_log_clean(guarded)


def test_a_slow_upload_holds_no_slot(guarded: Guarded) -> None:
    """The server allows one request in flight, and a slot is taken once a body is complete:
    one held open mid-body leaves it free (an upload that never ends is the body timeout's,
    tests/service/test_connections.py). Saturation itself: tests/service/test_load.py."""
    body = orjson.dumps(MSE)
    held = connection(guarded)
    start_request(
        held,
        "/loss/mse",
        {**guarded.authorized(), "Content-Type": "application/json", "Content-Length": str(len(body))},
    )
    held.send(body[:10])
    with httpx.Client(base_url=guarded.url, headers=guarded.authorized()) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        rest = client.post("/loss/mse", json=MSE)
        assert rest.status_code == 200 and rest.json()["loss"] == 0.125
        assert client.get("/v2/models/mse").status_code == 200
        created = client.post("/monitors", json={"name": "slot-free", "loss": "mse"})
        assert created.status_code in (200, 201, 409), created.text
        held.send(body[10:])
        response = held.getresponse()
        assert response.status == 200
        assert orjson.loads(response.read())["loss"] == 0.125
        held.close()
    assert_log_clean(guarded)


@pytest.mark.parametrize("path", ["/loss/mse", "/v2/models/mse/infer", "/monitors"])
def test_an_oversized_body_that_expects_100_continue_is_413_without_it(guarded: Guarded, path: str) -> None:
    """The client waits for "100 Continue" before it sends: the 413 must come instead."""
    conn = connection(guarded)
    headers = {
        **guarded.authorized(),
        "Content-Type": "application/json",
        "Content-Length": str(MAX_BODY + 1),
        "Expect": "100-continue",
    }
    start_request(conn, path, headers)
    assert conn.sock is not None
    first_line = conn.sock.makefile("rb").readline()
    conn.close()
    assert first_line.startswith(b"HTTP/1.1 413"), first_line
