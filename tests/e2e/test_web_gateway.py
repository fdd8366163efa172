"""End to end: the gateway's own guarantees under load and misbehaving
clients (issue 5): a slow client stalls only its own request and the server
holds at most a window of its response; requests past the queue bound get
503 with Retry-After at once; a request past the redirect time gets 303 to a
result URL that answers once the function is done.

The bound and the redirect time are server settings (SKIFF_WEB_QUEUE_MAX,
SKIFF_WEB_REDIRECT_AFTER), so those tests run an extra server of their own,
with the session's image copied in; the app runs in a child process pointed
at it, as a user's `python3 app.py` would.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.parse
from typing import Any, Iterator

import pytest

from test_server import copy_debootstrap, session_rootfs, start_server  # noqa: F401 (fixtures)

PY = "/usr/bin/python3"
SDK = os.path.join(os.path.dirname(__file__), "..", "..", "sdk", "python")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def split(url: str) -> tuple[str, int, str]:
    u = urllib.parse.urlsplit(url)
    return u.hostname or "127.0.0.1", u.port or 80, u.path


class AppProcess:
    """A user's app run in a child process (`with app.run():`), printing its
    endpoints' URLs as one JSON line and serving until stdin closes."""

    def __init__(self, source: str, env: dict[str, str]) -> None:
        self.dir = tempfile.mkdtemp(prefix="skiff-webapp-", dir="/tmp")
        path = os.path.join(self.dir, "webapp.py")
        with open(path, "w") as f:
            f.write(textwrap.dedent(source))
            f.write(textwrap.dedent("""
                if __name__ == "__main__":
                    import json, sys
                    with app.run():
                        print(json.dumps({n: f.get_web_url() for n, f in ENDPOINTS.items()}),
                              flush=True)
                        sys.stdin.read()
            """))
        full = dict(os.environ)
        full.update(env)
        full["PYTHONPATH"] = os.path.abspath(SDK)
        self.proc = subprocess.Popen([PY, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=full, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"the app did not start:\n{err[-3000:]}")
        self.urls: dict[str, str] = json.loads(line)

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(30)
        except Exception:
            self.proc.kill()
            self.proc.wait()


SLOW_CLIENT_APP = """
import skiff

app = skiff.App("web-slow-client")

@app.function()
@skiff.concurrent(max_inputs=4)
@skiff.fastapi_endpoint()
def big(mib: int = 64):
    block = b"x" * (1 << 20)
    for _ in range(mib):
        yield block

@app.function()
@skiff.fastapi_endpoint()
def ping():
    return {"pong": True}

ENDPOINTS = {"big": big, "ping": ping}
"""


def test_slow_client_stalls_only_itself(server: Any, image: Any) -> None:
    """A client that stops reading a 64 MiB streamed response holds one
    window of it in the server, and other requests go on being answered."""
    app = AppProcess(SLOW_CLIENT_APP, {"SKIFF_HOME": server.home,
                                       "SKIFF_SERVER": "unix:" + server.sock})
    try:
        host, port, path = split(app.urls["big"])
        _, _, ping_path = split(app.urls["ping"])
        before = rss_kib(server.proc.pid)
        stalled = socket.create_connection((host, port))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        stalled.sendall(f"GET {path}?mib=64 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        first = stalled.recv(4096)
        assert first.startswith(b"HTTP/1.1 200"), first[:200]
        time.sleep(2)   # the stream runs into its window and stops there
        peak = rss_kib(server.proc.pid)
        t0 = time.monotonic()
        for _ in range(20):
            c = http.client.HTTPConnection(host, port, timeout=10)
            c.request("GET", ping_path)
            r = c.getresponse()
            assert r.status == 200 and json.loads(r.read()) == {"pong": True}
            c.close()
        took = time.monotonic() - t0
        peak = max(peak, rss_kib(server.proc.pid))
        stalled.close()
        assert took < 10, f"20 requests took {took:.1f} s while another client stalled"
        grew_mib = (peak - before) / 1024
        assert grew_mib < 16, (f"the server grew by {grew_mib:.1f} MiB holding a stalled "
                               "client's response (want about one 1 MiB window)")
    finally:
        app.close()


@pytest.fixture
def extra(start_server: Any, copy_debootstrap: str) -> Iterator[Any]:  # noqa: F811
    def make(env: dict[str, str]) -> Any:
        srv = start_server(env={"SKIFF_DEBOOTSTRAP": copy_debootstrap, **env},
                           args=("--web-port", "0"))
        lines = srv.build_image()
        assert "image_id" in lines[-1], f"build failed: {lines[-1]}\n{srv.log()}"
        return srv
    yield make


SLOW_APP = """
import time
import skiff

app = skiff.App("web-limits")

@app.function(max_containers=1)
@skiff.fastapi_endpoint()
def slow(t: float = 1.0):
    time.sleep(t)
    return {"slept": t}

ENDPOINTS = {"slow": slow}
"""


def app_env(srv: Any) -> dict[str, str]:
    return {"SKIFF_HOME": srv.home, "SKIFF_SERVER": "unix:" + srv.sock}


def test_queue_bound_answers_503_at_once(extra: Any) -> None:
    srv = extra({"SKIFF_WEB_QUEUE_MAX": "2"})
    app = AppProcess(SLOW_APP, app_env(srv))
    try:
        host, port, path = split(app.urls["slow"])
        # Warm: one container up, and the endpoint known to be slow (a fast
        # one's container may take a few requests ahead of its slots).
        c = http.client.HTTPConnection(host, port, timeout=60)
        c.request("GET", path + "?t=0.5")
        assert c.getresponse().status == 200
        results: list[tuple[int, str, float]] = []
        lock = threading.Lock()

        def one() -> None:
            t0 = time.monotonic()
            conn = http.client.HTTPConnection(host, port, timeout=60)
            conn.request("GET", path + "?t=2")
            r = conn.getresponse()
            r.read()
            with lock:
                results.append((r.status, r.getheader("retry-after") or "",
                                time.monotonic() - t0))

        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join(60)
        codes = sorted(s for s, _, _ in results)
        assert len(results) == 6, results
        refused = [r for r in results if r[0] == 503]
        # One runs, two wait (the bound), the rest are refused at once.
        assert codes.count(200) == 3 and len(refused) == 3, results
        assert all(ra == "1" for _, ra, _ in refused), refused
        assert all(took < 1.5 for _, _, took in refused), f"503s were not immediate: {refused}"
    finally:
        app.close()


def test_long_request_gets_303_and_a_result_url(extra: Any) -> None:
    srv = extra({"SKIFF_WEB_REDIRECT_AFTER": "1"})
    app = AppProcess(SLOW_APP, app_env(srv))
    try:
        host, port, path = split(app.urls["slow"])
        c = http.client.HTTPConnection(host, port, timeout=60)
        c.request("GET", path + "?t=2.5")
        r = c.getresponse()
        r.read()
        assert r.status == 303, r.status
        loc = r.getheader("location")
        assert loc and loc.startswith("/__skiff/result/"), loc
        # The connection goes on serving; the poll waits for the result
        # (another 303 to the same URL when it is not ready in time).
        deadline = time.monotonic() + 30
        while True:
            c.request("GET", loc)
            r = c.getresponse()
            body = r.read()
            if r.status != 303:
                break
            assert r.getheader("location") == loc
            assert time.monotonic() < deadline, "the result never came"
        assert r.status == 200, (r.status, body)
        assert json.loads(body) == {"slept": 2.5}
        # Served once.
        c.request("GET", loc)
        r = c.getresponse()
        r.read()
        assert r.status == 404
    finally:
        app.close()


TIMEOUT_APP = """
import time
import skiff

app = skiff.App("web-timeout")

@app.function(timeout=2)
@skiff.fastapi_endpoint()
def sleepy(t: float = 30):
    time.sleep(t)
    return {"slept": t}

ENDPOINTS = {"sleepy": sleepy}
"""


def test_request_past_the_function_timeout_gets_504(server: Any, image: Any) -> None:
    app = AppProcess(TIMEOUT_APP, {"SKIFF_HOME": server.home,
                                   "SKIFF_SERVER": "unix:" + server.sock})
    try:
        host, port, path = split(app.urls["sleepy"])
        c = http.client.HTTPConnection(host, port, timeout=60)
        c.request("GET", path + "?t=0")
        assert c.getresponse().read() and True
        t0 = time.monotonic()
        c.request("GET", path + "?t=30")
        r = c.getresponse()
        body = r.read().decode()
        took = time.monotonic() - t0
        assert r.status == 504, (r.status, body)
        assert "timed out after 2 s" in body, body
        assert took < 10, f"the 504 took {took:.1f} s (timeout=2)"
        # The endpoint serves again (a new container).
        c = http.client.HTTPConnection(host, port, timeout=60)
        c.request("GET", path + "?t=0")
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read()) == {"slept": 0.0}
    finally:
        app.close()


def test_default_web_port_taken_moves_to_a_free_one(start_server: Any) -> None:  # noqa: F811
    """Port 8000 busy: a server without --web-port serves on a free port (and
    says so); with --web-port 8000 it refuses to start, naming the port.
    (Closing the first listener and making it again crashed the loop once.)"""
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        blocker.bind(("127.0.0.1", 8000))
    except OSError:
        pytest.skip("port 8000 is taken by something else here")
    blocker.listen(1)
    try:
        srv = start_server()
        health = srv.json("GET", "/v1/health")
        assert health[0] == 200, health
        assert "port 8000 is in use; serving web endpoints on a free port" in srv.log()
        time.sleep(0.5)
        assert srv.running(), srv.log()
        home = tempfile.mkdtemp(prefix="skiff-srv-", dir="/tmp")
        r = subprocess.run([os.environ["SKIFF_BIN"], "server", "--home", home, "--web-port",
                            "8000"], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", home])
        assert r.returncode == 1
        assert "cannot serve web endpoints on 127.0.0.1:8000: address already in use" in r.stderr
    finally:
        blocker.close()
