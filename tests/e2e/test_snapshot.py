"""End to end: memory snapshots (issue 8, part 1).

`enable_memory_snapshot=True`: the module import and the `@enter(snap=True)`
hooks run once, in a template process; every new container of the function
is a fork of it.  Checked here: state set by a snap hook is in every new
container while the hook ran once (its time stamp and a file it wrote are the
template's); `snap=False` hooks run in each container; two forks running at
once have their own memory, /tmp, pid 1 and /proc; each is held to its own
memory= (and a fork killed for it leaves the template working); changing the
code (a redeploy) makes a new template and the old one goes; templates show
in `skiff container list`; a snap hook that leaves a thread running gets a
warning in the app's log.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import skiff

try:  # fixtures for an extra server (not in containers, which import this module)
    from test_server import copy_debootstrap, session_rootfs, start_server  # noqa: F401
except ImportError:
    pass

app = skiff.App("e2e-snapshot")

IMPORTED_AT = time.time()   # module state: the template's, in each fork


@app.cls(enable_memory_snapshot=True, memory=128, scaledown_window=2)
class Snapped:
    @skiff.enter(snap=True)
    def load(self) -> None:
        self.weights = list(range(1000))
        self.loaded_at = time.time()
        self.template_host = os.uname().nodename
        with open("/root/snap-runs", "a") as f:   # in the template's files, seen by forks
            f.write("ran\n")

    @skiff.enter()
    def per_container(self) -> None:
        self.entered_in = os.environ.get("SKIFF_CONTAINER_ID")

    @skiff.method()
    def info(self) -> dict[str, Any]:
        with open("/root/snap-runs") as f:
            runs = f.read().count("ran")
        # Every user is mapped in a fork (not only root): files keep their
        # owners, and root can give a file to another user.
        with open("/tmp/owned", "w") as f:
            f.write("x")
        os.chown("/tmp/owned", 1000, 1000)
        owner = os.stat("/tmp/owned").st_uid
        return {"container": os.environ.get("SKIFF_CONTAINER_ID"), "entered_in": self.entered_in,
                "loaded_at": self.loaded_at, "weights": sum(self.weights), "snap_runs": runs,
                "template_host": self.template_host, "host": os.uname().nodename,
                "pid": os.getpid(), "imported_at": IMPORTED_AT, "owner": owner,
                "nobody": os.stat("/etc/passwd").st_uid}

    @skiff.method()
    def scribble(self, token: str) -> dict[str, Any]:
        self.weights[0] = token                   # type: ignore[call-overload]
        with open(f"/tmp/{token}", "w") as f:
            f.write(token)
        time.sleep(2.5)                           # the other fork writes meanwhile
        return {"container": os.environ.get("SKIFF_CONTAINER_ID"), "mine": self.weights[0],
                "tmp": sorted(os.listdir("/tmp")), "pid": os.getpid(),
                "procs": sorted(p for p in os.listdir("/proc") if p.isdigit())}

    @skiff.method()
    def hold(self, mib: int) -> int:
        blocks = [bytearray(1 << 20) for _ in range(mib)]
        for b in blocks:
            b[::4096] = b"x" * len(b[::4096])     # touched: charged to this fork
        time.sleep(2.5)                           # while the other fork holds as much
        return len(blocks)

    @skiff.method()
    def hog(self, mib: int) -> int:
        blocks = [bytearray(1 << 20) for _ in range(mib)]
        return len(blocks)


@app.function(enable_memory_snapshot=True, scaledown_window=2)
def plain() -> dict[str, Any]:
    return {"container": os.environ.get("SKIFF_CONTAINER_ID"), "imported_at": IMPORTED_AT}


@app.function(enable_memory_snapshot=True, scaledown_window=2)
@skiff.fastapi_endpoint(method="GET")
def web_hello() -> dict[str, Any]:
    return {"container": os.environ.get("SKIFF_CONTAINER_ID"), "imported_at": IMPORTED_AT}


@app.cls(enable_memory_snapshot=True, scaledown_window=2, max_containers=3)
class SlowLoad:
    @skiff.enter(snap=True)
    def load(self) -> None:
        time.sleep(2)                             # a model's load, say
        self.loaded_at = time.time()

    @skiff.method()
    def work(self, x: int) -> dict[str, Any]:
        time.sleep(1)
        return {"x": x, "loaded_at": self.loaded_at,
                "container": os.environ.get("SKIFF_CONTAINER_ID")}


@app.cls(enable_memory_snapshot=True, scaledown_window=2)
class Threaded:
    @skiff.enter(snap=True)
    def start_thread(self) -> None:
        threading.Thread(target=time.sleep, args=(60,), name="snap-sleeper", daemon=True).start()

    @skiff.method()
    def threads(self) -> int:
        return threading.active_count()


def _need_userns() -> None:
    """Forks take user namespaces inside a container: skip where the kernel forbids them."""
    import pytest
    for path, bad in (("/proc/sys/kernel/unprivileged_userns_clone", "0"),
                      ("/proc/sys/user/max_user_namespaces", "0")):
        try:
            with open(path) as f:
                if f.read().strip() == bad:
                    pytest.skip(f"this kernel forbids user namespaces ({path} is {bad}), "
                                f"which snapshot forks need")
        except OSError:
            pass


def _containers() -> list[dict[str, Any]]:
    from conftest import skiff_cli  # here: containers import this module without pytest
    return json.loads(skiff_cli("container", "list", "--json").stdout)


def _rows(fn: str, app_name: str = "e2e-snapshot") -> list[dict[str, Any]]:
    return [c for c in _containers() if c.get("app_name") == app_name and c.get("function") == fn]


def _wait_scaled_to_zero(fn: str, app_name: str = "e2e-snapshot", timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [r for r in _rows(fn, app_name) if r["status"] != "template"]:
            return
        time.sleep(0.1)
    raise AssertionError(f"{fn} did not scale to zero: {_rows(fn, app_name)}")


def _cold_start(fn: str, container: str) -> dict[str, Any]:
    rows = [r for r in _rows(fn) if r.get("container_id") == container]
    assert rows, _rows(fn)
    return rows[0]["cold_start"]


def test_snap_state_is_in_every_new_container_and_snap_false_hooks_run_in_each(
        server: Any, image: Any) -> None:
    _need_userns()
    with app.run():
        m = Snapped()
        a = m.info.remote()
        cs_a = _cold_start("Snapped", a["container"])
        _wait_scaled_to_zero("Snapped")
        t0 = time.perf_counter()
        b = m.info.remote()
        took_ms = (time.perf_counter() - t0) * 1000
        cs_b = _cold_start("Snapped", b["container"])
        templates = [r for r in _rows("Snapped") if r["status"] == "template"]
    assert a["container"] != b["container"]
    # The snap hook ran once, in the template: both containers have its state.
    assert a["loaded_at"] == b["loaded_at"] and a["weights"] == b["weights"] == 499500
    assert a["snap_runs"] == b["snap_runs"] == 1, (a, b)
    assert a["imported_at"] == b["imported_at"]
    assert a["template_host"] == b["template_host"] != a["host"]
    # The snap=False hook ran in each container, itself.
    assert a["entered_in"] == a["container"] and b["entered_in"] == b["container"]
    # Each is a container of its own: pid 1, its own host name.
    assert a["pid"] == b["pid"] == 1 and a["host"] == a["container"]
    assert a["owner"] == b["owner"] == 1000 and a["nobody"] == 0, (a, b)
    assert cs_a["snapshot"] is True and cs_b["snapshot"] is True, (cs_a, cs_b)
    assert cs_a["template"] == cs_b["template"]
    # The first was forked on demand; the second took the spare fork made
    # ahead of demand (SKIFF_SNAPSHOT_SPARE), which needed only its init frame.
    assert cs_a["spare"] is False and cs_b["spare"] is True, (cs_a, cs_b)
    assert cs_a["setup_ms"] > 0 and cs_b["setup_ms"] == 0
    assert cs_b["import_ms"] == 0
    assert took_ms < 2000, took_ms
    # The template: listed, with its memory, and the forks made from it.
    assert len(templates) == 1 and templates[0]["container_id"] == cs_a["template"], templates
    assert templates[0]["memory_bytes"] > 0 and templates[0]["forks"] >= 2, templates
    # ... and metered, as a "snapshot" row of `skiff usage`, once it has gone with the app.
    from conftest import skiff_cli
    deadline = time.monotonic() + 20
    rows: list[Any] = []
    while time.monotonic() < deadline and not rows:
        usage = json.loads(skiff_cli("usage", "--json", "--app", "e2e-snapshot").stdout)
        rows = [r for r in usage["rows"] if r["kind"] == "snapshot" and r["function"] == "Snapped"
                and r["memory_gib_seconds"] > 0]
        time.sleep(0.2)
    assert rows, usage


def test_two_forks_do_not_see_each_others_memory_tmp_or_processes(server: Any,
                                                                 image: Any) -> None:
    _need_userns()
    with app.run():
        out = list(Snapped().scribble.map(["alpha", "beta"]))
    assert out[0]["container"] != out[1]["container"], out
    for token, r in zip(["alpha", "beta"], out):
        assert r["mine"] == token, out                 # its own copy of the instance
        assert r["tmp"] == [token], out                # its own /tmp
        assert r["pid"] == 1 and r["procs"] == [r["procs"][0]], out   # only itself in /proc


def test_each_fork_is_held_to_its_own_memory(server: Any, image: Any) -> None:
    _need_userns()
    with app.run():
        m = Snapped()
        # Two forks at once, 80 MiB each under memory=128: each has a limit of
        # its own (the template's box would not hold both).
        held = list(m.hold.map([80, 80]))
        assert held == [80, 80], held
        import pytest
        assert m.hog.remote(8) == 8
        with pytest.raises(Exception) as e:
            m.hog.remote(400)
        assert "memory" in str(e.value).lower(), repr(e.value)
        # The template is unharmed: the next container is a fork again.
        r = m.info.remote()
        assert _cold_start("Snapped", r["container"])["snapshot"] is True


def test_plain_function_and_warning_for_a_thread_left_by_a_snap_hook(server: Any, image: Any,
                                                                     capfd: Any) -> None:
    _need_userns()
    with app.run():
        a = plain.remote()
        _wait_scaled_to_zero("plain")
        b = plain.remote()
        assert a["container"] != b["container"] and a["imported_at"] == b["imported_at"]
        assert _cold_start("plain", b["container"])["snapshot"] is True
        # The thread does not exist in the fork; the template's output (the
        # app's log, streamed to `skiff run`) says so.
        assert Threaded().threads.remote() == 1
        deadline = time.monotonic() + 10
        err = ""
        while time.monotonic() < deadline and "snap-sleeper" not in err:
            time.sleep(0.2)
            err += capfd.readouterr().err
    assert "memory snapshot: 1 thread(s)" in err and "snap-sleeper" in err, err[-2000:]


def test_cold_starts_wait_for_a_slow_template_then_all_fork(server: Any, image: Any) -> None:
    """Three inputs at once on a function whose template takes 2 s: the
    containers asked for meanwhile wait for it (the snap hook runs once) and
    are all forks of it."""
    _need_userns()
    with app.run():
        out = list(SlowLoad().work.map([1, 2, 3]))
        rows = _rows("SlowLoad")
    assert [o["x"] for o in out] == [1, 2, 3]
    assert len({o["loaded_at"] for o in out}) == 1, out
    containers = {o["container"] for o in out}
    assert len(containers) >= 2, out                     # they ran side by side
    forks = [r for r in rows if r.get("container_id") in containers]
    assert forks and all(r["cold_start"]["snapshot"] for r in forks if r["cold_start"]), rows


def test_web_endpoint_forks_answer_requests(server: Any, image: Any) -> None:
    _need_userns()
    import urllib.request
    with app.run():
        url = web_hello.get_web_url()
        a = json.loads(urllib.request.urlopen(url, timeout=60).read())
        _wait_scaled_to_zero("web_hello")
        b = json.loads(urllib.request.urlopen(url, timeout=60).read())
        assert a["container"] != b["container"] and a["imported_at"] == b["imported_at"]
        assert _cold_start("web_hello", b["container"])["snapshot"] is True


SNAP_APP = """
import time
import skiff

