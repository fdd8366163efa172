"""The container side of web endpoints (skiff._web; docs/protocol.md, "Web
requests") in isolation.

Each test runs ``_web.serve`` on a thread against a stand-in for the
gateway on a unix socket: it sends ``wreq``/``wbody``/``wack``/``wabort``/
``wsmsg``/``wsclose`` frames and reads the streams' frames back.  The last
test starts ``python3 -m skiff._container`` itself, to check the hook there.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import shutil
import socket
import struct
import tempfile
import threading
import time
from typing import Any, Iterator, Optional

import pytest

from skiff import _container as C
from skiff import _web

WAIT = 10.0
MiB = 1 << 20


class Gateway:
    """The gateway's end of one container connection."""

    def __init__(self, target: Any, web: dict[str, Any], max_inputs: int = 1) -> None:
        self.dir = tempfile.mkdtemp(prefix="skw-")
        path = os.path.join(self.dir, "w.sock")
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lst.bind(path)
        lst.listen(1)
        conn = C._Conn(path)
        self.sock, _ = lst.accept()
        lst.close()
        self.sock.settimeout(WAIT)
        self.buf = b""
        self.stash: list[tuple[dict[str, Any], bytes]] = []
        self.rc: Optional[int] = None
        self.error: Optional[BaseException] = None
        init = {"t": "init", "web": web, "max_inputs": max_inputs, "exit_grace": 5,
                "timeout": 60}

        def run() -> None:
            try:
                self.rc = _web.serve(conn, target, init)
            except BaseException as e:     # pragma: no cover - reported by close()
                self.error = e
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def ready(self) -> None:
        assert self.recv() == ({"t": "ready"}, b"")
        hdr, _ = self.recv()
        assert hdr["t"] == "want"

    # frames
    def send(self, hdr: dict[str, Any], body: bytes = b"") -> None:
        h = json.dumps(hdr).encode()
        self.sock.sendall(struct.pack("<II", len(h), len(body)) + h + body)

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            got = self.sock.recv(1 << 20)
            if not got:
                raise EOFError("the runtime closed the socket")
            self.buf += got
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def recv(self) -> tuple[dict[str, Any], bytes]:
        if self.stash:
            return self.stash.pop(0)
        while True:
            hl, bl = struct.unpack("<II", self._read(8))
            hdr, body = json.loads(self._read(hl)), self._read(bl)
            if hdr.get("t") != "startup":
                return hdr, body

    def recv_for(self, sid: int, timeout: float = WAIT) -> tuple[dict[str, Any], bytes]:
        """The next frame of stream `sid` (others are kept for later)."""
        for i, (h, b) in enumerate(self.stash):
            if h.get("id") == sid:
                return self.stash.pop(i)
        self.sock.settimeout(timeout)
        try:
            while True:
                hl, bl = struct.unpack("<II", self._read(8))
                h, b = json.loads(self._read(hl)), self._read(bl)
                if h.get("id") == sid:
                    return h, b
                self.stash.append((h, b))
        finally:
            self.sock.settimeout(WAIT)

    def quiet(self, sid: int, secs: float = 0.3) -> bool:
        """True when no frame for `sid` comes within `secs`."""
        try:
            self.stash.append(self.recv_for(sid, secs))
            return False
        except (socket.timeout, TimeoutError):
            return True

    def request(self, sid: int, p: str = "/", m: str = "GET", body: bytes = b"",
                headers: Optional[list[list[str]]] = None, end: bool = True,
                ws: bool = False) -> None:
        self.send({"t": "wreq", "id": sid, "m": m, "p": p, "root": "/app/ep",
                   "h": headers if headers is not None else [["host", "example.test:8000"]],
                   "end": end, "ws": ws, "client": ["127.0.0.1", 5555], "scheme": "http"}, body)

    def response(self, sid: int) -> tuple[int, dict[str, str], bytes]:
        """A whole response; acks what it reads, so any size comes through."""
        hdr, body = self.recv_for(sid)
        assert hdr["t"] == "wres", hdr
        status, headers, parts = hdr["s"], {k.lower(): v for k, v in hdr["h"]}, [body]
        done = hdr["end"]
        if not done and body:
            self.send({"t": "wack", "id": sid, "n": len(body)})
        while not done:
            h, b = self.recv_for(sid)
            if h["t"] == "wend":
                raise AssertionError("the stream was cut")
            assert h["t"] == "wdata", h
            parts.append(b)
            if b:
                self.send({"t": "wack", "id": sid, "n": len(b)})
            done = h["end"]
        return status, headers, b"".join(parts)

    def get(self, sid: int, p: str = "/", **kw: Any) -> tuple[int, dict[str, str], bytes]:
        self.request(sid, p, **kw)
        return self.response(sid)

    def close(self) -> int:
        if self.thread.is_alive():
            try:
                self.send({"t": "stop"})
            except OSError:
                pass
            self.thread.join(WAIT)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.error is not None:
            raise self.error
        assert not self.thread.is_alive(), "serve did not return after stop"
        return self.rc if self.rc is not None else -1


