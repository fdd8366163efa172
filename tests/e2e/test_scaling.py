"""Autoscaling, concurrency, batching and classes end to end (issue 4), on the
session server (conftest.py) with real containers.

Each test writes a small app module into its temporary folder, imports it
here and runs it with ``with app.run():`` (the containers import the module
by name from that folder), so the test itself can watch the app's
containers while it works: ``GET /v1/containers`` every 50 ms, counting the
rows of the app's running function containers.
"""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

import pytest

from conftest import SKIFF_BIN


def load_app(tmp_path: Path, source: str) -> ModuleType:
    """Writes the app module and imports it under a name of its own."""
    name = f"scaling_app_{random.randrange(16**8):08x}"
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def app_containers(client: Any, app_name: str,
                   function: Optional[str] = None) -> list[dict[str, Any]]:
    """The app's running function containers (of one function, when given)."""
    rows = client.request("GET", "/v1/containers")["containers"]
    return [c for c in rows
            if c["container_id"].startswith("ct-") and c["state"] == "running"
            and c.get("app_name") == app_name
            and (function is None or c.get("function") == function)]


def unique(prefix: str) -> str:
    return f"{prefix}-{random.randrange(16**6):06x}"


class Watcher:
    """Counts an app's running function containers every 50 ms, in a thread."""

    def __init__(self, client: Any, app_name: str, function: Optional[str] = None) -> None:
        self.client = client
        self.app_name = app_name
        self.function = function
        self.peak = 0
        self.samples: list[tuple[float, int, list[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rows = app_containers(self.client, self.app_name, self.function)
            except Exception:
                rows = []
            self.peak = max(self.peak, len(rows))
            self.samples.append((time.monotonic(), len(rows),
                                 [str(r.get("status")) for r in rows]))
            self._stop.wait(0.05)

    def __enter__(self) -> "Watcher":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)


def wait_for(what: str, cond: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


SLEEPER = """
    import os, time, skiff
    app = skiff.App("{name}")

    @app.function({options})
    def f(x, secs=1.0):
        t0 = time.time()
        time.sleep(secs)
        return x, os.environ["SKIFF_CONTAINER_ID"], t0, time.time()
"""


def sleeper(tmp_path: Path, name: str, options: str) -> ModuleType:
    return load_app(tmp_path, SLEEPER.format(name=name, options=options))


def test_max_containers_caps_the_burst(image: Any, client: Any, tmp_path: Path) -> None:
    name = unique("t-scale10")
    mod = sleeper(tmp_path, name, "max_containers=10, scaledown_window=2")
    with mod.app.run(show_logs=False), Watcher(client, name) as w:
        t0 = time.monotonic()
        calls = [mod.f.spawn(i) for i in range(20)]
        results = [c.get(timeout=60) for c in calls]
        took = time.monotonic() - t0
        stats = mod.f.get_current_stats()
    assert [r[0] for r in results] == list(range(20))
    used = {r[1] for r in results}
    assert 2 <= len(used) <= 10, used
    assert w.peak <= 10, f"{w.peak} containers at once (max_containers=10)"
    assert w.peak >= 5, f"only {w.peak} containers for 20 one-second calls"
    assert 1.9 < took < 4.5, f"20 one-second calls on up to 10 containers took {took:.2f} s"
    assert stats.num_total_runners <= 10 and stats.autoscaler["max_containers"] == 10


def test_max_containers_one_runs_calls_one_at_a_time(image: Any, client: Any,
                                                     tmp_path: Path) -> None:
    name = unique("t-scale1")
    mod = sleeper(tmp_path, name, "max_containers=1")
    with mod.app.run(show_logs=False), Watcher(client, name) as w:
        calls = [mod.f.spawn(i, 0.4) for i in range(5)]
        results = sorted((c.get(timeout=60) for c in calls), key=lambda r: r[2])
    assert len({r[1] for r in results}) == 1
    for a, b in zip(results, results[1:]):
        assert b[2] >= a[3] - 0.01, f"calls overlapped: {a} and {b}"
    assert w.peak == 1


def test_min_containers_keep_one_up_and_update_autoscaler(image: Any, client: Any,
                                                          tmp_path: Path) -> None:
    name = unique("t-min")
    mod = sleeper(tmp_path, name, "min_containers=1, scaledown_window=2")
    with mod.app.run(show_logs=False):
        wait_for("the min_containers container", lambda: app_containers(client, name), 30)
        first = app_containers(client, name)[0]["container_id"]
        time.sleep(5)       # well past scaledown_window, with no input at all
        rows = app_containers(client, name)
        assert [r["container_id"] for r in rows] == [first], rows
        assert rows[0]["status"] == "idle"
        stats = mod.f.get_current_stats()
        assert (stats.num_total_runners, stats.backlog, stats.idle) == (1, 0, 1)
        # Live changes: two warm, then none.
        mod.f.update_autoscaler(min_containers=2)
        wait_for("a second warm container", lambda: len(app_containers(client, name)) == 2, 30)
        mod.f.update_autoscaler(min_containers=0)
        wait_for("scale to zero", lambda: not app_containers(client, name), 15)
        assert mod.f.get_current_stats().autoscaler["min_containers"] == 0


def test_idle_containers_scale_to_zero_after_scaledown_window(image: Any, client: Any,
                                                              tmp_path: Path) -> None:
    name = unique("t-down")
    mod = sleeper(tmp_path, name, "scaledown_window=2")
    with mod.app.run(show_logs=False):
        mod.f.remote(0, 0.0)
        done = time.monotonic()
        assert len(app_containers(client, name)) == 1
        wait_for("scale to zero", lambda: not app_containers(client, name), 15, every=0.05)
        idle_for = time.monotonic() - done
        assert 1.5 < idle_for < 8, f"the idle container went after {idle_for:.1f} s"
        assert mod.f.get_current_stats().num_total_runners == 0
        # And it comes back for the next input.
        assert mod.f.remote(1, 0.0)[0] == 1


def test_buffer_containers_wait_while_busy(image: Any, client: Any, tmp_path: Path) -> None:
    name = unique("t-buffer")
    mod = sleeper(tmp_path, name, "buffer_containers=2, scaledown_window=2")
    with mod.app.run(show_logs=False):
        assert not app_containers(client, name)     # idle function: no buffer
        calls = [mod.f.spawn(i, 4.0) for i in range(2)]

        def busy_and_buffered() -> bool:
            s = mod.f.get_current_stats()
            return s.busy == 2 and s.idle + s.starting >= 2

        wait_for("2 busy containers and 2 buffered", busy_and_buffered, 3.5, every=0.05)
        assert [c.get(timeout=30)[0] for c in calls] == [0, 1]
        wait_for("the buffer to go once idle", lambda: not app_containers(client, name), 20)


def test_concurrent_inputs_share_one_container(image: Any, client: Any,
                                               tmp_path: Path) -> None:
    name = unique("t-conc")
    mod = load_app(tmp_path, f"""
        import os, threading, time, skiff
        app = skiff.App("{name}")

        @app.function(max_containers=1)
        @skiff.concurrent(max_inputs=5)
        def f(x):
            time.sleep(1)
            return x, os.environ["SKIFF_CONTAINER_ID"], threading.get_ident()
    """)
    with mod.app.run(show_logs=False), Watcher(client, name) as w:
        mod.f.remote(-1)     # the container is up: what follows measures inputs only
        t0 = time.monotonic()
        calls = [mod.f.spawn(i) for i in range(5)]
        results = [c.get(timeout=30) for c in calls]
        took = time.monotonic() - t0
    assert [r[0] for r in results] == list(range(5))
    assert len({r[1] for r in results}) == 1 and len({r[2] for r in results}) == 5
    assert took < 1.9, f"5 one-second inputs with max_inputs=5 took {took:.2f} s"
    assert w.peak == 1


def test_batched_function_receives_lists(image: Any, client: Any, tmp_path: Path) -> None:
    name = unique("t-batch")
    mod = load_app(tmp_path, f"""
        import skiff
        app = skiff.App("{name}")

        @app.function()
        @skiff.batched(max_batch_size=4, wait_ms=300)
        def double(xs):
            assert isinstance(xs, list)
            return [(x * 2, len(xs)) for x in xs]
    """)
    with mod.app.run(show_logs=False):
        got = list(mod.double.map(range(10)))
        one = mod.double.remote(21)
    assert [v for v, _ in got] == [x * 2 for x in range(10)]
    sizes = [n for _, n in got]
    assert max(sizes) > 1 and max(sizes) <= 4, sizes
    assert one[0] == 42


CLASS_APP = """
    import os, time, skiff
    app = skiff.App("{name}")

    @app.cls(scaledown_window=2)
    class Model:
        tag: str = skiff.parameter(default="base")

        @skiff.enter()
        def load(self):
            self.entered = getattr(self, "entered", 0) + 1
            self.loaded_at = time.time()
            print(f"ENTER-HOOK {{self.tag}} {{os.environ['SKIFF_CONTAINER_ID']}}", flush=True)

        @skiff.method()
        def info(self, x):
            return self.tag, x, self.entered, self.loaded_at, os.environ["SKIFF_CONTAINER_ID"]

        @skiff.exit()
        def bye(self):
            print(f"EXIT-HOOK {{self.tag}} {{os.environ['SKIFF_CONTAINER_ID']}}", flush=True)
"""


def app_logs(app_id: str) -> str:
    proc = subprocess.run([SKIFF_BIN, "app", "logs", app_id], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_class_enter_once_and_exit_at_shutdown(image: Any, client: Any,
                                               tmp_path: Path) -> None:
    name = unique("t-cls")
    mod = load_app(tmp_path, CLASS_APP.format(name=name))
    with mod.app.run(show_logs=False):
        app_id = mod.app.app_id
        base = mod.Model()
        first = [base.info.remote(i) for i in range(3)]
        other = mod.Model(tag="other").info.remote(9)
        listed = client.request("GET", f"/v1/apps/{app_id}")["function_ids"]
        # Every input of a container ran after its one @enter.
        assert [(t, x, n) for t, x, n, _, _ in first] == [("base", i, 1) for i in range(3)]
        assert len({c for *_, c in first}) == 1
        assert other[0] == "other" and other[2] == 1 and other[4] != first[0][4]
        # Each parameter set is a function (a pool) of its own.
        pools = [n for n in listed if n == "Model" or n.startswith("Model-")]
        assert len(pools) == 2, listed
        # Idle past scaledown_window: both stop, running their @exit hooks.
        wait_for("the class containers to stop", lambda: not app_containers(client, name), 20)
        time.sleep(0.5)
        logs = app_logs(app_id)
    enters = [ln for ln in logs.splitlines() if "ENTER-HOOK" in ln]
    exits = [ln for ln in logs.splitlines() if "EXIT-HOOK" in ln]
    assert len(enters) == 2, logs
    assert any(f"EXIT-HOOK base {first[0][4]}" in ln for ln in exits), logs
    assert any(f"EXIT-HOOK other {other[4]}" in ln for ln in exits), logs


def test_class_with_options_and_memory_beyond_the_machine(image: Any, client: Any,
                                                          tmp_path: Path) -> None:
    import skiff

    name = unique("t-opts")
    mod = load_app(tmp_path, CLASS_APP.format(name=name))
    machine_mib = 1 << 30   # a TiB: more than this machine has
    with mod.app.run(show_logs=False):
        small = mod.Model.with_options(memory=256, max_containers=1)
        assert small(tag="s").info.remote(1)[0] == "s"
        t0 = time.monotonic()
        with pytest.raises(skiff.exception.Error, match="memory") as ei:
            mod.Model.with_options(memory=machine_mib)(tag="huge").info.remote(1)
        assert time.monotonic() - t0 < 5
        assert isinstance(ei.value, (skiff.exception.ResourceExhaustedError,
                                     skiff.exception.InvalidError)), ei.value


def test_memory_request_beyond_the_machine_fails_at_once(image: Any, tmp_path: Path) -> None:
    import skiff

    name = unique("t-mem")
    mod = sleeper(tmp_path, name, f"memory={1 << 30}")
    t0 = time.monotonic()
    with pytest.raises(skiff.exception.Error, match="memory"):
        with mod.app.run(show_logs=False):
            mod.f.remote(0, 0.0)
    assert time.monotonic() - t0 < 10


def test_container_list_shows_status(image: Any, client: Any, tmp_path: Path) -> None:
    name = unique("t-list")
    mod = sleeper(tmp_path, name, "scaledown_window=2")
    with mod.app.run(show_logs=False):
        call = mod.f.spawn(0, 3.0)
        rows = wait_for("a busy container",
                        lambda: [r for r in app_containers(client, name)
                                 if r.get("status") == "busy"], 30)
        row = rows[0]
        assert row["function"] == "f" and row["app_name"] == name
        assert row["age_s"] >= 0 and "inputs_served" in row
        proc = subprocess.run([SKIFF_BIN, "container", "list", "--json"], capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        listed = json.loads(proc.stdout)
        listed = listed.get("containers", listed) if isinstance(listed, dict) else listed
        mine = [c for c in listed if c.get("container_id") == row["container_id"]]
        assert mine and mine[0].get("status") == "busy", mine
        assert call.get(timeout=30)[0] == 0


def test_modal_program_with_classes_runs_under_skiff_run(image: Any, tmp_path: Path) -> None:
    path = tmp_path / "modal_cls_app.py"
    path.write_text(textwrap.dedent("""
        import modal

        app = modal.App("t-modal-cls")

        @app.cls(scaledown_window=2)
        @modal.concurrent(max_inputs=4)
        class Greeter:
            greeting: str = modal.parameter(default="hello")

            @modal.enter()
            def setup(self):
                self.suffix = "!"

            @modal.method()
            def greet(self, who):
                return f"{self.greeting} {who}{self.suffix}"

        @app.function()
        @modal.batched(max_batch_size=8, wait_ms=100)
        def lengths(words):
            return [len(w) for w in words]

        @app.function()
        def relay():
            # From inside a container: the pool the client registered.
            return Greeter().greet.remote("from inside")

        @app.local_entrypoint()
        def main():
            print(Greeter(greeting="hi").greet.remote("there"))
            print(sorted(Greeter().greet.map(["a", "b"])))
            print(list(lengths.map(["x", "yy", "zzz"])))
            print(relay.remote())
    """))
    proc = subprocess.run([SKIFF_BIN, "run", str(path)], capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    lines = proc.stdout.splitlines()
    assert "hi there!" in lines, proc.stdout
    assert "['hello a!', 'hello b!']" in lines, proc.stdout
    assert "[1, 2, 3]" in lines, proc.stdout
    assert "hello from inside!" in lines, proc.stdout
