"""End to end: deployed apps (issue 7).

`skiff deploy` of a file, calls by name from other processes
(Function.from_name, Cls.from_name), redeploys with the rolling and
recreate strategies while a long call runs, an unchanged deploy, rollback,
history, stop; a Period schedule firing while scaled to zero with its runs
in `skiff app logs`; a Cron's next run in its time zone; and, on a server of
the test's own, `kill -9` with accepted inputs queued, then a restart: the
endpoint answers at the same URL, the schedule goes on, and every accepted
input finishes.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.request
import zoneinfo
from typing import Any, Iterator, Optional

import pytest

from conftest import SKIFF_BIN, skiff_cli
from test_server import copy_debootstrap, session_rootfs, start_server  # noqa: F401 (fixtures)

# The session's server (conftest) for every test; the kill -9 test adds one of its own.
pytestmark = pytest.mark.usefixtures("server")

PY = "/usr/bin/python3"
# Deployed apps outlive a test (and, with SKIFF_TEST_HOME, a run): names of this run.
RUN = os.urandom(3).hex()
SDK = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "sdk", "python"))


@pytest.fixture
def appdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="skiff-deploy-", dir="/tmp")
    yield d
    subprocess.run(["rm", "-rf", d])


@pytest.fixture
def stop_apps() -> Iterator[list[str]]:
    """Names appended here are stopped after the test (deployed apps outlive it)."""
    names: list[str] = []
    yield names
    for n in names:
        skiff_cli("app", "stop", n)


def write(d: str, name: str, source: str) -> str:
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(source))
    return path


def deploy(path: str, *args: str, env: Optional[dict[str, str]] = None) -> dict[str, Any]:
    full = dict(os.environ)
    full.update(env or {})
    r = subprocess.run([SKIFF_BIN, "deploy", "--json", *args, path], capture_output=True,
                       text=True, timeout=300, env=full, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"skiff deploy failed ({r.returncode}):\n{r.stderr[-3000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def py(code: str, env: Optional[dict[str, str]] = None, timeout: float = 120) -> Any:
    """Runs code in another Python process (as a user's other program would);
    its last stdout line is JSON."""
    full = dict(os.environ)
    full.update(env or {})
    full["PYTHONPATH"] = SDK
    r = subprocess.run([PY, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                       timeout=timeout, env=full, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"the caller failed:\n{r.stderr[-3000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def get_json(url: str, timeout: float = 30) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def app_row(name: str) -> dict[str, Any]:
    r = skiff_cli("app", "list", "--json")
    assert r.returncode == 0, r.stderr
    rows = [a for a in json.loads(r.stdout) if a["name"] == name]
    assert rows, f"{name} is not in `skiff app list`: {r.stdout[:2000]}"
    return rows[0]


APP = """
import time
import skiff

app = skiff.App("{name}")

@app.function()
@skiff.fastapi_endpoint(method="GET")
def hello():
    return {{"status": "success", "version": "{v}"}}

@app.function()
def square(x):
    return x * x

@app.function()
def slow(t: float):
    time.sleep(t)
    return "{v}"

@app.cls()
class Model:
    size: int = skiff.parameter(default=1)

    @skiff.method()
    def predict(self, x):
        return ("{v}", x * self.size)
"""


def test_deploy_and_call_by_name_from_another_process(appdir: str, stop_apps: list[str]) -> None:
    name = "dep-basic-" + RUN
    stop_apps.append(name)
    out = deploy(write(appdir, "basic.py", APP.format(name=name, v="v1")))
    assert out["name"] == name and out["version"] == 1 and not out["unchanged"]
    url = out["functions"]["hello"]["web_url"]
    assert url.endswith(f"/{name}/hello")
    # The command has exited: the app is still up.
    assert get_json(url) == {"status": "success", "version": "v1"}
    got = py(f"""
        import json, skiff
        sq = skiff.Function.from_name("{name}", "square")
        Model = skiff.Cls.from_name("{name}", "Model")
        calls = [sq.spawn(i) for i in range(3)]
        print(json.dumps({{
            "remote": sq.remote(7),
            "map": list(sq.map(range(5))),
            "spawn": [c.get() for c in calls],
            "cls": Model(size=3).predict.remote(5),
            "cls_default": Model().predict.remote(5),
            "url": skiff.Function.from_name("{name}", "hello").get_web_url(),
        }}))
    """)
    assert got["remote"] == 49
    assert got["map"] == [0, 1, 4, 9, 16]
    assert got["spawn"] == [0, 1, 4]
    assert got["cls"] == ["v1", 15]
    assert got["cls_default"] == ["v1", 5]
    assert got["url"] == url
    row = app_row(name)
    assert row["state"] == "deployed" and row["version"] == 1 and row["deployed"] is True
    assert row["web_urls"] == {"hello": url}
    # Its image cannot be removed from under it.
    images = json.loads(skiff_cli("image", "list", "--json").stdout)
    images = images.get("images", images) if isinstance(images, dict) else images
    base = [i["image_id"] for i in images if i.get("base") == "debian_slim" and not i.get("steps")]
    assert base, images
    r = skiff_cli("image", "rm", base[0])
    assert r.returncode != 0 and "deployed app" in r.stderr, (r.stdout, r.stderr)
    # A name that is not deployed is a clear error, not a hang.
    r = subprocess.run([PY, "-c", "import skiff; skiff.Function.from_name('no-such-app', "
                        "'f').remote(1)"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": SDK})
    assert r.returncode != 0 and "no-such-app" in r.stderr, r.stderr[-2000:]


def test_unchanged_deploy_is_a_noop(appdir: str, stop_apps: list[str]) -> None:
    name = "dep-same-" + RUN
    stop_apps.append(name)
    path = write(appdir, "same.py", APP.format(name=name, v="v1"))
    first = deploy(path)
    full = dict(os.environ)
    r = subprocess.run([SKIFF_BIN, "deploy", path], capture_output=True, text=True, timeout=120,
                       env=full, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert "unchanged" in r.stderr and f"v{first['version']}" in r.stderr, r.stderr
    again = deploy(path)
    assert again["unchanged"] is True and again["version"] == first["version"]
    hist = json.loads(skiff_cli("app", "history", name, "--json").stdout)
    assert [v["version"] for v in hist["versions"]] == [first["version"]]


def _long_then_new(name: str, t: float) -> dict[str, Any]:
    """Starts slow(t) in another process; returns its handle and start time."""
    proc = subprocess.Popen(
        [PY, "-c", textwrap.dedent(f"""
            import json, time, skiff
            t0 = time.time()
            r = skiff.Function.from_name("{name}", "slow").remote({t})
            print(json.dumps({{"result": r, "start": t0, "end": time.time()}}))
        """)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": SDK})
    return {"proc": proc}


def _finish(h: dict[str, Any]) -> dict[str, Any]:
    out, err = h["proc"].communicate(timeout=120)
    assert h["proc"].returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def _wait_running(name: str, timeout: float = 30) -> None:
    """Until a container of slow holds an input."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = skiff_cli("container", "list", "--json")
        rows = json.loads(r.stdout or "[]")
        rows = rows.get("containers", []) if isinstance(rows, dict) else rows
        if any(c.get("function") == "slow" and c.get("app_name") == name and
               c.get("status") == "busy" for c in rows):
            return
        time.sleep(0.05)
    raise AssertionError(f"slow of {name} never ran: {r.stdout[:2000]}")


def _redeploy_during_a_long_call(appdir: str, name: str, strategy: str,
                                 t: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Deploys v1, starts a call of t seconds on it, redeploys v2 with the
    strategy while it runs: the deploy's output and the long call."""
    path = write(appdir, f"{strategy}.py", APP.format(name=name, v="v1"))
    deploy(path)
    long_call = _long_then_new(name, t)
    _wait_running(name)
    write(appdir, f"{strategy}.py", APP.format(name=name, v="v2"))
    return deploy(path, "--strategy", strategy), long_call


def test_rolling_redeploy_new_calls_get_new_code_while_old_call_finishes(
        appdir: str, stop_apps: list[str]) -> None:
    name = "dep-rolling-" + RUN
    stop_apps.append(name)
    out, long_call = _redeploy_during_a_long_call(appdir, name, "rolling", 4)
    assert out["version"] == 2 and not out["unchanged"]
    t0 = time.time()
    new = py(f"""
        import json, time, skiff
        print(json.dumps({{"r": skiff.Function.from_name("{name}", "slow").remote(0),
                           "end": time.time()}}))
    """)
    old = _finish(long_call)
    assert new["r"] == "v2"
    assert old["result"] == "v1", "the call started before the redeploy ran on the old code"
    # Rolling: the new call did not wait for the old one to finish.
    assert new["end"] < old["end"], (new, old)
    assert new["end"] - t0 < 3.5
    assert get_json(out["functions"]["hello"]["web_url"])["version"] == "v2"


def test_recreate_stops_old_containers_first(appdir: str, stop_apps: list[str]) -> None:
    name = "dep-recreate-" + RUN
    stop_apps.append(name)
    out, long_call = _redeploy_during_a_long_call(appdir, name, "recreate", 3)
    assert out["version"] == 2
    new = py(f"""
        import json, time, skiff
        print(json.dumps({{"r": skiff.Function.from_name("{name}", "slow").remote(0),
                           "end": time.time()}}))
    """)
    old = _finish(long_call)
    assert old["result"] == "v1" and new["r"] == "v2"
    # recreate: the new version started only once the old container was gone.
    assert new["end"] >= old["end"] - 0.05, (new, old)
    hist = json.loads(skiff_cli("app", "history", name, "--json").stdout)
    assert hist["versions"][0]["strategy"] == "recreate"


def test_rollback_history_and_stop(appdir: str, stop_apps: list[str]) -> None:
    name = "dep-rollback-" + RUN
    stop_apps.append(name)
    path = write(appdir, "rb.py", APP.format(name=name, v="v1"))
    url = deploy(path)["functions"]["hello"]["web_url"]
    write(appdir, "rb.py", APP.format(name=name, v="v2"))
    assert deploy(path, "--tag", "second")["version"] == 2
    assert get_json(url)["version"] == "v2"
    # The code was kept at deploy: rolling back runs v1 although the file says v2.
    r = skiff_cli("app", "rollback", name, "v1")
    assert r.returncode == 0, r.stderr
    assert "v1" in r.stderr and "v3" in r.stderr
    assert get_json(url)["version"] == "v1"
    assert py(f"""
        import json, skiff
        print(json.dumps(skiff.Function.from_name("{name}", "slow").remote(0)))
    """) == "v1"
    hist = json.loads(skiff_cli("app", "history", name, "--json").stdout)
    vs = hist["versions"]
    assert [v["version"] for v in vs] == [3, 2, 1]
    assert vs[0]["current"] and vs[0]["rollback_of"] == 1
    assert vs[1]["tag"] == "second" and not vs[1]["current"]
    table = skiff_cli("app", "history", name).stdout
    assert "rollback to v1" in table
    # Stop: calls by name fail clearly; the URL stops answering.
    assert skiff_cli("app", "stop", name).returncode == 0
    assert app_row(name)["state"] == "stopped"
    r = subprocess.run([PY, "-c", f"import skiff; skiff.Function.from_name({name!r}, "
                        "'square').remote(2)"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": SDK})
    assert r.returncode != 0 and name in r.stderr, r.stderr[-2000:]
    with pytest.raises(urllib.error.HTTPError) as e:
        get_json(url)
    assert e.value.code == 404


SCHED = """
import time
import skiff

app = skiff.App("{name}")

@app.function(schedule=skiff.Period(seconds=2))
def beat():
    print("beat-marker", time.time())

@app.function(schedule=skiff.Cron("{cron}", timezone="{tz}"))
def nightly():
    print("nightly ran")
"""


def test_period_runs_while_scaled_to_zero_and_shows_in_logs(appdir: str,
                                                             stop_apps: list[str]) -> None:
    name = "dep-sched-" + RUN
    stop_apps.append(name)
    t0 = time.time()
    deploy(write(appdir, "sched.py", SCHED.format(name=name, cron="0 3 * * *",
                                                     tz="Europe/Paris")))
    time.sleep(5.5)
    logs = skiff_cli("app", "logs", name, "--function", "beat", "--json").stdout
    runs = [json.loads(line) for line in logs.splitlines() if "beat-marker" in line]
    assert len(runs) >= 2, f"Period(seconds=2) ran {len(runs)} times in 5.5 s:\n{logs[-3000:]}"
    assert all(r["function"] == "beat" and r["ts"] >= t0 for r in runs)
    # The schedule's own lines name the run, also without --json.
    r = skiff_cli("app", "logs", name)
    assert "scheduled run" in r.stderr and "beat-marker" in r.stdout, r
    row = app_row(name)
    assert row["schedules"]["beat"]["schedule"] == "every 2s"
    assert row["schedules"]["beat"]["last_run"] >= t0


@pytest.mark.parametrize("cron,tz", [("0 3 * * *", "Europe/Paris"),
                                     ("30 2 * * *", "America/New_York"),
                                     ("15 9 * * MON-FRI", "Asia/Kolkata")])
def test_cron_next_run_in_its_time_zone(appdir: str, stop_apps: list[str], cron: str,
                                        tz: str) -> None:
    name = "dep-cron-" + tz.split("/")[1].lower().replace("_", "-") + "-" + RUN
    stop_apps.append(name)
    out = deploy(write(appdir, "cron.py", SCHED.format(name=name, cron=cron, tz=tz)))
    nxt = out["functions"]["nightly"]["next_run"]
    # The expected instant, from Python's own zoneinfo: the next matching local minute.
    zone = zoneinfo.ZoneInfo(tz)
    minute, hour, _, _, dow = cron.split()
    t = datetime.datetime.now(zone).replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    while True:
        ok = t.minute == int(minute) and t.hour == int(hour)
        if dow == "MON-FRI":
            ok = ok and t.weekday() < 5
        if ok:
            break
        t = (t.astimezone(datetime.timezone.utc) + datetime.timedelta(minutes=1)).astimezone(zone)
    assert nxt == t.timestamp(), (cron, tz, nxt, t)
    assert app_row(name)["schedules"]["nightly"]["schedule"] == f"cron '{cron}' ({tz})"


def test_bad_cron_is_refused_at_deploy(appdir: str) -> None:
    path = write(appdir, "bad.py", SCHED.format(name="dep-badcron", cron="61 * * * *",
                                                   tz="UTC"))
    r = subprocess.run([SKIFF_BIN, "deploy", path], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert "minute" in r.stderr and "61" in r.stderr, r.stderr
    path = write(appdir, "badtz.py", SCHED.format(name="dep-badtz", cron="0 3 * * *",
                                                     tz="Europe/Nowhere"))
    r = subprocess.run([SKIFF_BIN, "deploy", path], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "Europe/Nowhere" in r.stderr, r.stderr
    assert "dep-badcron" not in skiff_cli("app", "list").stdout.replace("stopped", "")


def test_schedules_of_ephemeral_apps_do_not_run(appdir: str) -> None:
    path = write(appdir, "eph.py", SCHED.format(name="dep-eph", cron="* * * * *", tz="UTC") +
                 textwrap.dedent("""
                     @app.local_entrypoint()
                     def main():
                         import time
                         time.sleep(3)
                 """))
    r = subprocess.run([SKIFF_BIN, "run", path], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": SDK})
    assert r.returncode == 0, r.stderr
    assert "schedules run only in deployed apps" in r.stderr
    assert "beat-marker" not in r.stdout + r.stderr


DURABLE = """
import time
import skiff

app = skiff.App("dep-durable")

@app.function()
@skiff.fastapi_endpoint(method="GET")
def hello():
    return {"ok": True}

@app.function(max_containers=1)
def work(i: int):
    time.sleep(0.7)
    return i * 10

@app.function(schedule=skiff.Period(seconds=1))
def beat():
    print("durable-beat", time.time())
"""


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_kill9_restart_keeps_app_url_schedule_and_inputs(
        appdir: str, start_server: Any, copy_debootstrap: str) -> None:  # noqa: F811
    port = _free_port()
    srv = start_server(env={"SKIFF_DEBOOTSTRAP": copy_debootstrap},
                       args=("--web-port", str(port)))
    env = {"SKIFF_HOME": srv.home, "SKIFF_SERVER": "unix:" + srv.sock}
    out = deploy(write(appdir, "durable.py", DURABLE), env=env)
    url = out["functions"]["hello"]["web_url"]
    assert get_json(url) == {"ok": True}
    ids = py("""
        import json, skiff
        f = skiff.Function.from_name("dep-durable", "work")
        print(json.dumps([f.spawn(i).object_id for i in range(8)]))
    """, env=env)
    time.sleep(1.5)  # a couple done, one running, the rest queued
    srv.kill9()
    srv.start()
    assert "accepted inputs run again" in srv.log(200), srv.log(60)
    # The endpoint answers at the same URL.
    assert get_json(url) == {"ok": True}
    # Every accepted input finishes, with its own result.
    results = py(f"""
        import json, skiff
        ids = {json.dumps(ids)}
        print(json.dumps([skiff.FunctionCall.from_id(i).get(timeout=60) for i in ids]))
    """, env=env)
    assert results == [i * 10 for i in range(8)]
    # The schedule keeps firing after the restart.
    restarted = time.time()
    time.sleep(3)
    r = subprocess.run([SKIFF_BIN, "app", "logs", "dep-durable", "--json"], capture_output=True,
                       text=True, timeout=60, env={**os.environ, **env})
    beats = [json.loads(line) for line in r.stdout.splitlines() if "durable-beat" in line]
    assert sum(1 for b in beats if b["ts"] > restarted) >= 2, r.stdout[-3000:]
    # Lines from before the restart are still in the app's log.
    assert any(b["ts"] < restarted - 3 for b in beats)
    # The app list survives too, with its version.
    r = subprocess.run([SKIFF_BIN, "app", "list", "--json"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, **env})
    rows = [a for a in json.loads(r.stdout) if a["name"] == "dep-durable"]
    assert rows and rows[0]["state"] == "deployed" and rows[0]["version"] == 1
    # A stopped deployed app stays stopped across a restart.
    assert subprocess.run([SKIFF_BIN, "app", "stop", "dep-durable"], env={**os.environ, **env},
                          capture_output=True, timeout=60).returncode == 0
    srv.stop()
    srv.start()
    r = subprocess.run([SKIFF_BIN, "app", "list", "--json"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, **env})
    rows = [a for a in json.loads(r.stdout) if a["name"] == "dep-durable"]
    assert rows and rows[0]["state"] == "stopped", rows
    with pytest.raises(urllib.error.HTTPError):
        get_json(url)


MISSED = """
import skiff

app = skiff.App("dep-missed")

@app.function(schedule=skiff.Period(seconds=1))
def tick():
    print("missed-tick")
"""


def test_runs_missed_while_down_fire_once_at_start(
        appdir: str, start_server: Any, copy_debootstrap: str) -> None:  # noqa: F811
    srv = start_server(env={"SKIFF_DEBOOTSTRAP": copy_debootstrap},
                       args=("--web-port", "0"))
    env = {"SKIFF_HOME": srv.home, "SKIFF_SERVER": "unix:" + srv.sock}
    deploy(write(appdir, "missed.py", MISSED), env=env)
    time.sleep(2.5)
    srv.stop()
    time.sleep(4)  # four slots pass while the server is down
    srv.start()
    started = time.time()
    time.sleep(0.8)

    def runs_since(t: float) -> list[dict[str, Any]]:
        r = subprocess.run([SKIFF_BIN, "app", "logs", "dep-missed", "--json"],
                           capture_output=True, text=True, timeout=60, env={**os.environ, **env})
        return [json.loads(line) for line in r.stdout.splitlines()
                if "scheduled run" in line and json.loads(line)["ts"] >= t]

    # One catch-up run at start, not one per missed slot.
    assert len(runs_since(started - 0.5)) == 1, runs_since(started - 0.5)
    assert "missed its run" in srv.log(200)
    time.sleep(2.2)
    assert 2 <= len(runs_since(started - 0.5)) <= 4
