"""Metering end to end (issue 4): `skiff usage` reports each container's life
as container-seconds within a second, prices it, and keeps it across server
restarts (a clean stop and a kill -9).

The first test runs on the session server; the restart test starts extra
servers on a fresh home of their own (see test_server.py, whose fixtures it
borrows), with the session's image copied in instead of built.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any, Optional

import pytest

from conftest import SKIFF_BIN
from extra_server import ExtraServer
from test_server import _ready, copy_debootstrap, session_rootfs, start_server  # noqa: F401

StartFn = Any


def usage_cli(*args: str, env: Optional[dict[str, str]] = None,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SKIFF_BIN, "usage", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL,
                          env=env if env is not None else dict(os.environ))


def usage_json(*args: str, env: Optional[dict[str, str]] = None) -> dict[str, Any]:
    proc = usage_cli("--json", *args, env=env)
    assert proc.returncode == 0, f"skiff usage: exit {proc.returncode}\n{proc.stderr}"
    return json.loads(proc.stdout)


def rows_of(answer: dict[str, Any], kind: str, function: Optional[str] = None) -> list[dict[str, Any]]:
    return [r for r in answer["rows"] if r["kind"] == kind and r["function"] == function]


def one_row(answer: dict[str, Any], kind: str, function: Optional[str] = None) -> dict[str, Any]:
    rows = rows_of(answer, kind, function)
    assert len(rows) == 1, f"want one {kind} row for {function}, got {answer['rows']}"
    return rows[0]


def life(rec: dict[str, Any]) -> float:
    assert rec["ended_at"] is not None, rec
    return float(rec["ended_at"]) - float(rec["created_at"])


def wait_ended(get: Any, cid: str, timeout: float = 60) -> dict[str, Any]:
    """get(cid) -> the container's record; polls until it has ended."""
    deadline = time.monotonic() + timeout
    while True:
        rec = get(cid)
        if rec["ended_at"] is not None:
            return rec
        if time.monotonic() > deadline:
            raise AssertionError(f"{cid} did not end within {timeout:g} s: {rec}")
        time.sleep(0.1)


def unique(prefix: str) -> str:
    return f"{prefix}-{random.randrange(16**8):08x}"


def test_usage_matches_container_lives(image: Any, client: Any, tmp_path: Path) -> None:
    import skiff

    # A sandbox that lives about 3 s, in an app of its own.
    sb_app = unique("t-usage-sb")
    app = skiff.App.lookup(sb_app, create_if_missing=True)
    sb = skiff.Sandbox.create("sleep", "3", app=app, image=image)
    sb.wait()
    get = lambda cid: client.request("GET", f"/v1/sandboxes/{cid}")  # noqa: E731
    sb_rec = wait_ended(get, sb.object_id)

    # Then a function app: its containers end when `skiff run` ends.
    fn_app = unique("t-usage-fn")
    path = tmp_path / "usage_app.py"
    path.write_text(textwrap.dedent(f"""
        import socket, time
        import skiff
        app = skiff.App({fn_app!r})

        @app.function(cpu=0.5, memory=256)
        def where(x):
            time.sleep(0.2)
            return socket.gethostname()

        @app.local_entrypoint()
        def main():
            ids = sorted(set(where.map(range(5))))
            print("IDS", ",".join(ids))
    """))
    proc = subprocess.run([SKIFF_BIN, "run", str(path)], capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"skiff run: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    ids = [line.split(" ", 1)[1].split(",") for line in proc.stdout.splitlines()
           if line.startswith("IDS ")][0]
    assert ids and all(i.startswith("ct-") for i in ids), proc.stdout
    fn_recs = [wait_ended(get, cid, timeout=150) for cid in ids]

    # The sandbox: one container, its life within a second.
    u = usage_json("--app", sb_app)
    assert u["app"] == sb_app
    row = one_row(u, "sandbox")
    assert row["app_name"] == sb_app and row["app_id"] == app.app_id, row
    assert row["containers"] == 1, row
    assert abs(row["container_seconds"] - life(sb_rec)) <= 1.0, (row, sb_rec)
    assert life(sb_rec) >= 2.5, sb_rec
    assert row["cost"] > 0 and u["total_cost"] >= row["cost"], u
    # Unrequested resources bill at Modal's defaults: 0.125 cores, 128 MiB.
    assert row["cpu_seconds"] >= 0.125 * row["container_seconds"] - 1e-6, row
    assert abs(row["memory_gib_seconds"] - row["container_seconds"] / 8) < 1e-3, row

    # The function: its containers, each within a second; the inputs served.
    u = usage_json("--app", fn_app)
    row = one_row(u, "function", "where")
    assert row["app_name"] == fn_app, row
    assert row["containers"] == len(ids), (row, ids)
    lives = sum(life(r) for r in fn_recs)
    assert abs(row["container_seconds"] - lives) <= 1.0 * len(ids), (row, fn_recs)
    assert row["inputs"] == 5, row
    assert row["cpu_seconds"] >= 0.5 * row["container_seconds"] - 1e-6, row
    assert abs(row["memory_gib_seconds"] - row["container_seconds"] / 4) < 1e-3, row
    assert row["cpu_used_seconds"] > 0, row  # python3 started in there
    assert row["cost"] > 0, row
    assert u["prices"]["cpu_core_second"] > 0 and u["prices"]["gpu_second"]["H100"] > 0

    # Windows and filters.
    assert usage_json("--app", fn_app, "--since", "2099-01-01")["rows"] == []
    later = usage_json("--app", sb_app, "--since", str(sb_rec["ended_at"] - 1))
    assert abs(one_row(later, "sandbox")["container_seconds"] - 1.0) <= 0.05, later
    assert usage_json("--app", unique("t-usage-none"))["rows"] == []

    # The table for people names both apps and ends with the total.
    proc = usage_cli()
    assert proc.returncode == 0, proc.stderr
    assert sb_app in proc.stdout and fn_app in proc.stdout and "where" in proc.stdout
    assert "Total: $" in proc.stdout.splitlines()[-1], proc.stdout


