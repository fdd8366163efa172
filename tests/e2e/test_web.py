"""Web endpoints end to end (issue 5): the C gateway of the session server
(conftest.py runs it with ``--web-port 0``) in front of real containers, over
real sockets (http.client, raw sockets, the websockets client).

Two apps are started once for the module with ``with app.run():`` from
module files written into a temporary folder (the containers import them by
name from there, as in test_scaling.py):

- ``WEB_APP``: ``fastapi_endpoint`` functions (no FastAPI in the image), a raw
  ASGI app (WebSocket echo, SHA-256 of an upload, a plain text page), a
  ``web_server`` running ``python3 -m http.server``, a protected endpoint and
  one left scaled to zero;
- ``FW_APP``: FastAPI through ``asgi_app`` and Flask through ``wsgi_app``, in
  ``debian_slim().apt_install("python3-fastapi", "python3-flask")`` (the
  first run debootstraps it, a minute or two; SKIFF_TEST_HOME keeps it).

The folder of WEB_APP is bind-mounted in its containers, so a test can
release a waiting generator by creating a file there.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import importlib.util
import io
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit

import pytest

from conftest import SKIFF_BIN, Server

WEB_APP = '''
import os
import time

import skiff

MARKER = "@MARKER@"
app = skiff.App("t-web-" + MARKER)


@app.function()
@skiff.fastapi_endpoint()
def add(a: int, b: int = 1):
    return {"sum": a + b}


@app.function()
@skiff.fastapi_endpoint(method="POST")
def echo(item: dict):
    return item


@app.function()
@skiff.fastapi_endpoint()
def boom():
    raise RuntimeError("kaboom-secret-" + MARKER)


@app.function()
@skiff.fastapi_endpoint()
def slow_stream(token: str):
    """Yields "first", then waits until the test creates release-<token>
    next to this file (at most 20 s), then yields "last"."""
    yield "first\\n"
    release = os.path.join(os.path.dirname(os.path.abspath(__file__)), "release-" + token)
    deadline = time.monotonic() + 20
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            yield "gave-up-waiting\\n"
            return
        time.sleep(0.02)
    yield "last\\n"


@app.function()
@skiff.fastapi_endpoint()
def ticks(n: int = 3):
    for i in range(n):
        yield f"data: tick {i}\\n\\n"


@app.function()
@skiff.fastapi_endpoint(requires_proxy_auth=True)
def guarded():
    return {"ok": True}


@app.function(min_containers=0)
@skiff.fastapi_endpoint()
def cold():
    return {"cold": True}


@app.function(memory=512)
@skiff.asgi_app(label="raw")
def raw_asgi():
    """No framework: /ws echoes WebSocket messages, POST /sha256 answers the
    SHA-256 of the body (read incrementally), anything else a text page."""
    import hashlib
    import json

    async def asgi(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            msg = await receive()
            assert msg["type"] == "websocket.connect", msg
            await send({"type": "websocket.accept"})
            while True:
                msg = await receive()
                if msg["type"] == "websocket.disconnect":
                    print(f"ws-closed-{MARKER} code={msg.get('code')}", flush=True)
                    return
                if msg.get("text") is not None:
                    await send({"type": "websocket.send", "text": msg["text"]})
                else:
                    await send({"type": "websocket.send", "bytes": msg["bytes"]})
        if scope["path"].endswith("/sha256"):
            h = hashlib.sha256()
            n = 0
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    return
                body = msg.get("body", b"")
                h.update(body)
                n += len(body)
                if not msg.get("more_body"):
                    break
            out = json.dumps({"sha256": h.hexdigest(), "bytes": n}).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": out})
            return
        body = b"hello from raw asgi\\n"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return asgi


@app.function()
@skiff.web_server(8765, startup_timeout=30)
def files():
    import subprocess
    import sys
    import tempfile

    root = tempfile.mkdtemp()
    with open(os.path.join(root, "hello.txt"), "w") as f:
        f.write("served by http.server " + MARKER + "\\n")
    subprocess.Popen([sys.executable, "-m", "http.server", "8765", "--bind", "127.0.0.1",
                      "--directory", root])
'''

FW_APP = '''
import skiff

MARKER = "@MARKER@"
app = skiff.App("t-webfw-" + MARKER)
image = skiff.Image.debian_slim().apt_install("python3-fastapi", "python3-flask")


@app.function(image=image)
@skiff.asgi_app()
def fastapi_app():
    from fastapi import FastAPI
    from pydantic import BaseModel

    class Item(BaseModel):
        name: str
        qty: int

    api = FastAPI()

    @api.post("/items/{item_id}")
    def put_item(item_id: int, item: Item):
        return {"item_id": item_id, "name": item.name, "double": item.qty * 2}

    return api


@app.function(image=image)
@skiff.wsgi_app()
def flask_app():
    from flask import Flask, jsonify, request

    web = Flask(__name__)

    @web.route("/hello/<name>")
    def hello(name):
        return jsonify(greeting=f"hello {name}", q=request.args.get("q"))

    return web
'''

REQUEST_TIMEOUT = 120.0   # a first request may wait for a cold start


# --- helpers ----------------------------------------------------------------

class _Tee(io.TextIOBase):
    """Writes to a stream and keeps a copy (to see what app.run() printed)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.copy = io.StringIO()

    def write(self, s: str) -> int:
        self.copy.write(s)
        return self.stream.write(s)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False


