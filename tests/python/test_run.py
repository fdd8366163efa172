"""`skiff run` (python3 -m skiff._run, and the C CLI that execs it) against
the fake server: entrypoints and their options, functions, exit statuses,
Ctrl-C, `import modal`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from conftest import SDK
from skiff import _run

ROOT = os.path.dirname(os.path.dirname(SDK))
SKIFF_BIN = os.path.join(ROOT, "build", "skiff")

DEMO = """
    import time
    import skiff

    app = skiff.App("demo")

    @app.function(retries=skiff.Retries(max_retries=2, initial_delay=0.1))
    def square(x):
        return x * x

    @app.function()
    def boom(msg: str = "boom"):
        raise ValueError(msg)

    @app.function()
    def nap(s: float = 30.0):
        time.sleep(s)

    @app.local_entrypoint()
    def main(n: int = 10, loud: bool = False):
        total = sum(square.map(range(n)))
        print(f"sum={total}{' LOUD' if loud else ''}")

    @app.local_entrypoint()
    def explode():
        boom.remote("remote failure")

    @app.local_entrypoint()
    def sleepy():
        nap.remote(30)
"""


def _write(tmp_path: Any, name: str, code: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return str(path)


def _run_cli(fake: Any, *args: str, cmd: Any = None, **kw: Any) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SDK, SKIFF_SERVER="unix:" + fake.socket_path)
    argv = (cmd or [sys.executable, "-m", "skiff._run"]) + list(args)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, **kw)


def test_entrypoint_with_options(fake: Any, tmp_path: Any) -> None:
    path = _write(tmp_path, "demo.py", DEMO)
    r = _run_cli(fake, f"{path}::main", "--n", "100", "--loud")
    assert r.returncode == 0, r.stderr
    assert f"sum={sum(i * i for i in range(100))} LOUD" in r.stdout
    assert "[square] ran input" in r.stdout
    (app,) = fake.apps.values()
    assert app.name == "demo" and app.stopped


def test_function_target_prints_result(fake: Any, tmp_path: Any) -> None:
    path = _write(tmp_path, "demo.py", DEMO)
    r = _run_cli(fake, "-q", f"{path}::boom", "--msg", "x")
    assert r.returncode == 1
    assert "ValueError: x" in r.stderr


def test_remote_exception_exits_1_with_both_tracebacks(fake: Any, tmp_path: Any) -> None:
    path = _write(tmp_path, "demo.py", DEMO)
    r = _run_cli(fake, f"{path}::explode")
    assert r.returncode == 1
    assert "ValueError: remote failure" in r.stderr
    assert "direct cause" in r.stderr
    assert "in explode" in r.stderr and "in boom" in r.stderr
    assert "skiff/_run.py" not in r.stderr


def test_usage_errors(fake: Any, tmp_path: Any) -> None:
    path = _write(tmp_path, "demo.py", DEMO)
    r = _run_cli(fake, path)
    assert r.returncode == 2 and "several local entrypoints" in r.stderr
    r = _run_cli(fake, f"{path}::main", "--n", "ten")
    assert r.returncode == 2 and "'ten' is not an int" in r.stderr
    r = _run_cli(fake, f"{path}::nope")
    assert r.returncode == 2 and "no local entrypoint or function 'nope'" in r.stderr
    r = _run_cli(fake, str(tmp_path / "missing.py"))
    assert r.returncode == 2 and "no such file" in r.stderr
    r = _run_cli(fake, f"{path}::main", "--help")
    assert r.returncode == 0 and "--n INT" in r.stdout


def test_ctrl_c_stops_the_app(fake: Any, tmp_path: Any) -> None:
    path = _write(tmp_path, "demo.py", DEMO)
    env = dict(os.environ, PYTHONPATH=SDK, SKIFF_SERVER="unix:" + fake.socket_path)
    p = subprocess.Popen([sys.executable, "-m", "skiff._run", f"{path}::sleepy"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not any(req[1].endswith("/remote") for req in fake.requests):
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    (app,) = fake.apps.values()
    assert app.stopped


def test_modal_programs_run_unchanged(fake: Any, tmp_path: Any) -> None:
    path = _write(tmp_path, "modal_demo.py", """
        import modal

        app = modal.App("modal-demo")

        @app.function()
        def double(x: int) -> int:
            return 2 * x

        @app.local_entrypoint()
        def main(x: int = 21):
            print("answer", double.remote(x))
    """)
    r = _run_cli(fake, path)
    assert r.returncode == 0, r.stderr
    assert "answer 42" in r.stdout


def test_modal_part_missing_is_named(fake: Any, tmp_path: Any) -> None:
    path = _write(tmp_path, "uses_volume.py", """
        import modal
        app = modal.App("v")
        vol = modal.Volume.from_name("data")
    """)
    r = _run_cli(fake, path)
    assert r.returncode == 1
    assert "modal.Volume is not available in Skiff yet" in r.stderr


@pytest.mark.skipif(not os.access(SKIFF_BIN, os.X_OK), reason="build/skiff is not built (make)")
def test_c_cli_execs_the_sdk(fake: Any, tmp_path: Any) -> None:
    path = _write(tmp_path, "demo.py", DEMO)
    env = dict(os.environ, SKIFF_SERVER="unix:" + fake.socket_path)
    env.pop("PYTHONPATH", None)
    r = subprocess.run([SKIFF_BIN, "run", f"{path}::main", "--n", "5"], env=env,
                       capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "sum=30" in r.stdout


def test_find_target_rules(tmp_path: Any) -> None:
    path = _write(tmp_path, "one_fn.py", """
        import skiff
        app = skiff.App()
        @app.function()
        def only(): return 1
    """)
    mod = _run.load_file(path)
    app, target = _run.find_target(mod, "")
    assert target.__name__ == "only"
    assert _run.find_target(mod, "app.only")[1] is target
    assert _run.find_target(mod, "app")[1] is target
    with pytest.raises(_run.UsageError, match="no App called 'nope'"):
        _run.find_target(mod, "nope.only")


def test_split_argv() -> None:
    assert _run.split_argv(["-d", "x.py::f", "--n", "1"]) == (
        {"detach": True, "quiet": False, "help": False, "json": False}, "x.py::f", ["--n", "1"])
    with pytest.raises(_run.UsageError):
        _run.split_argv(["--bogus", "x.py"])
    with pytest.raises(_run.UsageError):
        _run.split_argv([])


def test_plain_script_with_app_run(fake: Any, tmp_path: Any) -> None:
    path = _write(tmp_path, "script.py", """
        import skiff

        app = skiff.App("plain")

        @app.function()
        def cube(x):
            return x ** 3

        if __name__ == "__main__":
            with app.run():
                print("cube", cube.remote(3))
    """)
    env = dict(os.environ, PYTHONPATH=SDK, SKIFF_SERVER="unix:" + fake.socket_path)
    r = subprocess.run([sys.executable, path], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "cube 27" in r.stdout
    (reg,) = fake.registrations
    assert reg["module"] == "script" and reg["file"] == path
    assert reg["mount_dir"] == str(tmp_path)
