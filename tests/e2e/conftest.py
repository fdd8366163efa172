"""End-to-end fixtures: a real `skiff server`, real containers, real images.

Runs only as root with SKIFF_BIN naming the built binary (`make test-e2e`
sets it); otherwise every test is skipped with the reason.

The session starts `$SKIFF_BIN server --home DIR` with a fresh DIR under /tmp
and points the SDK at it (SKIFF_HOME, SKIFF_SERVER).  Building the
debian_slim image takes a while (debootstrap), so for repeated runs on one
machine set SKIFF_TEST_HOME=/tmp/skiff-test-home: that folder is used as
SKIFF_HOME and kept, with its image layers, between runs.

At the end the server gets SIGTERM and must exit 0, leaving nothing mounted
under SKIFF_HOME and no cgroup of any sandbox it ran.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import http.client
import socket
from typing import Any, Iterator, Optional

import pytest

SKIFF_BIN = os.environ.get("SKIFF_BIN", "")
SERVER_START_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 60.0


def _skip_reason() -> Optional[str]:
    if os.geteuid() != 0:
        return "end-to-end tests need root (containers, cgroups, mounts)"
    if not SKIFF_BIN:
        return "SKIFF_BIN is not set (run `make test-e2e`)"
    if not os.access(SKIFF_BIN, os.X_OK):
        return f"SKIFF_BIN={SKIFF_BIN} is not an executable file (run `make`)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    if reason:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=reason))


def _health(sock_path: str, timeout: float = 1.0) -> Optional[dict[str, Any]]:
    """GET /v1/health straight over the socket (without the SDK), or None."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        conn = http.client.HTTPConnection("localhost", timeout=timeout)
        conn.sock = s
        conn.request("GET", "/v1/health")
        resp = conn.getresponse()
        body = resp.read()
        return json.loads(body) if resp.status == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        s.close()


def _log_tail(path: str, n: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def mounts_under(path: str) -> list[str]:
    """Mount points (from /proc/self/mountinfo) at or below path."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if mnt == path or mnt.startswith(path + "/"):
                found.append(mnt)
    return found


def mounts_naming(word: str) -> list[str]:
    """mountinfo lines that mention word (a sandbox id, say) anywhere."""
    with open("/proc/self/mountinfo") as f:
        return [line.strip() for line in f if word in line]


def cgroups_named(names: set[str]) -> list[str]:
    """Cgroup directories under /sys/fs/cgroup whose name is one of names."""
    found = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if d in names:
                found.append(os.path.join(root, d))
    return found


class Server:
    """The skiff server under test."""

    def __init__(self, home: str, proc: subprocess.Popen[bytes], log_path: str,
                 health: dict[str, Any]) -> None:
        self.home = home
        self.proc = proc
        self.log_path = log_path
        self.health = health
        self.sock = os.path.join(home, "skiff.sock")

    def log_tail(self, n: int = 40) -> str:
        return _log_tail(self.log_path, n)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    reuse = os.environ.get("SKIFF_TEST_HOME")
    if reuse:
        home = os.path.abspath(reuse)
        os.makedirs(home, exist_ok=True)
    else:
        home = tempfile.mkdtemp(prefix="skiff-e2e-", dir="/tmp")
    sock = os.path.join(home, "skiff.sock")
    if _health(sock) is not None:
        pytest.exit(f"a skiff server already answers on {sock}; stop it or pick another "
                    "SKIFF_TEST_HOME", returncode=3)
    saved = {k: os.environ.get(k) for k in ("SKIFF_HOME", "SKIFF_SERVER")}
    os.environ["SKIFF_HOME"] = home
    os.environ["SKIFF_SERVER"] = "unix:" + sock
    log_path = os.path.join(home, "e2e-server.log")
    log = open(log_path, "ab")
    # Apps whose client vanished stop after 12 s without heartbeats (clients
    # send one every 5 s), not the default 30, so that a test can see it.
    proc = subprocess.Popen([SKIFF_BIN, "server", "--home", home, "--heartbeat-timeout", "12",
                             "--web-port", "0"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ))
    log.close()
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    health = None
    while health is None:
        if proc.poll() is not None:
            pytest.exit(f"`skiff server` exited with {proc.returncode} at start:\n"
                        f"{_log_tail(log_path)}", returncode=3)
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.exit(f"`skiff server` did not answer /v1/health within "
                        f"{SERVER_START_TIMEOUT:g} s:\n{_log_tail(log_path)}", returncode=3)
        time.sleep(0.05)
        health = _health(sock)

    import skiff._client

    skiff._client.set_client(None)
    srv = Server(home, proc, log_path, health)
    try:
        yield srv
    finally:
        ids: set[str] = set()
        try:
            listing = skiff._client.get_client().request("GET", "/v1/sandboxes?all=1")
            ids = {s["sandbox_id"] for s in listing["sandboxes"]}
        except Exception:
            pass
        skiff._client.set_client(None)
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        left_mounts = mounts_under(home)
        left_cgroups = cgroups_named(ids) if ids else []
        problems = []
        if rc != 0:
            problems.append(f"`skiff server` exited with {rc} after SIGTERM (want 0)")
        if left_mounts:
            problems.append(f"mounts left under {home}: {left_mounts}")
        if left_cgroups:
            problems.append(f"cgroups left for sandboxes: {left_cgroups}")
        if not problems and not reuse:
            shutil.rmtree(home, ignore_errors=True)
        assert not problems, "\n".join(problems) + "\nserver log:\n" + _log_tail(log_path)


@pytest.fixture(scope="session")
def image(server: Server) -> Any:
    """debian_slim, built once for the session (or found cached)."""
    import skiff

    return skiff.Image.debian_slim().hydrate()


@pytest.fixture
def client(server: Server) -> Any:
    import skiff._client

    return skiff._client.get_client()


@pytest.fixture
def cleanup() -> Iterator[list[Any]]:
    """Sandboxes appended here are terminated after the test, whatever happens."""
    sandboxes: list[Any] = []
    yield sandboxes
    for sb in sandboxes:
        try:
            sb.terminate()
        except Exception:
            pass


def skiff_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SKIFF_BIN, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