@pytest.fixture
def gateway() -> Iterator[Any]:
    made: list[Gateway] = []

    def make(target: Any, kind: str = "function", method: str = "GET", max_inputs: int = 1,
             **web: Any) -> Gateway:
        w: dict[str, Any] = dict(kind=kind, method=method, label="ep", docs=False)
        w.update(web)
        g = Gateway(target, w, max_inputs)
        made.append(g)
        g.ready()
        return g
    yield make
    for g in made:
        assert g.close() == 0


def detail(body: bytes) -> list[dict[str, Any]]:
    return json.loads(body)["detail"]


# --- function endpoints --------------------------------------------------------

def test_query_parameters_are_converted(gateway: Any) -> None:
    def f(a: int, b: float = 1.5, flag: bool = False, name: Optional[str] = None,
          tags: list[int] = []) -> dict[str, Any]:
        return {"a": a, "b": b, "flag": flag, "name": name, "tags": tags}
    g = gateway(f)
    status, h, body = g.get(1, "/?a=3&flag=yes&name=J%C3%B6rg+K&tags=1&tags=2")
    assert status == 200 and h["content-type"] == "application/json"
    assert json.loads(body) == {"a": 3, "b": 1.5, "flag": True, "name": "Jörg K", "tags": [1, 2]}
    assert body == b'{"a":3,"b":1.5,"flag":true,"name":"J\xc3\xb6rg K","tags":[1,2]}'


def test_missing_and_bad_parameters_are_422(gateway: Any) -> None:
    def f(a: int, on: bool = False) -> int:
        return a
    g = gateway(f)
    status, h, body = g.get(1, "/")
    assert status == 422 and h["content-type"] == "application/json"
    assert detail(body) == [{"type": "missing", "loc": ["query", "a"], "msg": "Field required",
                             "input": None}]
    status, _, body = g.get(2, "/?a=x&on=maybe")
    assert status == 422
    assert [(d["loc"], d["type"], d["input"]) for d in detail(body)] == [
        (["query", "a"], "int_parsing", "x"), (["query", "on"], "bool_parsing", "maybe")]
    assert g.get(3, "/other")[0] == 404
    status, h, _ = g.get(4, "/?a=1", m="POST")
    assert status == 405 and h["allow"] == "GET"


def test_json_body(gateway: Any) -> None:
    def whole(item: dict, n: int = 1) -> dict[str, Any]:
        return {"item": item, "n": n}
    g = gateway(whole, method="POST")
    hj = [["content-type", "application/json"]]
    status, _, body = g.get(1, "/?n=2", m="POST", body=b'{"x": [1, 2]}', headers=hj)
    assert status == 200 and json.loads(body) == {"item": {"x": [1, 2]}, "n": 2}
    status, _, body = g.get(2, "/", m="POST", body=b'{"x": ', headers=hj)
    assert status == 422 and detail(body)[0]["type"] == "json_invalid"
    status, _, body = g.get(3, "/", m="POST", body=b'[1]', headers=hj)
    assert status == 422 and detail(body)[0]["loc"] == ["body"]
    status, _, body = g.get(4, "/", m="POST")
    assert status == 422 and detail(body)[0] == {"type": "missing", "loc": ["body"],
                                                 "msg": "Field required", "input": None}


