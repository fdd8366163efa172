"""`.map` throughput: a no-op function over 100,000 inputs through Skiff
(inputs batched on the wire, run in containers), beside
`multiprocessing.Pool(2).map` doing the same in the same run.

Run as root: bench/map_throughput [--n 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import skiff  # noqa: E402
from _server import bench_server  # noqa: E402

app = skiff.App("bench-map-throughput")


@app.function()
def noop(x):
    return x


@app.function()
def where():
    return os.environ.get("SKIFF_CONTAINER_ID")


def local_noop(x):
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="inputs per map (100000)")
    ap.add_argument("--rounds", type=int, default=7, help="timed maps of each (7)")
    args = ap.parse_args()
    expect = list(range(args.n))
    skiff_rates = []
    with bench_server():
        with app.run():
            assert str(where.remote()).startswith("ct-"), "functions must run in containers"
            # Warm up: containers started, the function measured; then wait
            # until no container is still starting, to time the steady state.
            for _ in range(3):
                assert list(noop.map(range(20000))) == list(range(20000))
            deadline = time.monotonic() + 30
            while noop.get_current_stats().starting and time.monotonic() < deadline:
                time.sleep(0.1)
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                got = list(noop.map(range(args.n)))
                skiff_rates.append(args.n / (time.perf_counter() - t0))
                assert got == expect
            stats = noop.get_current_stats() if hasattr(noop, "get_current_stats") else None
    pool_rates = []
    with multiprocessing.Pool(2) as pool:
        pool.map(local_noop, range(2000))
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            got = pool.map(local_noop, range(args.n))
            pool_rates.append(args.n / (time.perf_counter() - t0))
            assert got == expect
    import statistics
    s, p = max(skiff_rates), max(pool_rates)
    sm, pm = statistics.median(skiff_rates), statistics.median(pool_rates)
    print(f"map of a no-op over {args.n} inputs, {args.rounds} rounds each (inputs/s; "
          f"best, then every round)")
    print(f"{'skiff noop.map':34}{s:14,.0f}   rounds: {', '.join(f'{r:,.0f}' for r in skiff_rates)}")
    print(f"{'multiprocessing.Pool(2).map':34}{p:14,.0f}   rounds: {', '.join(f'{r:,.0f}' for r in pool_rates)}")
    print(f"ratio skiff/pool: best {s / p:.2f}, median {sm / pm:.2f} "
          f"(target >= 0.5: {'met' if sm / pm >= 0.5 else 'NOT met'} on medians)")
    if stats is not None:
        print(f"stats: {stats}")


if __name__ == "__main__":
    main()
