"""Shared by the function benchmarks: a `skiff server` of the bench's own.

It uses SKIFF_TEST_HOME when set (keeping built images between runs),
otherwise a fresh temporary SKIFF_HOME (the first run then builds debian_slim).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Iterator, Sequence

import skiff
import skiff._client


@contextlib.contextmanager
def bench_server(extra_args: Sequence[str] = ()) -> Iterator[str]:
    """Yields SKIFF_HOME of a `skiff server [extra_args]` the SDK is pointed at."""
    if os.geteuid() != 0:
        sys.exit("bench: needs root (containers, mounts)")
    binary = os.environ.get("SKIFF_BIN") or shutil.which("skiff")
    if not binary or not os.access(binary, os.X_OK):
        sys.exit("bench: set SKIFF_BIN to the skiff binary (or run `make`)")
    reuse = os.environ.get("SKIFF_TEST_HOME")
    home = os.path.abspath(reuse) if reuse else tempfile.mkdtemp(prefix="skiff-bench-", dir="/tmp")
    os.makedirs(home, exist_ok=True)
    sock = os.path.join(home, "skiff.sock")
    os.environ["SKIFF_HOME"] = home
    os.environ["SKIFF_SERVER"] = "unix:" + sock
    log = open(os.path.join(home, "bench-server.log"), "ab")
    proc = subprocess.Popen([binary, "server", "--home", home, *extra_args],
                            stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    skiff._client.set_client(None)
    client = skiff._client.Client("unix:" + sock)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            sys.exit(f"bench: `skiff server` exited with {proc.returncode}; "
                     f"see {home}/bench-server.log")
        try:
            client.health()
            break
        except skiff.exception.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                sys.exit("bench: `skiff server` did not answer within 30 s")
            time.sleep(0.05)
    try:
        yield home
    finally:
        skiff._client.set_client(None)
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        if rc != 0:
            print(f"bench: warning: skiff server exited with {rc}; see {home}/bench-server.log",
                  file=sys.stderr)
        if not reuse:
            shutil.rmtree(home, ignore_errors=True)


def percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    k = min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))
    return s[k]