def test_json_object_fills_parameters(gateway: Any) -> None:
    def f(a: int, b: str = "z") -> list[Any]:
        return [a, b]
    g = gateway(f, method="POST")
    # the body comes in two frames
    g.request(1, "/", m="POST", body=b'{"a": 4, ', end=False)
    g.send({"t": "wbody", "id": 1, "end": True}, b'"b": "q"}')
    assert g.response(1) == (200, {"content-type": "application/json"}, b'[4,"q"]')
    status, _, body = g.get(2, "/", m="POST", body=b'{"a": "no"}')
    assert status == 422 and detail(body)[0]["loc"] == ["body", "a"]


def test_return_types(gateway: Any) -> None:
    values: list[Any] = ["héllo", b"\x00\x01", {"k": None}, None, 3.5]
    g = gateway(lambda: values.pop(0))
    assert g.get(1) == (200, {"content-type": "text/plain; charset=utf-8"}, "héllo".encode())
    assert g.get(2) == (200, {"content-type": "application/octet-stream"}, b"\x00\x01")
    assert g.get(3) == (200, {"content-type": "application/json"}, b'{"k":null}')
    assert g.get(4)[2] == b"null"
    assert g.get(5)[2] == b"3.5"


def test_cors_header_when_origin(gateway: Any) -> None:
    g = gateway(lambda: "hi")
    _, h, _ = g.get(1, headers=[["origin", "https://a.test"]])
    assert h["access-control-allow-origin"] == "*"
    _, h, _ = g.get(2)
    assert "access-control-allow-origin" not in h


def test_burst_of_requests_is_answered_in_order(gateway: Any) -> None:
    def f(i: int) -> int:
        return i * 2
    g = gateway(f)
    for i in range(50):
        g.request(i, f"/?i={i}")
    for i in range(50):
        hdr, body = g.recv()
        assert hdr["id"] == i and hdr["end"] and body == str(i * 2).encode()


def test_generator_streams_before_it_finishes(gateway: Any) -> None:
    go = threading.Event()

    def f() -> Iterator[str]:
        yield "data: one\n\n"
        go.wait(WAIT)
        yield "data: two\n\n"
    g = gateway(f)
    g.request(1)
    hdr, body = g.recv_for(1)
    assert hdr["t"] == "wres" and not hdr["end"] and hdr["s"] == 200
    assert dict(hdr["h"])["content-type"] == "text/event-stream"
    assert body == b"data: one\n\n"
    assert not go.is_set()
    go.set()
    hdr, body = g.recv_for(1)
    assert (hdr["t"], body) == ("wdata", b"data: two\n\n")
    assert g.recv_for(1)[0] == {"t": "wdata", "id": 1, "end": True}
    # the next request is served after the stream (max_inputs 1)
    g.request(2)
    assert g.response(2)[2] == b"data: one\n\ndata: two\n\n"


def test_exception_is_500_without_traceback(gateway: Any, capfd: Any) -> None:
    def f() -> str:
        raise ValueError("the secret detail")
    g = gateway(f)
    status, h, body = g.get(1)
    assert (status, body) == (500, b"Internal Server Error")
    err = capfd.readouterr().err
    assert "ValueError: the secret detail" in err and "Traceback" in err


def test_http_exception_duck_type(gateway: Any) -> None:
    class HTTPException(Exception):
        def __init__(self, status_code: int, detail: Any, headers: Any = None) -> None:
            self.status_code, self.detail, self.headers = status_code, detail, headers

    def f() -> str:
        raise HTTPException(404, "no such item", {"x-why": "gone"})
    g = gateway(f)
    status, h, body = g.get(1)
    assert status == 404 and h["x-why"] == "gone" and json.loads(body) == {"detail": "no such item"}


