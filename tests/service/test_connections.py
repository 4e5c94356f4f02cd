"""The limits service.protocol enforces per connection, on a real server with small ones:
header size (431), header and body timeouts (408), the budget of body bytes being received
(503) and the number of connections (503). Raw sockets send exactly what a hostile or slow
client would. Socket timeouts only keep a broken server from hanging the suite: nothing
asserts on time."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.server import Server, running_server

MAX_HEADERS = 8192
MAX_BODY = 1024 * 1024
BUDGET = 2 * MAX_BODY
MAX_CONNECTIONS = 12
TIMEOUT = 3  # seconds, both header and body timeouts: short enough to wait for here
MSE = b'{"predictions": [1.0], "targets": [0.0]}'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("connections") / "server.log"
    env = {
        "LOSSD_PROVIDER": "cpu",
        "LOSSD_MAX_HEADER_BYTES": str(MAX_HEADERS),
        "LOSSD_MAX_BODY_BYTES": str(MAX_BODY),
        "LOSSD_RECEIVE_BUDGET_BYTES": str(BUDGET),
        "LOSSD_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "LOSSD_HEADER_TIMEOUT_SECONDS": str(TIMEOUT),
        "LOSSD_BODY_TIMEOUT_SECONDS": str(TIMEOUT),
        "LOSSD_DATA_DIR": str(log.parent / "data"),
    }
    with running_server(env, timeout=240, log=log) as running:
        yield running
    text = log.read_text()
    assert "Traceback" not in text and "Exception in ASGI" not in text, text


def connect(server: Server) -> socket.socket:
    port = int(server.url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=60)


def head(path: str, extra: bytes = b"", method: bytes = b"POST") -> bytes:
    return b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n%s\r\n" % (
        method,
        path.encode(),
        extra,
    )


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:  # the server closed with our bytes unread: what it sent came first
            return data
        if not chunk:
            return data
        data += chunk


def response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of the one response in ``data``."""
    head_part, _, body = data.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def refused(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, Any]]:
    status, headers, body = response(read_until_closed(sock))
    sock.close()
    return status, headers, orjson.loads(body)


def detail(problem: dict[str, Any]) -> str:
    return str(problem.get("detail") or problem["error"])


# --- headers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "media_type"), [("/loss/mse", "application/problem+json"), ("/v2/models/mse/infer", "application/json")]
)
def test_headers_over_the_limit_are_431_naming_it(server: Server, path: str, media_type: str) -> None:
    sock = connect(server)
    sock.sendall(head(path, b"X-Pad: %s\r\nContent-Length: %d\r\n" % (b"a" * MAX_HEADERS, len(MSE))) + MSE)
    status, headers, problem = refused(sock)
    assert status == 431
    assert headers["content-type"] == media_type and headers["connection"] == "close"
    assert f"limit of {MAX_HEADERS} bytes" in detail(problem) and "LOSSD_MAX_HEADER_BYTES" in detail(problem)


def test_headers_under_the_limit_are_served(server: Server) -> None:
    sock = connect(server)
    pad = b"a" * (MAX_HEADERS - 512)
    sock.sendall(head("/loss/mse", b"X-Pad: %s\r\nContent-Length: %d\r\nConnection: close\r\n" % (pad, len(MSE))) + MSE)
    status, _, body = refused(sock)
    assert status == 200 and body["loss"] == 1.0


