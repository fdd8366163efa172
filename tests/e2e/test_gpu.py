"""GPU placement end to end (issue 4) with a fake inventory: `skiff server
--fake-gpus H100:1` stands in for a machine with one H100 (no devices are
bound; the placement, CUDA_VISIBLE_DEVICES and the waiting are real).  On
the session server (no GPU here) a gpu= function fails at once."""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

from conftest import SKIFF_BIN
from extra_server import http_json
from test_server import copy_debootstrap, session_rootfs, start_server  # noqa: F401


def run_app(path: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SKIFF_BIN, "run", str(path)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env=env)


def test_gpu_function_fails_fast_without_gpus(image: Any, tmp_path: Path) -> None:
    path = tmp_path / "nogpu.py"
    path.write_text(textwrap.dedent("""
        import skiff
        app = skiff.App("t-nogpu")

        @app.function(gpu="T4")
        def f():
            return 1

        @app.local_entrypoint()
        def main():
            f.remote()
    """))
    t0 = time.monotonic()
    proc = run_app(path, dict(os.environ), timeout=60)
    assert proc.returncode != 0
    assert time.monotonic() - t0 < 20
    assert "no GPU" in proc.stderr, proc.stderr


def test_fake_gpu_is_given_to_one_container_at_a_time(start_server: Any, copy_debootstrap: str,
                                                      tmp_path: Path) -> None:
    srv = start_server(env={"SKIFF_DEBOOTSTRAP": copy_debootstrap},
                       args=("--fake-gpus", "H100:1", "--reserve", "0.25,256"))
    lines = srv.build_image()
    assert "image_id" in lines[-1], lines[-1]
    status, health = http_json(srv.sock, "GET", "/v1/health")
    assert status == 200
    assert [(g["index"], g["type"], g["fake"]) for g in health["gpus"]] == [(0, "H100", True)]
    assert health["reserve"] == {"cpu": 0.25, "memory_mib": 256}

    env = dict(os.environ, SKIFF_HOME=srv.home, SKIFF_SERVER="unix:" + srv.sock)
    app = tmp_path / "gpuapp.py"
    app.write_text(textwrap.dedent("""
        import os, time
        import skiff
        app = skiff.App("t-gpu")

        @app.function(gpu="h100", max_containers=5)
        def which(i):
            time.sleep(1.5)
            return os.environ.get("CUDA_VISIBLE_DEVICES")

        @app.local_entrypoint()
        def main():
            t0 = time.monotonic()
            calls = [which.spawn(i) for i in range(2)]
            got = skiff.FunctionCall.gather(*calls)
            took = time.monotonic() - t0
            assert got == ["0", "0"], got
            # One H100: the second container waited for the first to give it back.
            assert took > 2.9, took
            stats = which.get_current_stats()
            print("OK gpu", round(took, 1), stats.num_total_runners)
    """))
    proc = run_app(app, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr + srv.log()
    assert "OK gpu" in proc.stdout

    too_many = tmp_path / "toomany.py"
    too_many.write_text(textwrap.dedent("""
        import skiff
        app = skiff.App("t-gpu2")

        @app.function(gpu="A100-80GB:2")
        def f():
            return 1

        @app.local_entrypoint()
        def main():
            f.remote()
    """))
    t0 = time.monotonic()
    proc = run_app(too_many, env, timeout=60)
    assert proc.returncode != 0
    assert time.monotonic() - t0 < 20
    assert "A100-80GB:2" in proc.stderr and "0 GPU(s) of that type" in proc.stderr, proc.stderr