def test_response_object_duck_types(gateway: Any) -> None:
    class Response:
        status_code = 201
        body = b"<p>made</p>"
        raw_headers = [(b"content-type", b"text/html"), (b"content-length", b"11")]

    class Streaming:
        status_code = 202
        raw_headers = [(b"content-type", b"text/csv")]

        def __init__(self) -> None:
            self.body_iterator = iter([b"a,b\n", "1,2\n"])
    made = [Response(), Streaming()]
    g = gateway(lambda: made.pop(0))
    assert g.get(1) == (201, {"content-type": "text/html"}, b"<p>made</p>")
    assert g.get(2) == (202, {"content-type": "text/csv"}, b"a,b\n1,2\n")


def test_async_function_and_async_generator(gateway: Any) -> None:
    async def f(x: int = 1) -> dict[str, int]:
        await asyncio.sleep(0)
        return {"x": x}
    g = gateway(f)
    assert g.get(1, "/?x=5")[2] == b'{"x":5}'

    async def gen() -> Any:
        for i in range(3):
            yield f"{i};"
            await asyncio.sleep(0)
    g2 = gateway(gen)
    status, h, body = g2.get(1)
    assert body == b"0;1;2;" and h["content-type"] == "text/plain; charset=utf-8"


def test_max_inputs_runs_requests_at_once(gateway: Any) -> None:
    barrier = threading.Barrier(3, timeout=WAIT)

    def f() -> str:
        barrier.wait()
        return "ok"
    g = gateway(f, max_inputs=3)
    for i in range(3):
        g.request(i)
    assert sorted(g.response(i)[2] for i in range(3)) == [b"ok"] * 3


def test_fastapi_app_is_built_when_needed(gateway: Any) -> None:
    pytest.importorskip("fastapi")
    from fastapi import Request

    async def f(request, n=0):  # type: ignore[no-untyped-def]
        return {"n": n, "path": request.url.path, "root": request.scope["root_path"]}
    f.__annotations__ = {"request": Request, "n": int}     # not strings (see __future__)
    g = gateway(f)
    status, h, body = g.get(1, "/?n=2", headers=[["origin", "https://o.test"]])
    assert status == 200 and json.loads(body) == {"n": 2, "path": "/app/ep/", "root": "/app/ep"}
    assert h["access-control-allow-origin"] == "*"
    assert g.get(2, "/?n=x")[0] == 422


def test_sync_generator_respects_the_window(gateway: Any) -> None:
    def f() -> Iterator[bytes]:
        for _ in range(48):
            yield b"x" * (64 << 10)
    g = gateway(f)
    g.request(1)
    got = 0
    while got < MiB:
        got += len(g.recv_for(1)[1])
    assert got == MiB and g.quiet(1)
    g.send({"t": "wack", "id": 1, "n": got})
    while got < 3 * MiB:
        got += len(g.recv_for(1)[1])
        if got % MiB == 0:
            g.send({"t": "wack", "id": 1, "n": MiB})
    assert g.recv_for(1) == ({"t": "wdata", "id": 1, "end": True}, b"")


def test_abort_closes_a_generator(gateway: Any) -> None:
    closed = threading.Event()

    def f() -> Iterator[str]:
        try:
            while True:
                yield "tick"
        finally:
            closed.set()
    g = gateway(f)
    g.request(1)
    assert g.recv_for(1)[0]["t"] == "wres"
    g.send({"t": "wabort", "id": 1})
    while g.recv_for(1)[0]["t"] != "wend":
        pass
    assert closed.wait(WAIT)


def test_pydantic_model_body(gateway: Any) -> None:
    pydantic = pytest.importorskip("pydantic")

    class Item(pydantic.BaseModel):
        name: str
        price: float

    def f(item, q=None):  # type: ignore[no-untyped-def]
        return {"name": item.name, "double": item.price * 2, "q": q}
    f.__annotations__ = {"item": Item}
    g = gateway(f, method="POST")
    status, _, body = g.get(1, "/?q=z", m="POST", body=b'{"name": "a", "price": 2}')
    assert status == 200 and json.loads(body) == {"name": "a", "double": 4.0, "q": "z"}
    status, _, body = g.get(2, "/", m="POST", body=b'{"name": "a"}')
    assert status == 422 and detail(body)[0]["loc"] == ["body", "price"]


