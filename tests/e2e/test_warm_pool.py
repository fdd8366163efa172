"""End to end: warm containers (issue 8, part 2).

The server keeps a container of each image that functions use started, its
interpreter up and the SDK loaded; a cold start takes it and makes it the
function's (code mounted from the host, memory limit, env).  Checked here:
a cold start takes one and is ready in milliseconds; two functions taking
warm containers see only their own env, code, module state and /tmp; a
taken container is held to the function's memory=; what cannot be pooled
(cpu=) starts a container as before; warm containers show in
`skiff container list` with their memory.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import skiff

app = skiff.App("e2e-warm-pool")

STATE: dict[str, Any] = {}


@app.function(env={"WHO": "alpha"}, scaledown_window=30)
def alpha() -> dict[str, Any]:
    with open("/tmp/alpha-was-here", "w") as f:
        f.write("x")
    STATE["seen"] = STATE.get("seen", 0) + 1
    return {"who": os.environ.get("WHO"), "container": os.environ.get("SKIFF_CONTAINER_ID"),
            "cwd": os.getcwd(), "files": sorted(os.listdir("/tmp")), "state": STATE["seen"],
            "app_id": os.environ.get("SKIFF_APP_ID"), "function": __name__}


@app.function(env={"WHO": "beta"}, scaledown_window=30)
def beta() -> dict[str, Any]:
    return {"who": os.environ.get("WHO"), "container": os.environ.get("SKIFF_CONTAINER_ID"),
            "files": sorted(os.listdir("/tmp")), "state": STATE.get("seen", 0)}


@app.function(memory=64, scaledown_window=30)
def hog(mib: int) -> int:
    blocks = [bytearray(1 << 20) for _ in range(mib)]
    return len(blocks)


@app.function(cpu=0.5, scaledown_window=30)
def with_cpu() -> str:
    return "ok"


def _containers() -> list[dict[str, Any]]:
    from conftest import skiff_cli  # here: containers import this module without pytest
    return json.loads(skiff_cli("container", "list", "--json").stdout)


def _wait_warm(image_id: str, timeout: float = 30) -> list[dict[str, Any]]:
    """The warm containers of image_id, once there is one (other tests' images have theirs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        warm = [c for c in _containers()
                if c.get("status") == "warm" and c.get("warm_pool") == image_id]
        if warm:
            return warm
        time.sleep(0.05)
    raise AssertionError(f"no warm container came up: {_containers()}")


def _row(fn: str) -> dict[str, Any]:
    rows = [c for c in _containers()
            if c.get("app_name") == "e2e-warm-pool" and c.get("function") == fn]
    assert rows, _containers()
    return rows[0]


def test_cold_starts_take_warm_containers_each_its_own(server: Any, image: Any) -> None:
    with app.run():
        warm = _wait_warm(image.object_id)
        assert warm[0]["memory_bytes"] > 0
        t0 = time.perf_counter()
        a = alpha.remote()
        took_ms = (time.perf_counter() - t0) * 1000
        cs = _row("alpha")["cold_start"]
        assert cs["warm"] is True, cs
        assert cs["ready_ms"] < 50, cs
        assert took_ms < 500
        assert a["who"] == "alpha" and a["cwd"] == "/skiff/app" and a["state"] == 1
        assert a["app_id"] == app.app_id and a["function"] == "test_warm_pool"
        assert a["container"] in {w.get("container_id") for w in warm}, (a, warm)
        _wait_warm(image.object_id)  # the pool is filled again
        b = beta.remote()
        assert _row("beta")["cold_start"]["warm"] is True
        # Its own env, module state and /tmp: nothing of alpha's.
        assert b["who"] == "beta" and b["state"] == 0
        assert "alpha-was-here" not in b["files"], b
        assert b["container"] != a["container"]
        # A warm container is one function's for good: alpha's second call
        # runs in its container, which still has its state.
        assert alpha.remote()["state"] == 2


def test_warm_container_is_held_to_the_functions_memory(server: Any, image: Any) -> None:
    with app.run():
        _wait_warm(image.object_id)
        try:
            hog.remote(256)
        except Exception as e:  # noqa: BLE001 - the kind is what counts
            assert "memory" in str(e).lower(), repr(e)
        else:
            raise AssertionError("256 MiB in a memory=64 function was not stopped")
        assert hog.remote(8) == 8  # the next container (warm or not) works


def test_what_cannot_be_pooled_starts_a_container(server: Any, image: Any) -> None:
    with app.run():
        _wait_warm(image.object_id)
        assert with_cpu.remote() == "ok"
        assert _row("with_cpu")["cold_start"]["warm"] is False