def load_module(folder: Path, name: str, source: str) -> ModuleType:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


class Running:
    """A module's app, running for the module's tests."""

    def __init__(self, mod: ModuleType, folder: Path, marker: str, printed: str) -> None:
        self.mod = mod
        self.folder = folder
        self.marker = marker
        self.printed = printed
        self.app = mod.app
        self.app_id: str = mod.app.app_id
        self.app_name = mod.app.name

    def url(self, fn: str) -> str:
        url = getattr(self.mod, fn).get_web_url()
        assert url, f"{fn}.get_web_url() returned {url!r} while its app runs"
        return str(url)

    def addr(self, fn: str) -> tuple[str, int, str]:
        """(host, port, path) of a function's URL."""
        u = urlsplit(self.url(fn))
        return u.hostname or "127.0.0.1", u.port or 80, u.path


@contextlib.contextmanager
def running(folder: Path, prefix: str, source: str) -> Iterator[Running]:
    marker = secrets.token_hex(5)
    name = f"{prefix}_{marker}"
    mod = load_module(folder, name, source.replace("@MARKER@", marker))
    tee = _Tee(sys.stderr)
    ctx = mod.app.run()
    with contextlib.redirect_stderr(tee):
        ctx.__enter__()
    try:
        yield Running(mod, folder, marker, tee.copy.getvalue())
    finally:
        ctx.__exit__(None, None, None)
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def web(server: Server, image: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with running(tmp_path_factory.mktemp("webapp"), "web_app", WEB_APP) as r:
        yield r


@pytest.fixture(scope="module")
def fw(server: Server, image: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    import skiff

    msg = ""
    try:
        skiff.Image.debian_slim().apt_install("python3-fastapi", "python3-flask").hydrate()
    except skiff.exception.Error as e:
        msg = str(e)
    if msg:
        if "Couldn't find these debs" in msg or "Unable to locate package" in msg:
            pytest.skip(f"python3-fastapi/python3-flask are not available from the Debian "
                        f"mirror: {msg[-400:]}")
        pytest.fail(f"could not build debian_slim().apt_install(\"python3-fastapi\", "
                    f"\"python3-flask\") for the FastAPI and Flask endpoints:\n{msg}",
                    pytrace=False)
    with running(tmp_path_factory.mktemp("webfw"), "web_fw_app", FW_APP) as r:
        yield r


def fetch(url: str, method: str = "GET", body: Optional[bytes] = None,
          headers: Optional[dict[str, str]] = None,
          timeout: float = REQUEST_TIMEOUT) -> tuple[int, dict[str, str], bytes]:
    """One request with http.client: (status, lower-case headers, body)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        path = u.path + (f"?{u.query}" if u.query else "")
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def app_logs(app_id: str) -> str:
    proc = subprocess.run([SKIFF_BIN, "app", "logs", app_id], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"skiff app logs {app_id}: exit {proc.returncode}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def wait_for_log(app_id: str, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        logs = app_logs(app_id)
        if text in logs or time.monotonic() > deadline:
            return logs
        time.sleep(0.5)


def request_bytes(method: str, path: str, host: str = "127.0.0.1",
                  headers: Optional[list[tuple[str, str]]] = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    for k, v in headers or []:
        lines.append(f"{k}: {v}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class RawConn:
    """One TCP connection to the gateway, and a small HTTP/1.1 response reader."""

    def __init__(self, host: str, port: int, timeout: float = REQUEST_TIMEOUT) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"the gateway closed the connection (unread: {self.buf[:200]!r})")
        self.buf += chunk

    def read_until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            self._fill()
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_head(self) -> tuple[int, list[tuple[str, str]]]:
        head = self.read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split()[1])
        headers = []
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers.append((k.strip().lower(), v.strip()))
        return status, headers

    def read_response(self, head: bool = False) -> tuple[int, dict[str, str], bytes]:
        status, hlist = self.read_head()
        headers = dict(hlist)
        if head or status in (204, 304) or 100 <= status < 200:
            return status, headers, b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size = int(self.read_until(b"\r\n").split(b";")[0].strip(), 16)
                if size == 0:
                    while self.read_until(b"\r\n") != b"\r\n":
                        pass
                    return status, headers, body
                body += self.read_exact(size)
                assert self.read_exact(2) == b"\r\n", "chunk not followed by CRLF"
        if "content-length" in headers:
            return status, headers, self.read_exact(int(headers["content-length"]))
        body = self.buf
        self.buf = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return status, headers, body
            body += chunk


def send_malformed(host: str, port: int, data: bytes) -> tuple[bytes, bool]:
    """Sends data on a new connection and reads what comes back until the
    gateway closes it: (bytes read, whether it closed within 15 s)."""
    s = socket.create_connection((host, port), timeout=15)
    got = b""
    closed = False
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            got += chunk
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        pass
    finally:
        s.close()
    return got, closed


def status_of(raw: bytes) -> Optional[int]:
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


def function_info(client: Any, fn: Any) -> dict[str, Any]:
    return client.request("GET", f"/v1/functions/{fn.object_id}")


# --- 1. requests, JSON, errors ----------------------------------------------

def test_get_with_query_parameters_returns_json(web: Running) -> None:
    status, headers, body = fetch(web.url("add") + "?a=2&b=40")
    assert status == 200, f"GET add?a=2&b=40 answered {status}: {body[:500]!r}"
    assert headers.get("content-type", "").startswith("application/json"), headers
    assert json.loads(body) == {"sum": 42}, f"add(2, 40) should answer {{'sum': 42}}: {body!r}"
    status, _, body = fetch(web.url("add") + "?a=5")
    assert (status, json.loads(body)) == (200, {"sum": 6}), \
        f"the default b=1 was not used: {status} {body!r}"


def test_post_json_body_is_echoed(web: Running) -> None:
    item = {"name": "widget", "tags": ["a", "b"], "n": 3, "nested": {"x": 1.5}}
    status, headers, body = fetch(web.url("echo"), "POST", json.dumps(item).encode(),
                                  {"Content-Type": "application/json"})
    assert status == 200, f"POST echo answered {status}: {body[:500]!r}"
    assert json.loads(body) == item, f"the JSON body did not come back as sent: {body!r}"


def test_unknown_paths_are_404(web: Running) -> None:
    base = web.url("add").rsplit("/", 2)[0]   # http://host:port
    for url in (f"{base}/{web.app_name}/no-such-label", f"{base}/no-such-app-{web.marker}/add"):
        status, _, body = fetch(url)
        assert status == 404, f"GET {url} (no such endpoint) answered {status}: {body[:300]!r}"
        assert json.loads(body) == {"detail": "Not Found"}, body


def test_wrong_method_is_405_with_allow(web: Running) -> None:
    status, headers, body = fetch(web.url("add") + "?a=1", "POST", b"{}",
                                  {"Content-Type": "application/json"})
    assert status == 405, f"POST to a GET endpoint answered {status}: {body[:300]!r}"
    assert "GET" in headers.get("allow", ""), f"405 without 'allow: GET': {headers}"
    status, headers, body = fetch(web.url("echo"))
    assert status == 405, f"GET to a POST endpoint answered {status}: {body[:300]!r}"
    assert "POST" in headers.get("allow", ""), f"405 without 'allow: POST': {headers}"


def test_exception_is_500_without_details_and_logged(web: Running) -> None:
    secret = f"kaboom-secret-{web.marker}"
    status, _, body = fetch(web.url("boom"))
    assert status == 500, f"an endpoint that raises answered {status}: {body[:500]!r}"
    assert secret.encode() not in body, f"the exception's message leaked to the client: {body!r}"
    assert b"Traceback" not in body and b"RuntimeError" not in body, \
        f"the traceback leaked to the client: {body!r}"
    logs = wait_for_log(web.app_id, secret)
    assert secret in logs, f"`skiff app logs` does not show the exception:\n{logs[-3000:]}"
    assert "RuntimeError" in logs, f"the app's logs have no traceback:\n{logs[-3000:]}"


# --- 2, 3. streaming -----------------------------------------------------------

def test_streamed_response_first_chunk_before_function_ends(web: Running) -> None:
    token = secrets.token_hex(6)
    host, port, path = web.addr("slow_stream")
    conn = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", f"{path}?token={token}")
        resp = conn.getresponse()
        assert resp.status == 200, f"slow_stream answered {resp.status}: {resp.read()[:300]!r}"
        got = b""
        while b"\n" not in got:
            chunk = resp.read1(65536)
            if not chunk:
                break
            got += chunk
        # The function is blocked until release-<token> exists: what came so
        # far was streamed while it was still running.
        assert got == b"first\n", (
            f"the first chunk did not arrive while the generator was still running "
            f"(got {got!r}; a buffered response would only come after it gave up)")
        (web.folder / f"release-{token}").write_text("go")
        rest = resp.read()
        assert got + rest == b"first\nlast\n", f"the streamed body is wrong: {got + rest!r}"
    finally:
        conn.close()


def test_server_sent_events(web: Running) -> None:
    host, port, path = web.addr("ticks")
    conn = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", f"{path}?n=4", headers={"Accept": "text/event-stream"})
        resp = conn.getresponse()
        body = resp.read().decode()
        assert resp.status == 200, f"ticks answered {resp.status}: {body[:300]!r}"
        ctype = resp.getheader("content-type", "")
        assert ctype.startswith("text/event-stream"), \
            f"an SSE generator is served as {ctype!r}, not text/event-stream"
    finally:
        conn.close()
    events = []
    for block in body.split("\n\n"):
        data = [line[len("data:"):].strip() for line in block.splitlines()
                if line.startswith("data:")]
        if data:
            events.append("\n".join(data))
    assert events == [f"tick {i}" for i in range(4)], f"SSE events: {events!r} from {body!r}"


# --- 4. WebSocket ---------------------------------------------------------------

def test_websocket_echo_text_and_binary(web: Running) -> None:
    import websockets

    url = "ws" + web.url("raw_asgi")[len("http"):] + "/ws"
    binary = bytes(range(256)) * 64

    async def session() -> tuple[Any, Any, Any, Optional[int]]:
        async with websockets.connect(url, open_timeout=REQUEST_TIMEOUT, close_timeout=10,
                                      max_size=1 << 22) as ws:
            await ws.send("hello, gateway \u2713")
            text = await asyncio.wait_for(ws.recv(), 30)
            await ws.send(binary)
            data = await asyncio.wait_for(ws.recv(), 30)
            await ws.send("x" * 300_000)
            big = await asyncio.wait_for(ws.recv(), 30)
            await ws.close(code=1000, reason="done")
            return text, data, big, ws.close_code

    text, data, big, code = asyncio.run(session())
    assert text == "hello, gateway \u2713", f"text echo came back as {text!r}"
    assert isinstance(data, bytes) and data == binary, \
        f"binary echo came back as {type(data).__name__} of {len(data)} bytes"
    assert big == "x" * 300_000, f"a 300 kB text message came back as {len(big)} characters"
    assert code == 1000, (f"closing from the client was not clean: close code {code} "
                          "(the gateway did not answer the close frame)")
    line = f"ws-closed-{web.marker} code=1000"
    logs = wait_for_log(web.app_id, line)
    assert line in logs, f"the ASGI app did not see a websocket.disconnect with code 1000:\n" \
                         f"{[l for l in logs.splitlines() if 'ws-closed' in l]}"


# --- 5. a 1 GiB upload ------------------------------------------------------------

def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_one_gib_upload_streams_with_bounded_server_memory(web: Running, server: Server) -> None:
    total = 1 << 30
    block = os.urandom(1 << 20)
    host, port, path = web.addr("raw_asgi")
    # Warm the container first, so that the upload measures streaming only.
    status, _, body = fetch(web.url("raw_asgi") + "/warm")
    assert status == 200, f"raw ASGI app answered {status}: {body[:300]!r}"

    pid = server.proc.pid
    baseline = _rss_kib(pid)
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], _rss_kib(pid))
            except (OSError, AssertionError):
                pass
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    digest = hashlib.sha256()
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT)
    try:
        conn.putrequest("POST", path + "/sha256")
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(total))
        conn.endheaders()
        for i in range(total >> 20):
            chunk = i.to_bytes(8, "little") + block[8:]
            digest.update(chunk)
            conn.send(chunk)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
        stop.set()
        sampler.join()
    took = time.monotonic() - t0
    assert resp.status == 200, f"the 1 GiB upload answered {resp.status}: {body[:500]!r}"
    got = json.loads(body)
    assert got["bytes"] == total, f"the app received {got['bytes']} bytes of {total}"
    assert got["sha256"] == digest.hexdigest(), "the app's SHA-256 of the upload differs"
    growth_mib = (peak[0] - baseline) / 1024
    assert growth_mib < 64, (f"the server's RSS grew by {growth_mib:.1f} MiB during a 1 GiB "
                             f"upload (from {baseline // 1024} MiB; it should stream in 1 MiB "
                             f"windows) in {took:.1f} s")


# --- 6. frameworks ------------------------------------------------------------------

def test_fastapi_app_with_path_param_and_pydantic_body(fw: Running) -> None:
    url = fw.url("fastapi_app") + "/items/7"
    status, _, body = fetch(url, "POST", json.dumps({"name": "bolt", "qty": 21}).encode(),
                            {"Content-Type": "application/json"})
    assert status == 200, f"FastAPI POST /items/7 answered {status}: {body[:500]!r}"
    assert json.loads(body) == {"item_id": 7, "name": "bolt", "double": 42}, body
    status, _, body = fetch(url, "POST", json.dumps({"name": "bolt", "qty": "many"}).encode(),
                            {"Content-Type": "application/json"})
    assert status == 422, f"FastAPI's validation error did not come through: {status} {body!r}"
    status, _, body = fetch(fw.url("fastapi_app") + "/nowhere")
    assert status == 404 and json.loads(body) == {"detail": "Not Found"}, (status, body)


def test_flask_app_through_wsgi(fw: Running) -> None:
    status, headers, body = fetch(fw.url("flask_app") + "/hello/skiff?q=1%202")
    assert status == 200, f"Flask GET /hello/skiff answered {status}: {body[:500]!r}"
    assert headers.get("content-type", "").startswith("application/json"), headers
    assert json.loads(body) == {"greeting": "hello skiff", "q": "1 2"}, body


# --- 7. scaled to zero ------------------------------------------------------------

def test_endpoint_scaled_to_zero_answers_first_request(web: Running, client: Any) -> None:
    info = function_info(client, web.mod.cold)
    assert info["containers"] == 0, \
        f"the never-requested endpoint already has containers: {info}"
    rows = [c for c in client.request("GET", "/v1/containers")["containers"]
            if c.get("app_name") == web.app_name and c.get("function") == "cold"
            and c["state"] == "running"]
    assert rows == [], f"containers of `cold` run before any request: {rows}"
    status, _, body = fetch(web.url("cold"))
    assert status == 200, f"an endpoint scaled to zero answered {status}: {body[:500]!r}"
    assert json.loads(body) == {"cold": True}, body
    assert function_info(client, web.mod.cold)["cold_starts"] >= 1


# --- 8. proxy auth --------------------------------------------------------------------

def test_proxy_auth_tokens(web: Running) -> None:
    url = web.url("guarded")
    status, _, body = fetch(url)
    assert status == 401, f"a protected endpoint answered {status} without a token: {body!r}"
    proc = subprocess.run([SKIFF_BIN, "token", "create", "--name", "e2e-web", "--json"],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"skiff token create: {proc.stderr}"
    tok = json.loads(proc.stdout)
    status, _, body = fetch(url, headers={"Skiff-Key": tok["token_id"],
                                          "Skiff-Secret": "ws-" + "0" * 32})
    assert status == 401, f"a wrong secret was accepted: {status} {body!r}"
    status, _, body = fetch(url, headers={"Skiff-Key": tok["token_id"]})
    assert status == 401, f"a key without its secret was accepted: {status} {body!r}"
    status, _, body = fetch(url, headers={"Skiff-Key": tok["token_id"],
                                          "Skiff-Secret": tok["token_secret"]})
    assert status == 200, f"a valid token was refused: {status} {body!r}"
    assert json.loads(body) == {"ok": True}, body


# --- 9. malformed requests ---------------------------------------------------------------

def test_malformed_requests_do_not_harm_other_connections(web: Running) -> None:
    host, port, add_path = web.addr("add")
    _, _, echo_path = web.addr("echo")
    healthy = RawConn(host, port)
    try:
        healthy.send(request_bytes("GET", f"{add_path}?a=1&b=1"))
        status, _, body = healthy.read_response()
        assert (status, json.loads(body)) == (200, {"sum": 2}), (status, body)

        bad = {
            "a bad request line": (b"THIS IS NOT HTTP\r\n\r\n", 400),
            "headers past 64 KiB": (
                f"GET {add_path}?a=1 HTTP/1.1\r\nHost: x\r\n".encode()
                + b"".join(b"X-Filler-%03d: %s\r\n" % (i, b"f" * 1000) for i in range(70))
                + b"\r\n", 431),
            "invalid chunked encoding": (
                f"POST {echo_path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\nZZ-not-hex\r\n{}\r\n0\r\n\r\n".encode(), 400),
            "a NUL byte in a header": (
                f"GET {add_path}?a=1 HTTP/1.1\r\nHost: x\r\nX-Evil: a\0b\r\n\r\n".encode(), 400),
        }
        for what, (data, want) in bad.items():
            got, closed = send_malformed(host, port, data)
            assert status_of(got) == want, \
                f"{what} should be answered {want}; the gateway answered {got[:300]!r}"
            assert closed, f"the gateway did not close the connection after {what}"

        healthy.send(request_bytes("GET", f"{add_path}?a=2&b=2"))
        status, _, body = healthy.read_response()
        assert (status, json.loads(body)) == (200, {"sum": 4}), \
            f"the healthy keep-alive connection broke after the malformed ones: {status} {body!r}"
    finally:
        healthy.close()
    status, _, body = fetch(web.url("add") + "?a=3&b=3")
    assert (status, json.loads(body)) == (200, {"sum": 6}), \
        f"a new connection failed after the malformed ones: {status} {body!r}"


# --- 10. keep-alive, pipelining, 100-continue, HEAD -----------------------------------

def test_pipelined_requests_answered_in_order(web: Running) -> None:
    host, port, path = web.addr("add")
    conn = RawConn(host, port)
    try:
        conn.send(request_bytes("GET", f"{path}?a=1&b=2")
                  + request_bytes("GET", f"{path}?a=10&b=20")
                  + request_bytes("GET", f"{path}?a=100&b=200"))
        got = []
        for _ in range(3):
            status, _, body = conn.read_response()
            got.append((status, json.loads(body)))
        assert got == [(200, {"sum": 3}), (200, {"sum": 30}), (200, {"sum": 300})], \
            f"three pipelined requests got {got}"
    finally:
        conn.close()


def test_expect_100_continue(web: Running) -> None:
    host, port, path = web.addr("echo")
    body = json.dumps({"continued": True}).encode()
    conn = RawConn(host, port)
    try:
        conn.send(request_bytes("POST", path, headers=[
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            ("Expect", "100-continue")]))
        status, _ = conn.read_head()
        assert status == 100, f"`Expect: 100-continue` got {status} before the body was sent"
        conn.send(body)
        status, _, got = conn.read_response()
        assert status == 200 and json.loads(got) == {"continued": True}, (status, got)
    finally:
        conn.close()


def test_head_gets_headers_and_no_body(web: Running) -> None:
    host, port, path = web.addr("raw_asgi")
    conn = RawConn(host, port)
    try:
        conn.send(request_bytes("HEAD", f"{path}/page"))
        status, headers, _ = conn.read_response(head=True)
        assert status == 200, f"HEAD answered {status}"
        assert headers.get("content-length") == str(len(b"hello from raw asgi\n")), headers
        # Any body bytes sent after the HEAD response would now be read as
        # the next response's status line.
        conn.send(request_bytes("GET", f"{path}/page"))
        status, _, body = conn.read_response()
        assert status == 200 and body == b"hello from raw asgi\n", \
            f"after a HEAD, the next response on the connection is {status} {body!r} " \
            "(the HEAD response carried a body?)"
    finally:
        conn.close()
    # A fastapi_endpoint for GET answers HEAD too.
    host, port, path = web.addr("add")
    conn = RawConn(host, port)
    try:
        conn.send(request_bytes("HEAD", f"{path}?a=1&b=2") + request_bytes("GET", f"{path}?a=2"))
        status, headers, _ = conn.read_response(head=True)
        assert status == 200, f"HEAD on a GET fastapi_endpoint answered {status}"
        assert headers.get("content-type", "").startswith("application/json"), headers
        status, _, body = conn.read_response()
        assert status == 200 and body.replace(b" ", b"") == b'{"sum":3}', \
            f"after a HEAD, the next response on the connection is {status} {body!r}"
    finally:
        conn.close()


# --- 11. web_server -----------------------------------------------------------------

def test_web_server_proxies_to_http_server_in_container(web: Running) -> None:
    status, _, body = fetch(web.url("files") + "/hello.txt")
    assert status == 200, f"GET through @web_server answered {status}: {body[:500]!r}"
    assert body == f"served by http.server {web.marker}\n".encode(), body
    status, _, _ = fetch(web.url("files") + "/missing.txt")
    assert status == 404, f"http.server's own 404 did not come through: {status}"


# --- 12. get_web_url --------------------------------------------------------------------

def test_get_web_url_is_the_served_url_and_is_printed(web: Running, server: Server,
                                                      client: Any) -> None:
    # The log is appended to when SKIFF_TEST_HOME is kept: this server's line is the last.
    found = re.findall(r"web endpoints on (http://\S+)", Path(server.log_path).read_text())
    assert found, f"the server log does not say where web endpoints are:\n{server.log_tail()}"
    base = found[-1].rstrip("/")
    url = web.url("slow_stream")
    assert url == f"{base}/{web.app_name}/slow-stream", \
        f"get_web_url() is {url!r}, not the gateway's {base}/<app>/<label>"
    assert function_info(client, web.mod.slow_stream).get("web_url") == url
    assert web.url("raw_asgi") == f"{base}/{web.app_name}/raw"
    assert f"=> {url}" in web.printed, \
        f"`with app.run():` did not print the endpoint's URL:\n{web.printed}"
    status, _, _ = fetch(web.url("add") + "?a=0")
    assert status == 200