def test_docs_builds_a_fastapi_app(gateway: Any) -> None:
    pytest.importorskip("fastapi")

    def f(x: int = 1) -> dict[str, int]:
        return {"x": x}
    f.__annotations__ = {"x": int}
    g = gateway(f, docs=True)
    assert g.get(1, "/?x=4")[2] == b'{"x":4}'
    status, _, body = g.get(2, "/openapi.json")
    assert status == 200 and "paths" in json.loads(body)


# --- ASGI ------------------------------------------------------------------------

async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        raise RuntimeError("no lifespan here")
    if scope["type"] == "websocket":
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": scope["subprotocols"][-1]})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("text") == "bye":
                await send({"type": "websocket.close", "code": 4000})
                continue
            await send({"type": "websocket.send", **{k: v for k, v in msg.items()
                                                     if k in ("text", "bytes")}})
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    info = {k: scope[k] for k in ("method", "path", "root_path", "scheme", "http_version",
                                  "client", "server")}
    info.update(raw_path=scope["raw_path"].decode(), query=scope["query_string"].decode(),
                headers=[[k.decode(), v.decode()] for k, v in scope["headers"]],
                n=len(body), spec=scope["asgi"])
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(info).encode()})


def test_asgi_http_scope_and_body(gateway: Any) -> None:
    g = gateway(lambda: echo_app, kind="asgi")
    g.request(1, "/a%20b/c?x=1", m="PUT", end=False, body=b"x" * 40000,
              headers=[["host", "h.test:8000"], ["x-a", "1"], ["x-a", "2"]])
    g.send({"t": "wbody", "id": 1, "end": False}, b"y" * 40000)
    hdr, _ = g.recv_for(1)
    assert hdr == {"t": "wrack", "id": 1, "n": 80000}
    g.send({"t": "wbody", "id": 1, "end": True}, b"z")
    status, h, body = g.response(1)
    info = json.loads(body)
    assert info == {"method": "PUT", "path": "/a b/c", "root_path": "/app/ep", "scheme": "http",
                    "http_version": "1.1", "client": ["127.0.0.1", 5555],
                    "server": ["h.test", 8000], "raw_path": "/a%20b/c", "query": "x=1",
                    "headers": [["host", "h.test:8000"], ["x-a", "1"], ["x-a", "2"]],
                    "n": 80001, "spec": {"version": "3.0", "spec_version": "2.3"}}


def test_asgi_websocket_echo(gateway: Any) -> None:
    g = gateway(lambda: echo_app, kind="asgi")
    g.request(1, "/ws", ws=True, headers=[["sec-websocket-protocol", "a, chat"]])
    assert g.recv_for(1) == ({"t": "wsacc", "id": 1, "h": [["sec-websocket-protocol", "chat"]]},
                             b"")
    g.send({"t": "wsmsg", "id": 1, "bin": False}, "hé".encode())
    assert g.recv_for(1) == ({"t": "wsmsg", "id": 1, "bin": False}, "hé".encode())
    g.send({"t": "wsmsg", "id": 1, "bin": True}, b"\x00\xff")
    assert g.recv_for(1) == ({"t": "wsmsg", "id": 1, "bin": True}, b"\x00\xff")
    g.send({"t": "wsmsg", "id": 1, "bin": False}, b"bye")
    assert g.recv_for(1)[0] == {"t": "wsclose", "id": 1, "code": 4000, "reason": ""}
    g.send({"t": "wsclose", "id": 1, "code": 4000, "reason": ""})
    assert g.recv_for(1)[0] == {"t": "wend", "id": 1}


