"""The binary request path of the client (Client.request_raw): keep-alive per
thread, Content-Length and chunked answers, reconnecting after an idle close,
errors.  Against a scripted unix-socket server."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from typing import Callable, Iterator

import pytest

from skiff import _client
from skiff.exception import ConnectionError, NotFoundError

Script = Callable[[socket.socket, bytes], bool]


def _read_request(conn: socket.socket, buf: bytearray) -> bytes:
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return b""
        buf += data
    i = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:i])
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    while len(buf) < i + n:
        buf += conn.recv(65536)
    req = bytes(buf[:i + n])
    del buf[:i + n]
    return req


@pytest.fixture
def server() -> Iterator[tuple[str, list[Script], list[int]]]:
    """(socket path, scripts, connection count): each request is answered by
    the next script, which returns whether to keep the connection open."""
    scripts: list[Script] = []
    conns = [0]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.sock")
        ls = socket.socket(socket.AF_UNIX)
        ls.bind(path)
        ls.listen(8)

        def serve(conn: socket.socket) -> None:
            buf = bytearray()
            with conn:
                while True:
                    req = _read_request(conn, buf)
                    if not req or not scripts:
                        return
                    if not scripts.pop(0)(conn, req):
                        return

        def accept() -> None:
            while True:
                try:
                    conn, _ = ls.accept()
                except OSError:
                    return
                conns[0] += 1
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        yield path, scripts, conns
        ls.close()


def reply(raw: bytes, keep: bool = True) -> Script:
    def script(conn: socket.socket, req: bytes) -> bool:
        conn.sendall(raw)
        return keep
    return script


def test_content_length_keep_alive(server: tuple) -> None:
    path, scripts, conns = server
    body = os.urandom(3 << 20)
    scripts += [reply(b"HTTP/1.1 200 OK\r\nSkiff-Status: 0\r\nContent-Length: 2\r\n\r\nhi"),
                reply(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)]
    c = _client.Client("unix:" + path)
    r = c.request_raw("POST", "/x", b"payload")
    assert (r.status, r.headers["skiff-status"], bytes(r.body)) == (200, "0", b"hi")
    r = c.request_raw("GET", "/y")
    assert bytes(r.body) == body
    assert conns[0] == 1


def test_chunked_answer(server: tuple) -> None:
    path, scripts, _ = server
    scripts.append(reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"3\r\nabc\r\n5;ext=1\r\ndefgh\r\n0\r\nTrailer: x\r\n\r\n"))
    r = _client.Client("unix:" + path).request_raw("GET", "/c")
    assert bytes(r.body) == b"abcdefgh"


def test_connection_close_body(server: tuple) -> None:
    path, scripts, conns = server
    scripts += [reply(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-eof", keep=False),
                reply(b"HTTP/1.1 204 No Content\r\n\r\n")]
    c = _client.Client("unix:" + path)
    assert bytes(c.request_raw("GET", "/a").body) == b"until-eof"
    assert c.request_raw("GET", "/b").status == 204
    assert conns[0] == 2


def test_idle_close_is_retried_once(server: tuple) -> None:
    path, scripts, conns = server
    scripts += [reply(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1", keep=False),
                reply(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2")]
    c = _client.Client("unix:" + path)
    assert bytes(c.request_raw("GET", "/1").body) == b"1"
    # The server closed the kept connection without a word: sent again on a new one.
    assert bytes(c.request_raw("GET", "/2").body) == b"2"
    assert conns[0] == 2


def test_error_answers_raise_by_code(server: tuple) -> None:
    path, scripts, _ = server
    body = b'{"error": {"code": "not_found", "message": "no function fu-1"}}'
    scripts.append(reply(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n" % len(body)
                         + body))
    with pytest.raises(NotFoundError, match="no function fu-1"):
        _client.Client("unix:" + path).request_raw("POST", "/v1/functions/fu-1/remote", b"x")


def test_no_server() -> None:
    with pytest.raises(ConnectionError):
        _client.Client("unix:/nonexistent/skiff.sock").request_raw("GET", "/")


def test_each_thread_has_its_own_connection(server: tuple) -> None:
    path, scripts, conns = server
    scripts += [reply(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")] * 4
    c = _client.Client("unix:" + path)
    c.request_raw("GET", "/")
    c.request_raw("GET", "/")
    t = threading.Thread(target=lambda: (c.request_raw("GET", "/"), c.request_raw("GET", "/")))
    t.start()
    t.join()
    assert conns[0] == 2
