"""Functions end to end: `skiff run` of real apps, real containers, real server.

Each test writes a small app into a temporary folder and runs it with
`$SKIFF_BIN run FILE` against the session server (conftest.py).  The
assertions that matter run inside the app's local entrypoint (which prints
OK ...) or on the output of the command, so a failure shows both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import SKIFF_BIN


def write_app(tmp_path: Path, source: str, name: str = "app_under_test.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def run(path: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SKIFF_BIN, "run", str(path), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def running_function_containers(client: Any, app: str = "") -> list[dict[str, Any]]:
    """Running function containers (of the app called `app`, when given)."""
    listing = client.request("GET", "/v1/containers")
    return [c for c in listing["containers"]
            if c["container_id"].startswith("ct-") and c["state"] == "running"
            and (not app or c.get("app_name") == app)]


def test_map_ordered_and_unordered(image: Any, tmp_path: Path) -> None:
    path = write_app(tmp_path, """
        import skiff
        app = skiff.App("t-map")

        @app.function(cpu=1, memory=512, timeout=60)
        def square(x):
            return x * x

        @app.local_entrypoint()
        def main(n: int = 10):
            got = list(square.map(range(n)))
            assert got == [i * i for i in range(n)], got[:20]
            unordered = list(square.map(range(n), order_outputs=False))
            assert sorted(unordered) == [i * i for i in range(n)]
            print("OK", len(got), sum(got))
    """)
    out = ok(run(path, "--n", "10000"))
    assert f"OK 10000 {sum(i * i for i in range(10000))}" in out


def test_remote_spawn_gather_and_return_exceptions(image: Any, tmp_path: Path) -> None:
    path = write_app(tmp_path, """
        import skiff
        app = skiff.App("t-spawn")

        @app.function()
        def f(x):
            if x % 3 == 0:
                raise ValueError(f"bad {x}")
            return x + 1

        @app.local_entrypoint()
        def main():
            assert f.remote(1) == 2
            call = f.spawn(4)
            assert call.get(timeout=60) == 5
            again = skiff.FunctionCall.from_id(call.object_id)
            assert again.get(timeout=60) == 5
            assert skiff.FunctionCall.gather(f.spawn(1), f.spawn(7)) == [2, 8]
            got = list(f.map(range(7), return_exceptions=True))
            assert [g for i, g in enumerate(got) if i % 3] == [2, 3, 5, 6], got
            errs = [g for i, g in enumerate(got) if i % 3 == 0]
            assert all(isinstance(e, ValueError) for e in errs), errs
            assert "bad 3" in str(errs[1])
            print("OK spawn")
    """)
    assert "OK spawn" in ok(run(path))


def test_remote_exception_keeps_type_and_traceback(image: Any, tmp_path: Path) -> None:
    path = write_app(tmp_path, """
        import traceback
        import skiff
        app = skiff.App("t-exc")

        def inner_helper_frame(x):
            raise KeyError(f"missing {x}")

        @app.function()
        def fails(x):
            return inner_helper_frame(x)

        @app.local_entrypoint()
        def main():
            try:
                fails.remote("k1")
            except KeyError as e:
                text = "".join(traceback.format_exception(e))
                assert "missing k1" in text, text
                assert "inner_helper_frame" in text, text
                print("OK KeyError")
    """)
    assert "OK KeyError" in ok(run(path))


def test_generator_streams_items_before_it_ends(image: Any, tmp_path: Path) -> None:
    path = write_app(tmp_path, """
        import time
        import skiff
        app = skiff.App("t-gen")

        @app.function()
        def slow_count(n):
            for i in range(n):
                yield i
                time.sleep(1.0)

        @app.local_entrypoint()
        def main():
            t0 = time.monotonic()
            seen = []
            for item in slow_count.remote_gen(4):
                seen.append((item, time.monotonic() - t0))
            total = time.monotonic() - t0
            assert [i for i, _ in seen] == [0, 1, 2, 3], seen
            # The first item arrived while the generator still had ~3 s to run.
            assert seen[0][1] < total - 2.0, (seen, total)
            print("OK gen", [round(t, 2) for _, t in seen], round(total, 2))
    """)
    assert "OK gen" in ok(run(path))


def test_timeout_raises_function_timeout_error(image: Any, tmp_path: Path) -> None:
    path = write_app(tmp_path, """
        import time
        import skiff
        from skiff.exception import FunctionTimeoutError
        app = skiff.App("t-timeout")

        @app.function(timeout=2)
        def sleepy():
            time.sleep(30)

        @app.local_entrypoint()
        def main():
            t0 = time.monotonic()
            try:
                sleepy.remote()
            except FunctionTimeoutError as e:
                took = time.monotonic() - t0
                assert 1.5 < took < 20, took
                print("OK timeout", round(took, 1))
    """)
    assert "OK timeout" in ok(run(path))


def test_retries_fail_twice_then_succeed(image: Any, tmp_path: Path) -> None:
    path = write_app(tmp_path, """
        import skiff
        app = skiff.App("t-retries")
        attempts = {}

        @app.function(max_containers=1,
                      retries=skiff.Retries(max_retries=2, initial_delay=0.1, backoff_coefficient=1.0))
        def flaky(key):
            attempts[key] = attempts.get(key, 0) + 1
            if attempts[key] <= 2:
                raise RuntimeError(f"attempt {attempts[key]} fails")
            return attempts[key]

        @app.function(max_containers=1, retries=1)
        def always_fails(key):
            attempts[key] = attempts.get(key, 0) + 1
            raise RuntimeError(f"attempt {attempts[key]} of {key}")

        @app.local_entrypoint()
        def main():
            assert flaky.remote("a") == 3
            try:
                always_fails.remote("b")
            except RuntimeError as e:
                assert "attempt 2 of b" in str(e), str(e)   # one retry, then the last failure
                print("OK retries")
    """)
    assert "OK retries" in ok(run(path))


def test_import_error_fails_fast_and_is_shown(image: Any, tmp_path: Path) -> None:
    path = write_app(tmp_path, """
        import time
        import skiff
        app = skiff.App("t-import")

        if not skiff.is_local():
            raise RuntimeError("import-boom-in-container")

        @app.function()
        def f(x):
            return x

        @app.local_entrypoint()
        def main():
            t0 = time.monotonic()
            for attempt in range(2):
                try:
                    f.remote(1)
                except Exception as e:
                    assert "import-boom-in-container" in str(e), repr(e)
            assert time.monotonic() - t0 < 60
            try:
                list(f.map(range(5)))
            except Exception as e:
                assert "import-boom-in-container" in str(e), repr(e)
                print("OK import error", type(e).__name__)
    """)
    proc = run(path, timeout=120)
    out = ok(proc)
    assert "OK import error" in out


def test_out_of_memory_is_reported(image: Any, tmp_path: Path) -> None:
    path = write_app(tmp_path, """
        import skiff
        from skiff.exception import OutOfMemoryError
        app = skiff.App("t-oom")

        @app.function(memory=64)
        def hog():
            blocks = []
            for _ in range(100):
                blocks.append(bytearray(16 << 20))
            return len(blocks)

        @app.local_entrypoint()
        def main():
            try:
                hog.remote()
            except OutOfMemoryError as e:
                print("OK oom", e)
    """)
    assert "OK oom" in ok(run(path))


def test_unpicklable_argument_is_refused_naming_it(image: Any, tmp_path: Path) -> None:
    path = write_app(tmp_path, """
        import threading
        import skiff
        app = skiff.App("t-pickle")

        @app.function()
        def f(a, lock=None):
            return a

        @app.local_entrypoint()
        def main():
            try:
                f.remote(1, lock=threading.Lock())
            except skiff.exception.Error as e:
                assert "lock" in str(e), str(e)
                print("OK unpicklable")
    """)
    assert "OK unpicklable" in ok(run(path))


def test_logs_stream_with_function_name(image: Any, tmp_path: Path, client: Any) -> None:
    path = write_app(tmp_path, """
        import skiff
        app = skiff.App("t-logs")

        @app.function()
        def talker(x):
            print(f"hello-from-container {x}")
            return x

        @app.local_entrypoint()
        def main():
            talker.remote(7)
            import time; time.sleep(1.0)   # let the log line arrive
            print("APP_ID", app.app_id)
    """)
    out = ok(run(path))
    lines = (out).splitlines()
    assert any("talker" in l and "hello-from-container 7" in l for l in lines), out
    app_id = [l.split()[1] for l in lines if l.startswith("APP_ID")][0]
    logs = subprocess.run([SKIFF_BIN, "app", "logs", app_id], capture_output=True, text=True,
                          timeout=30)
    assert logs.returncode == 0, logs.stderr
    assert "hello-from-container 7" in logs.stdout


def test_calls_from_inside_a_container(image: Any, tmp_path: Path) -> None:
    path = write_app(tmp_path, """
        import skiff
        app = skiff.App("t-nested")

        @app.function()
        def double(x):
            return 2 * x

        @app.function()
        def outer(n):
            assert not skiff.is_local()
            return sum(double.map(range(n))) + double.remote(100)

        @app.local_entrypoint()
        def main():
            assert skiff.is_local()
            print("OK nested", outer.remote(10))
    """)
    assert "OK nested 290" in ok(run(path))


def test_modal_programs_run_unchanged(image: Any, tmp_path: Path) -> None:
    path = write_app(tmp_path, """
        import modal
        app = modal.App("t-modal")

        @app.function(retries=modal.Retries(max_retries=1))
        def cube(x):
            return x ** 3

        @app.local_entrypoint()
        def main():
            print("OK modal", sum(cube.map([1, 2, 3])))
    """)
    assert "OK modal 36" in ok(run(path))


def test_large_arguments_and_results(image: Any, tmp_path: Path) -> None:
    path = write_app(tmp_path, """
        import hashlib
        import skiff
        app = skiff.App("t-large")

        @app.function(memory=1024)
        def digest_and_grow(data):
            return hashlib.sha256(data).hexdigest(), data + b"x"

        @app.local_entrypoint()
        def main():
            data = bytes(range(256)) * (100 * 4096 + 1)        # ~100 MiB
            h, back = digest_and_grow.remote(data)
            assert h == hashlib.sha256(data).hexdigest()
            assert len(back) == len(data) + 1 and back[:-1] == data
            print("OK large", len(back))
    """)
    assert "OK large" in ok(run(path, timeout=300))


def test_async_variants(image: Any, tmp_path: Path) -> None:
    path = write_app(tmp_path, """
        import asyncio
        import skiff
        app = skiff.App("t-aio")

        @app.function()
        def inc(x):
            return x + 1

        @app.local_entrypoint()
        def main():
            async def go():
                a = await inc.remote.aio(1)
                b = [x async for x in inc.map.aio(range(5))]
                return a, b
            print("OK aio", asyncio.run(go()))
    """)
    assert "OK aio (2, [1, 2, 3, 4, 5])" in ok(run(path))


def test_ctrl_c_leaves_no_container_running(image: Any, tmp_path: Path, client: Any) -> None:
    path = write_app(tmp_path, """
        import time
        import skiff
        app = skiff.App("t-sigint")

        @app.function()
        def forever():
            print("forever-started")
            time.sleep(600)

        @app.local_entrypoint()
        def main():
            forever.remote()
    """)
    proc = subprocess.Popen([SKIFF_BIN, "run", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if running_function_containers(client, "t-sigint"):
                break
            time.sleep(0.2)
        else:
            pytest.fail("no function container started")
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 15
    while running_function_containers(client, "t-sigint") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running_function_containers(client, "t-sigint") == []
    assert proc.returncode != 0


def test_killed_container_loses_no_input(image: Any, tmp_path: Path) -> None:
    path = write_app(tmp_path, """
        import os, signal, time
        import skiff
        app = skiff.App("t-kill")

        @app.function(max_containers=2)
        def slow_square(x):
            time.sleep(0.02)
            return x * x

        def kill_one_container():
            # SIGKILL every process of one running function container (we are root on the host).
            import json, urllib.parse
            from skiff import _client
            listing = _client.get_client().request("GET", "/v1/containers")
            ids = [c["container_id"] for c in listing["containers"]
                   if c["container_id"].startswith("ct-") and c["state"] == "running"]
            assert ids, listing
            killed = 0

            def procs(root):
                # The server removes the container's groups once it is dead: gone is empty.
                try:
                    with open(os.path.join(root, "cgroup.procs")) as f:
                        return f.readlines()
                except FileNotFoundError:
                    return []

            for root, dirs, files in os.walk("/sys/fs/cgroup"):
                if os.path.basename(root) == ids[0] and "cgroup.procs" in files:
                    for line in procs(root):
                        try:
                            os.kill(int(line), signal.SIGKILL); killed += 1
                        except (ProcessLookupError, ValueError):
                            pass
            for root, dirs, files in os.walk("/sys/fs/cgroup"):
                if ids[0] in root.split("/") and "cgroup.procs" in files:
                    for line in procs(root):
                        try:
                            os.kill(int(line), signal.SIGKILL); killed += 1
                        except (ProcessLookupError, ValueError):
                            pass
            return killed

        @app.local_entrypoint()
        def main():
            n = 400
            got = []
            killed = 0
            for i, r in enumerate(slow_square.map(range(n))):
                got.append(r)
                if i == 40:
                    killed = kill_one_container()
            assert killed > 0
            assert got == [x * x for x in range(n)], [i for i, (a, b) in enumerate(zip(got, [x*x for x in range(n)])) if a != b][:10]
            print("OK killed", killed, len(got))
    """)
    assert "OK killed" in ok(run(path, timeout=240))


def test_vanished_client_stops_its_app(image: Any, tmp_path: Path, client: Any) -> None:
    """SIGKILL of `skiff run` (no chance to say goodbye): the server misses the
    heartbeats and stops the app's containers (the session server uses
    --heartbeat-timeout 12)."""
    path = write_app(tmp_path, """
        import time
        import skiff
        app = skiff.App("t-vanish")

        @app.function()
        def forever():
            time.sleep(600)

        @app.local_entrypoint()
        def main():
            forever.spawn()     # not tied to a connection of the client
            time.sleep(600)
    """)
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([SKIFF_BIN, "run", str(path)], stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while (not running_function_containers(client, "t-vanish") and time.monotonic() < deadline
               and proc.poll() is None):
            time.sleep(0.2)
        assert running_function_containers(client, "t-vanish"), (
            f"no function container running (skiff run: {proc.poll()}):\n{log.read_text()}")
        proc.kill()
        proc.wait(10)
        killed_at = time.monotonic()
        while running_function_containers(client, "t-vanish") and time.monotonic() - killed_at < 40:
            time.sleep(0.5)
        assert running_function_containers(client, "t-vanish") == []
        took = time.monotonic() - killed_at
        assert took > 3, f"stopped after {took:.1f} s: before any heartbeat could be missed?"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_detach_keeps_the_app_running(image: Any, tmp_path: Path, client: Any) -> None:
    path = write_app(tmp_path, """
        import skiff
        app = skiff.App("t-detach")

        @app.function()
        def slow():
            import time
            time.sleep(600)

        @app.local_entrypoint()
        def main():
            call = slow.spawn()
            print("APP_ID", app.app_id, call.object_id)
    """)
    out = ok(run(path, "--detach"))
    app_id = [l.split()[1] for l in out.splitlines() if l.startswith("APP_ID")][0]
    try:
        time.sleep(2)
        listing = subprocess.run([SKIFF_BIN, "app", "list", "--json"], capture_output=True,
                                 text=True, timeout=30)
        apps = {a["app_id"]: a for a in json.loads(listing.stdout)}
        assert apps[app_id]["state"] == "running", apps[app_id]
        assert running_function_containers(client, "t-detach"), "the spawned call's container is gone"
    finally:
        stop = subprocess.run([SKIFF_BIN, "app", "stop", app_id], capture_output=True, text=True,
                              timeout=30)
    assert stop.returncode == 0, stop.stderr
    deadline = time.monotonic() + 15
    while running_function_containers(client, "t-detach") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running_function_containers(client, "t-detach") == []
