"""Sandbox basics: output, stdin, exec, env and secrets, lifecycle calls."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

import skiff
from skiff.exception import (
    ConflictError,
    InvalidError,
    NotFoundError,
    SandboxTerminatedError,
)


def test_health(server: Any, client: Any) -> None:
    h = client.health()
    assert h["version"] == skiff.__version__
    assert h["skiff_home"] == server.home
    assert h["cgroup"] in ("v1", "v1-hybrid", "v2")
    assert h["runtime"] in ("runc", "crun", "runsc")
    assert h["cpus"] >= 1 and h["memory_mib"] > 0


def test_prints_stdout_and_stderr_separately(image: Any) -> None:
    sb = skiff.Sandbox.create("sh", "-c", "echo to-out; echo to-err >&2; echo more-out")
    sb.wait()
    assert sb.returncode == 0
    assert sb.stdout.read() == "to-out\nmore-out\n"
    assert sb.stderr.read() == "to-err\n"


def test_exit_status_is_returned(image: Any) -> None:
    sb = skiff.Sandbox.create("sh", "-c", "exit 7")
    sb.wait()  # a non-zero exit is not a termination: no exception
    assert sb.returncode == 7
    assert sb.poll() == 7


def test_output_streams_while_running(image: Any) -> None:
    sb = skiff.Sandbox.create("sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.5; done")
    t0 = time.monotonic()
    chunks = []
    first_at = None
    for chunk in sb.stdout:
        if first_at is None:
            first_at = time.monotonic() - t0
        chunks.append(chunk)
    assert "".join(chunks) == "1\n2\n3\n"
    assert first_at is not None and first_at < 1.0, "first line came only at the end"
    assert len(chunks) >= 2
    sb.wait()
    assert sb.stdout.read() == ""  # already consumed


def test_poll_and_returncode_while_running(image: Any, cleanup: list[Any]) -> None:
    sb = skiff.Sandbox.create("sleep", "100")
    cleanup.append(sb)
    assert sb.object_id.startswith("sb-")
    assert sb.poll() is None
    assert sb.returncode is None


def test_env_and_secrets_reach_the_command(image: Any) -> None:
    secret = skiff.Secret.from_dict({"MY_SECRET": "s3cr3t-value", "SHARED": "from-secret"})
    assert "s3cr3t-value" not in repr(secret)
    sb = skiff.Sandbox.create("sh", "-c", 'echo "$MY_VAR|$MY_SECRET|$SHARED"',
                              env={"MY_VAR": "hello env", "SHARED": "from-env"},
                              secrets=[secret])
    sb.wait()
    # env= is applied over secrets=.
    assert sb.stdout.read() == "hello env|s3cr3t-value|from-env\n"


def test_secret_values_must_be_str() -> None:
    with pytest.raises(InvalidError, match="'N'.*must be a str"):
        skiff.Secret.from_dict({"N": 1})  # type: ignore[dict-item]


def test_workdir(image: Any) -> None:
    sb = skiff.Sandbox.create("pwd", workdir="/tmp")
    sb.wait()
    assert sb.stdout.read() == "/tmp\n"


def test_main_process_stdin(image: Any) -> None:
    sb = skiff.Sandbox.create("cat")
    sb.stdin.write(b"line one\n")
    sb.stdin.write("line two\n")
    sb.stdin.drain()
    sb.stdin.write_eof()
    sb.wait()
    assert sb.stdout.read() == "line one\nline two\n"
    assert sb.returncode == 0
    with pytest.raises(ValueError):
        sb.stdin.write(b"late")


def test_exec(image: Any, cleanup: list[Any]) -> None:
    sb = skiff.Sandbox.create("sleep", "100")
    cleanup.append(sb)
    p = sb.exec("cat")
    p.stdin.write(b"hello\n")
    p.stdin.write_eof()
    assert p.stdout.read() == "hello\n"
    assert p.wait() == 0
    assert p.returncode == 0

    q = sb.exec("sh", "-c", 'pwd; echo "$X"; echo oops >&2; exit 3', workdir="/tmp",
                env={"X": "exec-env"})
    assert q.wait() == 3
    assert q.stdout.read() == "/tmp\nexec-env\n"
    assert q.stderr.read() == "oops\n"

    # The exec'd processes share the sandbox's container (and its files).
    sb.exec("sh", "-c", "echo shared > /tmp/f").wait()
    r = sb.exec("cat", "/tmp/f")
    assert r.stdout.read() == "shared\n"
    assert r.wait() == 0
    assert sb.poll() is None  # the main process still runs


def test_exec_after_exit_is_a_conflict(image: Any) -> None:
    sb = skiff.Sandbox.create("true")
    sb.wait()
    with pytest.raises(ConflictError):
        sb.exec("echo", "too late")


def test_terminate(image: Any) -> None:
    sb = skiff.Sandbox.create("sleep", "100")
    t0 = time.monotonic()
    sb.terminate()
    with pytest.raises(SandboxTerminatedError):
        sb.wait()
    assert time.monotonic() - t0 < 10
    rc = sb.returncode
    assert rc is not None and rc != 0
    sb.wait(raise_on_termination=False)  # returns quietly
    sb.terminate()  # a no-op once it has exited
    assert sb.info()["terminated"] is True


def test_from_id(image: Any, cleanup: list[Any]) -> None:
    sb = skiff.Sandbox.create("sh", "-c", "echo from-id; sleep 100")
    cleanup.append(sb)
    same = skiff.Sandbox.from_id(sb.object_id)
    assert same.object_id == sb.object_id
    assert same.poll() is None
    for chunk in same.stdout:
        assert chunk == "from-id\n"
        break
    same.terminate()
    with pytest.raises(SandboxTerminatedError):
        sb.wait()
    with pytest.raises(NotFoundError):
        skiff.Sandbox.from_id("sb-0000000000000000")


def test_list(image: Any, cleanup: list[Any]) -> None:
    sb = skiff.Sandbox.create("sleep", "100")
    cleanup.append(sb)
    assert sb.object_id in [s.object_id for s in skiff.Sandbox.list()]
    sb.terminate()
    sb.wait(raise_on_termination=False)
    assert sb.object_id not in [s.object_id for s in skiff.Sandbox.list()]


def test_app_lookup_and_sandbox_in_app(image: Any, client: Any, cleanup: list[Any]) -> None:
    name = f"e2e-{uuid.uuid4().hex[:10]}"
    with pytest.raises(NotFoundError):
        skiff.App.lookup(name)
    app = skiff.App.lookup(name, create_if_missing=True)
    assert app.app_id is not None and app.app_id.startswith("ap-")
    assert skiff.App.lookup(name).app_id == app.app_id
    again = client.request("POST", "/v1/apps/lookup", {"name": name, "create_if_missing": True})
    assert again == {"app_id": app.app_id, "name": name, "created": False}

    sb = skiff.Sandbox.create("sleep", "100", app=app)
    cleanup.append(sb)
    other = skiff.Sandbox.create("sleep", "100")
    cleanup.append(other)
    in_app = [s.object_id for s in skiff.Sandbox.list(app_id=app.app_id)]
    assert in_app == [sb.object_id]
    info = sb.info()
    assert info["app_id"] == app.app_id and info["app_name"] == name


def test_app_not_on_server_is_a_clear_error() -> None:
    with pytest.raises(InvalidError, match="App.lookup"):
        skiff.Sandbox.create("true", app=skiff.App("never-looked-up"))


def test_cached_image_prints_nothing(image: Any, client: Any, capfd: Any) -> None:
    again = skiff.Image.debian_slim().hydrate()
    assert again.object_id == image.object_id
    assert again.object_id is not None and again.object_id.startswith("im-")
    assert capfd.readouterr().err == ""
    listed = client.request("GET", "/v1/images")["images"]
    mine = [i for i in listed if i["image_id"] == image.object_id]
    assert mine and mine[0]["base"] == "debian_slim" and mine[0]["size_bytes"] > 0
