"""Scale-up from zero: 50 inputs that each sleep 2 s, submitted to a
function scaled to zero with max_containers=50: the time until 50
containers are busy, and until all 50 results are back; beside
multiprocessing.Pool(50) starting its workers and running the same sleeps
in the same run.

Run as root: bench/scale_up [--n 50]
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

app = skiff.App("bench-scale-up")


@app.function(max_containers=50, scaledown_window=2)
def sleep2(i):
    time.sleep(2)
    return i


def local_sleep2(i):
    time.sleep(2)
    return i


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50, help="inputs and max containers (50)")
    args = ap.parse_args()
    with bench_server():
        with app.run():
            client = skiff._client.get_client()
            fid = sleep2.hydrate().object_id if hasattr(sleep2, "hydrate") else sleep2._function_id
            t0 = time.perf_counter()
            calls = [sleep2.spawn(i) for i in range(args.n)]
            t_submitted = time.perf_counter() - t0
            t_busy = None
            peak = 0
            t_peak = 0.0
            while time.perf_counter() - t0 < 60:
                st = client.request("GET", f"/v1/functions/{fid}")
                if st["busy"] > peak:
                    peak, t_peak = st["busy"], time.perf_counter() - t0
                if st["busy"] >= args.n:
                    t_busy = time.perf_counter() - t0
                    break
                if st["backlog"] == 0 and st["running_inputs"] == 0:
                    break   # all done without ever having them all busy at once
                time.sleep(0.01)
            results = skiff.FunctionCall.gather(*calls)
            t_all = time.perf_counter() - t0
            assert sorted(results) == list(range(args.n))
    t1 = time.perf_counter()
    with multiprocessing.Pool(args.n) as pool:
        got = pool.map(local_sleep2, range(args.n), chunksize=1)
    t_pool = time.perf_counter() - t1
    assert got == list(range(args.n))
    busy = (f"{t_busy:.2f} s" if t_busy is not None
            else f"never (at most {peak} busy at once, {t_peak:.2f} s in)")
    print(f"scale-up from zero: {args.n} inputs of sleep(2), max_containers={args.n}")
    print(f"  submitted in {t_submitted:.2f} s; {args.n} containers busy after {busy}; "
          f"all results after {t_all:.2f} s")
    print(f"  multiprocessing.Pool({args.n}) start + map: {t_pool:.2f} s; "
          f"ratio skiff/pool {t_all / t_pool:.2f}")
    print(f"  target: {args.n} busy within 2 s: "
          f"{'met' if t_busy is not None and t_busy <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
