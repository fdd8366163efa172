"""The SDK's connection: finding a server, starting one, talking HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import pytest

import skiff
from conftest import SKIFF_BIN, mounts_under
from skiff._client import Client
from skiff.exception import ConnectionError

SDK = os.path.dirname(os.path.dirname(os.path.abspath(skiff.__file__)))

HEALTH = "import json, skiff._client as c; print(json.dumps(c.get_client().health()))"


def _run_sdk(home: str, code: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SKIFF_SERVER", "SKIFF_HOME")}
    env.update(SKIFF_HOME=home, SKIFF_BIN=SKIFF_BIN, PYTHONPATH=SDK, **extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[-1].startswith("Z"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def test_starts_a_server_in_the_background_when_none_answers() -> None:
    home = tempfile.mkdtemp(prefix="skiff-auto-", dir="/tmp")
    pid = None
    try:
        r = _run_sdk(home, HEALTH)
        assert r.returncode == 0, r.stderr
        health = json.loads(r.stdout)
        pid = health["pid"]
        assert health["skiff_home"] == home
        assert (f"skiff: started a server in the background (SKIFF_HOME={home}, "
                f"log: {home}/server.log)") in r.stderr
        assert r.stderr.count("started a server") == 1

        r2 = _run_sdk(home, HEALTH)  # one answers now: nothing is started or said
        assert r2.returncode == 0, r2.stderr
        assert json.loads(r2.stdout)["pid"] == pid
        assert "started a server" not in r2.stderr
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            assert _wait_gone(pid, 30), f"the background server {pid} ignored SIGTERM"
    assert mounts_under(home) == []
    subprocess.run(["rm", "-rf", home])


def test_no_server_is_started_for_an_explicit_server() -> None:
    home = tempfile.mkdtemp(prefix="skiff-auto-", dir="/tmp")
    try:
        r = _run_sdk(home, HEALTH, SKIFF_SERVER=f"unix:{home}/elsewhere.sock")
        assert r.returncode != 0
        assert "ConnectionError" in r.stderr and "elsewhere.sock" in r.stderr
        assert "started a server" not in r.stderr
        assert not os.path.exists(os.path.join(home, "skiff.sock"))
    finally:
        subprocess.run(["rm", "-rf", home])


def test_bad_skiff_server_value() -> None:
    with pytest.raises(skiff.exception.InvalidError, match="SKIFF_SERVER"):
        Client("tcp://nowhere")


def test_connection_error_names_the_server() -> None:
    c = Client("unix:/nonexistent/skiff.sock")
    with pytest.raises(ConnectionError, match="/nonexistent/skiff.sock"):
        c.health()


def test_keep_alive_and_streams_interleave(server: Any, image: Any, client: Any) -> None:
    sb = skiff.Sandbox.create("sh", "-c", "echo a; sleep 1; echo b")
    it = iter(sb.stdout)
    assert next(it) == "a\n"
    # Plain requests go on while a stream is open on its own connection.
    for _ in range(20):
        assert client.health()["pid"] == server.proc.pid
    assert "".join(it) == "b\n"
    sb.wait()