app = skiff.App("{name}")
LOADED = time.time()

@app.function(enable_memory_snapshot=True, scaledown_window=2)
def version():
    import os
    return {{"v": "{v}", "loaded": LOADED, "container": os.environ["SKIFF_CONTAINER_ID"]}}
"""


def test_changing_the_code_makes_a_new_template(server: Any, tmp_path: Any) -> None:
    _need_userns()
    from conftest import skiff_cli
    from test_deploy import deploy, write
    name = f"e2e-snap-{os.urandom(3).hex()}"
    try:
        path = write(str(tmp_path), "snapapp.py", SNAP_APP.format(name=name, v="v1"))
        deploy(path)
        fn = skiff.Function.from_name(name, "version")
        one = fn.remote()
        two_same = None
        _wait_scaled_to_zero("version", name)
        two_same = fn.remote()
        rows = {r["container_id"]: r for r in _containers() if r.get("app_name") == name}
        t1 = [r for r in rows.values() if r["status"] == "template"]
        assert one["v"] == "v1" and one["loaded"] == two_same["loaded"], (one, two_same)
        assert len(t1) == 1, rows
        write(str(tmp_path), "snapapp.py", SNAP_APP.format(name=name, v="v2"))
        deploy(path)
        three = skiff.Function.from_name(name, "version").remote()
        assert three["v"] == "v2" and three["loaded"] != one["loaded"], three
        rows = {r["container_id"]: r for r in _containers() if r.get("app_name") == name}
        assert rows[three["container"]]["cold_start"]["template"] != t1[0]["container_id"]
        # The old version's template goes once its forks are gone.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ids = {r["container_id"] for r in _containers() if r.get("app_name") == name}
            if t1[0]["container_id"] not in ids:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the old template {t1[0]['container_id']} is still up")
    finally:
        skiff_cli("app", "stop", name)


def _list_in(env: dict[str, str], name: str) -> list[dict[str, Any]]:
    import subprocess
    from conftest import SKIFF_BIN
    r = subprocess.run([SKIFF_BIN, "container", "list", "--json"], capture_output=True,
                       text=True, timeout=60, env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    return [c for c in json.loads(r.stdout) if c.get("app_name") == name]


def _wait_for(cond: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


CALL = """
import json, skiff
print(json.dumps(skiff.Function.from_name("{name}", "version").remote()))
"""


def test_templates_go_when_idle_or_short_of_memory_and_come_back_after_a_restart(
        server: Any, tmp_path: Any, start_server: Any, copy_debootstrap: str) -> None:
    _need_userns()
    from test_deploy import deploy, py, write
    name = "e2e-snap-life"
    path = write(str(tmp_path), "life.py", SNAP_APP.format(name=name, v="v1"))
    srv = start_server(env={"SKIFF_DEBOOTSTRAP": copy_debootstrap, "SKIFF_SNAPSHOT_IDLE": "3"})
    env = {"SKIFF_HOME": srv.home, "SKIFF_SERVER": "unix:" + srv.sock}
    deploy(path, env=env)

    def template() -> list[dict[str, Any]]:
        return [r for r in _list_in(env, name) if r["status"] == "template"]

    first = py(CALL.format(name=name), env=env)
    t1 = template()
    assert len(t1) == 1 and t1[0]["forks"] >= 1, _list_in(env, name)
    # Idle for SKIFF_SNAPSHOT_IDLE (3 s) with no fork running: it goes, its
    # spare fork with it, and the app has no container left.
    _wait_for(lambda: not _list_in(env, name), "the idle template (and its spare) to go")
    # The next cold start makes a new one, from the same code.
    again = py(CALL.format(name=name), env=env)
    t2 = template()
    assert again["loaded"] != first["loaded"] and t2[0]["container_id"] != t1[0]["container_id"]
    # kill -9 and a restart: what the dead server left is cleaned up, and a
    # cold start makes a template again.
    srv.kill9()
    srv.start()
    after = py(CALL.format(name=name), env=env)
    assert after["v"] == "v1" and len(template()) == 1
    srv.stop()
    # Short of memory (a floor above what the host has): no template is kept
    # once its forks are gone, whatever the idle time.
    srv2 = start_server(env={"SKIFF_DEBOOTSTRAP": copy_debootstrap,
                             "SKIFF_SNAPSHOT_MIN_FREE_MIB": "100000000"})
    env2 = {"SKIFF_HOME": srv2.home, "SKIFF_SERVER": "unix:" + srv2.sock}
    deploy(path, env=env2)
    assert py(CALL.format(name=name), env=env2)["v"] == "v1"
    _wait_for(lambda: not [r for r in _list_in(env2, name) if r["status"] == "template"],
              "the template to go when the host is short of memory")
    assert "short of memory" in srv2.log(400), srv2.log(60)


GPU_APP = """
import os
import skiff

