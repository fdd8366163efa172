"""Warm `.remote()` round trip: p50/p99 of a no-op function's call through
Skiff (client -> server -> warm container -> back), beside a bare unix-socket
echo round trip between two Python processes in the same run.

Run as root: bench/remote_latency [--n 2000]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from multiprocessing import Process

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import skiff  # noqa: E402
from _server import bench_server, percentile  # noqa: E402

app = skiff.App("bench-remote-latency")


@app.function()
def noop(x):
    return x


@app.function()
def where():
    return os.environ.get("SKIFF_CONTAINER_ID")


def _echo_server(sock: socket.socket) -> None:
    while True:
        data = sock.recv(65536)
        if not data:
            return
        sock.sendall(data)


def echo_round_trips(n: int) -> list[float]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    p = Process(target=_echo_server, args=(b,), daemon=True)
    p.start()
    b.close()
    msg = b"x" * 64
    times = []
    for i in range(n + 100):
        t0 = time.perf_counter()
        a.sendall(msg)
        got = 0
        while got < len(msg):
            got += len(a.recv(65536))
        if i >= 100:
            times.append(time.perf_counter() - t0)
    a.close()
    p.join(5)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="timed calls (2000)")
    args = ap.parse_args()
    with bench_server():
        with app.run():
            assert str(where.remote()).startswith("ct-"), "functions must run in containers"
            for i in range(200):           # warm: container started, connection pooled
                noop.remote(i)
            times = []
            for i in range(args.n):
                t0 = time.perf_counter()
                noop.remote(i)
                times.append(time.perf_counter() - t0)
    echo = echo_round_trips(args.n)
    s50, s99 = percentile(times, 50) * 1e3, percentile(times, 99) * 1e3
    e50, e99 = percentile(echo, 50) * 1e3, percentile(echo, 99) * 1e3
    print(f"warm .remote() round trip, N={args.n} (times in ms)")
    print(f"{'':28}{'p50':>9}{'p99':>9}{'mean':>9}")
    print(f"{'skiff noop.remote(i)':28}{s50:9.3f}{s99:9.3f}{statistics.mean(times) * 1e3:9.3f}")
    print(f"{'unix-socket echo (2 procs)':28}{e50:9.3f}{e99:9.3f}{statistics.mean(echo) * 1e3:9.3f}")
    print(f"ratio skiff/echo: p50 {s50 / e50:.1f}x, p99 {s99 / e99:.1f}x; "
          f"target p50 < 1 ms: {'met' if s50 < 1 else 'NOT met'}")


if __name__ == "__main__":
    main()