def test_a_header_that_never_ends_is_refused_as_it_grows(server: Server) -> None:
    """httptools joins a header that arrives in pieces anew with each piece (quadratic): the
    server must stop reading soon after the limit, not when the header ends."""
    sock = connect(server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
    piece, sent, answered = b"a" * 1024, 0, False
    while sent < 256 * MAX_HEADERS and not answered:
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(piece)
        answered = bool(select.select([sock], [], [], 0.001)[0])
    assert sent < 256 * MAX_HEADERS, "the server read a 2 MiB header without answering"
    status, _, problem = refused(sock)
    assert status == 431 and "LOSSD_MAX_HEADER_BYTES" in problem["detail"]


# --- time --------------------------------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    sock = connect(server)
    assert read_until_closed(sock) == b""  # closed by the server, silently: no request had begun
    sock.close()


def test_headers_that_do_not_arrive_in_time_are_408(server: Server) -> None:
    sock = connect(server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and the blank line never comes
    status, headers, problem = refused(sock)
    assert status == 408 and headers["content-type"] == "application/problem+json"
    assert "LOSSD_HEADER_TIMEOUT_SECONDS" in problem["detail"]


def test_a_later_request_whose_headers_do_not_arrive_in_time_is_408(server: Server) -> None:
    """A kept-alive connection: the first request is answered, the second's headers never end."""
    sock = connect(server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    first = b""
    while b"\r\n\r\n" not in first or not first.endswith(b"}"):
        first += sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    sock.sendall(b"GET /health HTTP/1.1\r\n")
    status, _, problem = refused(sock)
    assert status == 408 and "LOSSD_HEADER_TIMEOUT_SECONDS" in problem["detail"]


@pytest.mark.parametrize("path", ["/loss/mse", "/v2/models/mse/infer", "/monitors"])
def test_a_body_that_does_not_arrive_in_time_is_408(server: Server, path: str) -> None:
    sock = connect(server)
    sock.sendall(head(path, b"Content-Length: 100\r\n") + b'{"predictions"')
    status, headers, problem = refused(sock)
    assert status == 408 and headers["connection"] == "close"
    assert f"within {TIMEOUT} s" in detail(problem) and "LOSSD_BODY_TIMEOUT_SECONDS" in detail(problem)


# --- memory ------------------------------------------------------------------------------------


def partial_upload(server: Server, sent: int) -> socket.socket:
    """An upload of the largest body that stops after ``sent`` bytes."""
    sock = connect(server)
    sock.sendall(head("/loss/mse", b"Content-Length: %d\r\n" % MAX_BODY) + b" " * sent)
    return sock


def full_upload(server: Server) -> tuple[int, dict[str, str], dict[str, Any]]:
    sock = connect(server)
    body = MSE + b" " * (MAX_BODY - len(MSE))
    sock.sendall(head("/loss/mse", b"Content-Length: %d\r\nConnection: close\r\n" % MAX_BODY) + body)
    return refused(sock)


def wait_until_served(server: Server) -> None:
    """A request answered after the uploads were sent: the server has read what they sent
    (one event loop, bytes handled in order of arrival)."""
    sock = connect(server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert response(read_until_closed(sock))[0] == 200
    sock.close()


def test_uploads_past_the_receive_budget_are_503_and_closing_returns_their_share(server: Server) -> None:
    held = [partial_upload(server, 3 * MAX_BODY // 4) for _ in range(2)]  # 1.5 MiB of a 2 MiB budget
    wait_until_served(server)
    announced = connect(server)  # 1 MiB more cannot fit: refused before it is sent
    announced.sendall(head("/loss/mse", b"Content-Length: %d\r\n" % MAX_BODY))
    status, headers, problem = refused(announced)
    assert status == 503 and headers["retry-after"] == "1"
    assert f"limit of {BUDGET} bytes" in problem["detail"] and "LOSSD_RECEIVE_BUDGET_BYTES" in problem["detail"]
    chunked = connect(server)  # no length announced: cut off as it passes the budget
    chunked.sendall(head("/loss/mse", b"Transfer-Encoding: chunked\r\n"))
    try:
        for _ in range(MAX_BODY // 65536):
            chunked.sendall(b"%x\r\n%s\r\n" % (65536, b" " * 65536))
    except (BrokenPipeError, ConnectionResetError):
        pass
    status, _, problem = refused(chunked)
    assert status == 503 and "LOSSD_RECEIVE_BUDGET_BYTES" in problem["detail"]
    for sock in held:
        sock.close()
    wait_until_served(server)
    status, _, body = full_upload(server)
    assert status == 200 and body["loss"] == 1.0


# --- connections -------------------------------------------------------------------------------


def test_a_connection_past_the_limit_is_503_and_closed(server: Server) -> None:
    opened = [connect(server) for _ in range(MAX_CONNECTIONS + 1)]
    try:
        status, headers, problem = refused(opened[-1])  # accepted in order: the last is one too many
        assert status == 503 and headers["retry-after"] == "1"
        assert f"limit of {MAX_CONNECTIONS} connections" in problem["detail"]
        assert "LOSSD_MAX_CONNECTIONS" in problem["detail"]
    finally:
        for sock in opened:
            sock.close()
    wait_until_served(server)  # closed connections free their places