def test_asgi_response_window(gateway: Any) -> None:
    piece = 64 << 10

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(3 * MiB // piece):
            await send({"type": "http.response.body", "body": b"x" * piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    g = gateway(lambda: app, kind="asgi")
    g.request(1)
    got = 0
    while got < MiB:
        hdr, body = g.recv_for(1)
        assert hdr["t"] in ("wres", "wdata") and not hdr["end"]
        got += len(body)
    assert got == MiB
    assert g.quiet(1)        # no room: the app waits in send
    g.send({"t": "wack", "id": 1, "n": MiB})
    while got < 3 * MiB:
        hdr, body = g.recv_for(1)
        got += len(body)
        if got == 2 * MiB:
            assert g.quiet(1)
            g.send({"t": "wack", "id": 1, "n": MiB})
    g.send({"t": "wack", "id": 1, "n": MiB})
    assert g.recv_for(1) == ({"t": "wdata", "id": 1, "end": True}, b"")


def test_asgi_abort_is_a_disconnect(gateway: Any) -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        assert (await receive())["type"] == "http.request"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        seen.append((await receive())["type"])
    g = gateway(lambda: app, kind="asgi")
    g.request(1)
    hdr, body = g.recv_for(1)
    assert hdr["t"] == "wres" and body == b"first"
    g.send({"t": "wabort", "id": 1})
    assert g.recv_for(1)[0] == {"t": "wend", "id": 1}
    assert seen == ["http.disconnect"]


def test_asgi_errors_and_lifespan(gateway: Any) -> None:
    events: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                events.append(msg["type"])
                if msg["type"] == "lifespan.startup":
                    scope["state"]["db"] = "conn"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] == "/state":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": scope["state"]["db"].encode()})
            return
        raise KeyError("boom")
    g = gateway(lambda: app, kind="asgi")
    assert events == ["lifespan.startup"]
    assert g.get(1, "/state")[2] == b"conn"
    assert g.get(2, "/fail")[:3:2] == (500, b"Internal Server Error")
    assert g.close() == 0
    assert events == ["lifespan.startup", "lifespan.shutdown"]


def test_asgi_lifespan_failure_is_import_error() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})
    g = Gateway(lambda: app, {"kind": "asgi"})
    hdr, _ = g.recv()
    assert hdr["t"] == "import_error" and "no database" in hdr["message"]
    g.thread.join(WAIT)
    assert g.rc == 1


def test_starlette_app(gateway: Any) -> None:
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Any) -> Any:
        return PlainTextResponse(f"hi {request.query_params['n']} {request.url.path}")
    app = Starlette(routes=[Route("/hello", hello)])
    g = gateway(lambda: app, kind="asgi")
    status, _, body = g.get(1, "/hello?n=3")
    assert status == 200 and body.startswith(b"hi 3")


# --- WSGI -----------------------------------------------------------------------

def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
    if environ["PATH_INFO"] == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"a", b"", b"b"])
    if environ["PATH_INFO"] == "/fail":
        raise RuntimeError("wsgi boom")
    first = environ["wsgi.input"].readline()
    rest = environ["wsgi.input"].read()
    info = {k: environ.get(k) for k in ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO",
                                         "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH",
                                         "SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR",
                                         "HTTP_X_A", "wsgi.url_scheme")}
    info.update(first=first.decode(), rest=len(rest))
    start_response("201 Created", [("Content-Type", "application/json")])
    return [json.dumps(info).encode()]


