"""Extra `skiff server` processes for tests of the server itself (start, stop,
crash, builds), each in a fresh SKIFF_HOME of its own, beside the session server.

Also raw HTTP over a unix socket (no SDK), so that a test sees exactly what the
server sends, and a last-resort scrub of a home: what a server left behind
(cgroups, processes in them, mounts) is removed without the server's help.
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, Optional

from conftest import SKIFF_BIN, _health, _log_tail, mounts_under

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def http_request(sock_path: str, method: str, path: str, body: Any = None,
                 timeout: float = 60.0) -> tuple[int, bytes]:
    """One request on a fresh connection; the whole body (chunked or not)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        conn = http.client.HTTPConnection("localhost", timeout=timeout)
        conn.sock = s
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        s.close()


def http_json(sock_path: str, method: str, path: str, body: Any = None,
              timeout: float = 60.0) -> tuple[int, Any]:
    status, raw = http_request(sock_path, method, path, body, timeout)
    return status, json.loads(raw) if raw else None


def ndjson_lines(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]


def instance_of(home: str) -> str:
    """The cgroup instance name a server derives from its (real) home."""
    return hashlib.sha256(os.path.realpath(home).encode()).hexdigest()[:12]


def instance_cgroups(home: str) -> list[str]:
    """skiff/<instance> folders of home's server in every cgroup hierarchy."""
    inst = instance_of(home)
    return sorted(glob.glob(f"/sys/fs/cgroup/*/skiff/{inst}") +
                  glob.glob(f"/sys/fs/cgroup/skiff/{inst}"))


def processes_with_cmdline(argv: list[str]) -> list[int]:
    """Live (non-zombie) processes whose command line is exactly argv."""
    want = ("\0".join(argv) + "\0").encode()
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if f.read() == want:
                    found.append(int(d))
        except OSError:
            pass
    return found


class ExtraServer:
    """A `skiff server --home HOME` started by a test (not the session's)."""

    def __init__(self, home: str, env: Optional[dict[str, Optional[str]]] = None,
                 args: tuple[str, ...] = ()) -> None:
        self.args = tuple(args)
        """env: changes to this process's environment (None removes a variable)."""
        self.home = os.path.realpath(home)
        self.sock = os.path.join(self.home, "skiff.sock")
        self.env = dict(os.environ)
        for k in ("SKIFF_HOME", "SKIFF_SERVER"):
            self.env.pop(k, None)
        for k, v in (env or {}).items():
            if v is None:
                self.env.pop(k, None)
            else:
                self.env[k] = v
        self.log_path = ""
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.health: Optional[dict[str, Any]] = None

    def start(self, wait: bool = True, umask: Optional[int] = None) -> "ExtraServer":
        """Starts it (umask: the one it inherits); with wait, until /v1/health answers."""
        fd, self.log_path = tempfile.mkstemp(prefix="skiff-extra-", suffix=".log", dir="/tmp")
        self.proc = subprocess.Popen([SKIFF_BIN, "server", "--home", self.home, *self.args],
                                     stdin=subprocess.DEVNULL, stdout=fd,
                                     stderr=subprocess.STDOUT, env=self.env,
                                     umask=-1 if umask is None else umask)
        os.close(fd)
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"server on {self.home} exited with "
                                     f"{self.proc.returncode} at start:\n{self.log()}")
            h = _health(self.sock)
            if h is not None and h.get("pid") == self.proc.pid:
                self.health = h
                return h
            if time.monotonic() > deadline:
                raise AssertionError(f"server on {self.home} did not answer /v1/health within "
                                     f"{timeout:g} s:\n{self.log()}")
            time.sleep(0.05)

    def log(self, n: int = 40) -> str:
        return _log_tail(self.log_path, n) if self.log_path else "(not started)"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> Optional[int]:
        """SIGTERM, then SIGKILL after timeout; the exit status (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def json(self, method: str, path: str, body: Any = None,
             timeout: float = 60.0) -> tuple[int, Any]:
        return http_json(self.sock, method, path, body, timeout)

    def build_image(self, spec: Optional[dict[str, Any]] = None,
                    timeout: float = 120.0) -> list[dict[str, Any]]:
        """POST /v1/images; the NDJSON lines of the answer."""
        status, raw = http_request(self.sock, "POST", "/v1/images",
                                   spec or {"base": "debian_slim", "python_version": None},
                                   timeout)
        assert status == 200, f"POST /v1/images answered {status}: {raw[:500]!r}"
        return ndjson_lines(raw)

    def sandbox(self, image_id: str, cmd: list[str]) -> str:
        status, j = self.json("POST", "/v1/sandboxes", {"image_id": image_id, "cmd": cmd})
        assert status == 201, f"POST /v1/sandboxes answered {status}: {j}\n{self.log()}"
        return str(j["sandbox_id"])

    def close_log(self) -> None:
        if self.log_path:
            try:
                os.unlink(self.log_path)
            except OSError:
                pass


def _kill_cgroup_tree(top: str) -> None:
    for root, _dirs, files in os.walk(top):
        for name in ("cgroup.procs", "tasks"):
            if name not in files:
                continue
            try:
                with open(os.path.join(root, name)) as f:
                    pids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


def _rmdir_tree(top: str) -> None:
    for root, dirs, _files in os.walk(top, topdown=False):
        for d in dirs:
            try:
                os.rmdir(os.path.join(root, d))
            except OSError:
                pass
    try:
        os.rmdir(top)
    except OSError:
        pass


def scrub_home(home: str) -> list[str]:
    """Last resort after a test: kills what runs in home's cgroups, removes them
    (the server's instance folder too), lazily unmounts what is under home,
    deletes home.  Returns what it had to clean (the boxes and mounts a server
    had left)."""
    cleaned = []
    groups = instance_cgroups(home)
    for g in groups:
        _kill_cgroup_tree(g)
    if groups:
        time.sleep(0.2)
    for g in groups:
        boxes = [d for d in os.listdir(g) if os.path.isdir(os.path.join(g, d))]
        if boxes:
            cleaned.append(f"cgroups {g}/{boxes}")
        # The empty instance folder is kept by a server that ran containers (the
        # next server on the home sweeps it); with the home gone, nobody would.
        _rmdir_tree(g)
    left = mounts_under(home)
    for m in sorted(left, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    if left:
        cleaned.append(f"mounts {left}")
    shutil.rmtree(home, ignore_errors=True)
    return cleaned