app = skiff.App("e2e-snap-gpu")

@app.function(gpu="H100", enable_memory_snapshot=True)
def where():
    return {"container": os.environ["SKIFF_CONTAINER_ID"],
            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}
"""


def test_gpu_functions_are_not_snapshotted(server: Any, tmp_path: Any, start_server: Any,
                                           copy_debootstrap: str) -> None:
    """GPU state cannot be forked: a gpu= function with enable_memory_snapshot
    starts containers as before (here on a fake H100), with its GPU."""
    from test_deploy import deploy, py, write
    srv = start_server(env={"SKIFF_DEBOOTSTRAP": copy_debootstrap},
                       args=("--fake-gpus", "H100:1"))
    env = {"SKIFF_HOME": srv.home, "SKIFF_SERVER": "unix:" + srv.sock}
    deploy(write(str(tmp_path), "gpuapp.py", GPU_APP), env=env)
    r = py('import json, skiff\n'
           'print(json.dumps(skiff.Function.from_name("e2e-snap-gpu", "where").remote()))',
           env=env)
    assert r["cuda"] == "0", r
    rows = _list_in(env, "e2e-snap-gpu")
    assert not [x for x in rows if x["status"] == "template"], rows
    mine = [x for x in rows if x.get("container_id") == r["container"]]
    assert mine and not mine[0]["cold_start"].get("snapshot"), rows