def test_wsgi_app(gateway: Any) -> None:
    g = gateway(lambda: wsgi_app, kind="wsgi", max_inputs=2)
    g.request(1, "/p%C3%A5th?q=1", m="POST", end=False, body=b"line one\nx",
              headers=[["host", "h.test"], ["content-type", "text/plain"],
                       ["content-length", "70010"], ["x-a", "1"], ["x-a", "2"]])
    g.send({"t": "wbody", "id": 1, "end": True}, b"y" * 70000)
    hdr, _ = g.recv_for(1)
    assert hdr["t"] == "wrack" and hdr["n"] >= 64 << 10
    status, h, body = g.response(1)
    assert status == 201 and h["content-type"] == "application/json"
    assert json.loads(body) == {
        "REQUEST_METHOD": "POST", "SCRIPT_NAME": "/app/ep", "PATH_INFO": "/påth".encode().decode(
            "latin-1"), "QUERY_STRING": "q=1", "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": "70010", "SERVER_NAME": "h.test", "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_X_A": "1,2", "wsgi.url_scheme": "http",
        "first": "line one\n", "rest": 70001}
    assert g.get(2, "/stream") == (200, {"content-type": "text/plain"}, b"ab")
    assert g.get(3, "/fail")[2] == b"Internal Server Error"
    assert g.get(4, "/ws", ws=True)[0] == 501


def test_flask_app(gateway: Any) -> None:
    flask = pytest.importorskip("flask")
    app = flask.Flask("t")

    @app.route("/hi")
    def hi() -> str:
        return "hi " + flask.request.args["n"]
    g = gateway(lambda: app, kind="wsgi")
    assert g.get(1, "/hi?n=2")[2] == b"hi 2"


# --- web_server -------------------------------------------------------------------

def test_web_server_relay(gateway: Any) -> None:
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            n = int(self.headers.get("content-length") or 0)
            data = self.rfile.read(n)
            out = json.dumps({"path": self.path, "n": len(data),
                              "host": self.headers["host"]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a: Any) -> None:
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    port = srv.server_address[1]
    g = gateway(lambda: threading.Thread(target=srv.serve_forever, daemon=True).start(),
                kind="server", port=port, startup_timeout=5)
    try:
        for i in range(2):      # the second goes over the same connection
            status, h, body = g.get(i, "/x?y=1", m="POST", body=b"abc",
                                    headers=[["host", "h.test"]])
            assert status == 200 and json.loads(body) == {"path": "/x?y=1", "n": 3,
                                                          "host": "h.test"}
    finally:
        srv.shutdown()
        srv.server_close()


def test_web_server_that_never_listens() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    g = Gateway(lambda: None, {"kind": "server", "port": port, "startup_timeout": 0.3})
    hdr, _ = g.recv()
    assert hdr["t"] == "import_error" and str(port) in hdr["message"]
    g.thread.join(WAIT)
    assert g.rc == 1


# --- stop and the container hook -------------------------------------------------

def test_stop_finishes_open_streams(gateway: Any) -> None:
    go = threading.Event()

    def f() -> Iterator[str]:
        yield "a"
        go.wait(WAIT)
        yield "b"
    g = gateway(f, max_inputs=2)
    g.request(1)
    assert g.recv_for(1)[1] == b"a"
    g.send({"t": "stop"})
    g.request(2)
    assert g.response(2)[0] == 503
    time.sleep(0.1)
    assert g.thread.is_alive()
    go.set()
    assert g.recv_for(1) == ({"t": "wdata", "id": 1, "end": False}, b"b")
    assert g.recv_for(1)[0] == {"t": "wdata", "id": 1, "end": True}
    g.thread.join(WAIT)
    assert not g.thread.is_alive() and g.rc == 0


def test_container_main_serves_web(tmp_path: Any) -> None:
    from test_container import Worker
    w = Worker(tmp_path, """
        def f(name: str = "world"):
            return f"hello {name}"
    """, {"web": {"kind": "function", "method": "GET"}, "max_inputs": 1})
    try:
        assert w.recv()[0] == {"t": "ready"}
        assert w.recv()[0] == {"t": "want", "n": 1}
        w.send({"t": "wreq", "id": 9, "m": "GET", "p": "/?name=skiff", "root": "/a/f",
                "h": [], "end": True, "ws": False, "client": ["1.2.3.4", 1], "scheme": "http"})
        hdr, body = w.recv()
        assert hdr == {"t": "wres", "id": 9, "s": 200,
                       "h": [["content-type", "text/plain; charset=utf-8"]], "end": True}
        assert body == b"hello skiff"
        w.send({"t": "stop"})
    finally:
        assert w.close() == 0