def test_usage_cli_errors(server: Any) -> None:
    proc = usage_cli("--help")
    assert proc.returncode == 0 and proc.stdout.startswith("Usage: skiff usage"), proc
    for args, says in ((["--since", "yesterday"], "cannot read 'yesterday'"),
                       (["--since", "2026-02-30"], "not a valid date"),
                       (["--bogus"], "unknown option"),
                       (["--app"], "needs a value"),
                       (["extra"], "unexpected argument")):
        proc = usage_cli(*args)
        assert proc.returncode == 2, (args, proc)
        assert says in proc.stderr, (args, proc.stderr)


def _env_for(srv: ExtraServer) -> dict[str, str]:
    env = dict(os.environ)
    env["SKIFF_HOME"] = srv.home
    env["SKIFF_SERVER"] = "unix:" + srv.sock
    return env


def _usage(srv: ExtraServer) -> dict[str, Any]:
    status, j = srv.json("GET", "/v1/usage")
    assert status == 200, f"GET /v1/usage answered {status}: {j}\n{srv.log()}"
    return j


def _rec(srv: ExtraServer, sid: str) -> dict[str, Any]:
    status, j = srv.json("GET", f"/v1/sandboxes/{sid}")
    assert status == 200, j
    return j


def test_usage_survives_restarts(start_server: StartFn,  # noqa: F811
                                 copy_debootstrap: str) -> None:  # noqa: F811
    srv, image_id = _ready(start_server, copy_debootstrap)
    short = srv.sandbox(image_id, ["sleep", "2"])
    status, j = srv.json("GET", f"/v1/processes/{short}/wait?timeout=30", timeout=40)
    assert status == 200 and j["done"], j
    short_life = life(wait_ended(lambda c: _rec(srv, c), short))
    before = one_row(_usage(srv), "sandbox")
    assert before["containers"] == 1 and abs(before["container_seconds"] - short_life) <= 1.0
    # The CLI says the same as the API.
    cli = usage_json(env=_env_for(srv))
    assert one_row(cli, "sandbox")["container_seconds"] == pytest.approx(
        before["container_seconds"], abs=1e-6)

    # A clean stop ends a running sandbox: its end is recorded too.
    stopped = srv.sandbox(image_id, ["sleep", "1000"])
    time.sleep(1.5)
    assert srv.stop() == 0, srv.log()
    again = start_server(home=srv.home, env={"SKIFF_DEBOOTSTRAP": copy_debootstrap})
    row = one_row(_usage(again), "sandbox")
    assert row["containers"] == 2, row
    stopped_life = life(_rec(again, stopped))
    assert stopped_life >= 1.4, stopped_life
    assert abs(row["container_seconds"] - (short_life + stopped_life)) <= 2.0, row
    assert row["cost"] > 0

    # A crash: what was written before it stays, and the lost container counts
    # no further than its last write (at most its life until the kill).
    lost = again.sandbox(image_id, ["sleep", "1000"])
    time.sleep(1.0)
    t_kill = time.time()
    again.kill9()
    third = start_server(home=srv.home, env={"SKIFF_DEBOOTSTRAP": copy_debootstrap})
    row = one_row(_usage(third), "sandbox")
    assert row["containers"] == 3, row
    lost_rec = _rec(third, lost)
    lost_part = row["container_seconds"] - short_life - stopped_life
    assert -2.0 <= lost_part <= t_kill - float(lost_rec["created_at"]) + 2.0, (row, lost_rec)
    time.sleep(1.0)  # time passing after the crash adds nothing
    assert one_row(_usage(third), "sandbox")["container_seconds"] == pytest.approx(
        row["container_seconds"], abs=1e-6)

    # The operator's price table, and a broken one: a clear error, no crash.
    prices = os.path.join(third.home, "prices.json")
    with open(prices, "w") as f:
        json.dump({"cpu_core_second": 1.0, "memory_gib_second": 0.0}, f)
    u = _usage(third)
    row = one_row(u, "sandbox")
    assert u["prices_file"] == prices
    assert row["cost"] == pytest.approx(row["cpu_seconds"], rel=1e-9), row
    with open(prices, "w") as f:
        f.write('{"cpu_core_second": 1.0,\n "memory_gib_second": }\n')
    status, j = third.json("GET", "/v1/usage")
    assert status == 500 and prices in j["error"]["message"], (status, j)
    proc = usage_cli(env=_env_for(third))
    assert proc.returncode == 1 and prices in proc.stderr and "line 2" in proc.stderr, proc
    assert third.running(), third.log()
    os.unlink(prices)
    assert _usage(third)["prices_file"] is None
    status, j = third.json("GET", "/v1/usage?since=soon")
    assert status == 400 and "since" in j["error"]["message"], (status, j)
