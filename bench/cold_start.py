"""Cold starts of functions: from ``.remote()`` to its result, with the
function scaled to zero before each call, beside ``runc run`` of
``python3 -c pass`` on the same image -- the floor of any container start.

Cases, each the median and p90 of --n cold starts (default 20), all in one run:
  (a) a plain function on a cached debian_slim image;
  (b) a function whose module imports numpy (Debian's python3-numpy in its
      image), without a memory snapshot;
  (d) `runc run` of `python3 -c pass` on the debian_slim image;
and (a') and (b') again on a server without warm containers (SKIFF_WARM_POOL=0),
where each cold start starts a container.  Before each sample of (a) and (b)
the bench waits until the server's warm container of the image is up again
(it refills ~0.2 s after one is taken): the steady state of a function
scaled to zero.
(b and c with `enable_memory_snapshot`, and c, torch, are issue 8's snapshot
work, not built yet: they are left out rather than faked.)  Each case also
prints the server's breakdown of the median cold start (`cold_start` of
`skiff container list --json`): runtime create plus interpreter start, the
SDK runtime's load, the user's import, enter hooks.

Run as root: bench/cold_start [--n 20] [--no-numpy] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import skiff  # noqa: E402
import skiff._client  # noqa: E402
from _server import bench_server, percentile  # noqa: E402
from container_start import RuncBundle, image_rootfs  # noqa: E402

try:  # the module imports numpy (in its container; the host may not have it)
    import numpy
except ImportError:
    numpy = None

app = skiff.App("bench-cold-start")
numpy_image = skiff.Image.debian_slim().apt_install("python3-numpy")


@app.function(scaledown_window=600)
def plain(x: int) -> int:
    return x + 1


@app.function(image=numpy_image, scaledown_window=600)
def with_numpy(x: int) -> float:
    return float(numpy.float64(x) + 1)


def scale_to_zero(fn_name: str) -> None:
    """Stops the function's containers and waits until none is left."""
    client = skiff._client.get_client()
    deadline = time.monotonic() + 60
    while True:
        rows = [c for c in client.request("GET", "/v1/containers")["containers"]
                if c.get("app_name") == app.name and c.get("function") == fn_name]
        if not rows:
            return
        for c in rows:
            if c.get("status") not in ("stopping", "stopped"):
                try:
                    client.request("POST", f"/v1/containers/{c['container_id']}/stop")
                except skiff.exception.Error:
                    pass
        if time.monotonic() > deadline:
            sys.exit(f"bench: {fn_name}'s containers did not stop")
        time.sleep(0.02)


def wait_warm(image_id: str, timeout: float = 10) -> None:
    """Until the server's warm container of the image is up (the steady state
    of a function scaled to zero: its pool refills within ~0.2 s)."""
    client = skiff._client.get_client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.get("status") == "warm" and c.get("warm_pool") == image_id
               for c in client.request("GET", "/v1/containers")["containers"]):
            return
        time.sleep(0.01)


def breakdown(fn_name: str) -> dict[str, Any]:
    rows = [c for c in skiff._client.get_client().request("GET", "/v1/containers")["containers"]
            if c.get("app_name") == app.name and c.get("function") == fn_name]
    return (rows[0].get("cold_start") or {}) if rows else {}


def cold_starts(fn: Any, n: int, image_id: str = "") -> tuple[list[float], list[dict[str, Any]]]:
    times, parts = [], []
    for i in range(n + 1):
        scale_to_zero(fn.__name__)
        if image_id:
            wait_warm(image_id)
        t0 = time.perf_counter()
        fn.remote(i)
        dt = time.perf_counter() - t0
        if i:  # the first one is a warm-up (page cache, bytecode)
            times.append(dt * 1000)
            parts.append(breakdown(fn.__name__))
    scale_to_zero(fn.__name__)
    return times, parts


def med_parts(parts: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("runtime_ms", "interpreter_ms", "import_ms", "enter_ms", "ready_ms")
    warm = sum(1 for p in parts if p.get("warm"))
    out = {k: statistics.median([p[k] for p in parts if isinstance(p.get(k), (int, float))])
           for k in keys if any(isinstance(p.get(k), (int, float)) for p in parts)}
    out["warm_count"] = warm
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20, help="cold starts per case (20)")
    ap.add_argument("--no-numpy", action="store_true", help="skip case (b) (its image build)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results: dict[str, dict[str, Any]] = {}
    work = tempfile.mkdtemp(prefix="skiff-bench-cold-", dir="/tmp")
    try:
        with bench_server() as home:
            base = skiff.Image.debian_slim().hydrate()
            if not args.no_numpy:
                numpy_image.hydrate()
            with app.run(show_logs=False):
                cases = [("(a) plain function", plain, base)]
                if not args.no_numpy:
                    cases.append(("(b) imports numpy, no snapshot", with_numpy, numpy_image))
                for label, fn, im in cases:
                    t, parts = cold_starts(fn, args.n, str(im.object_id))
                    results[label] = {"median_ms": statistics.median(t),
                                      "p90_ms": percentile(t, 90), "breakdown": med_parts(parts)}
        # The same without warm containers: a container started for each.
        os.environ["SKIFF_WARM_POOL"] = "0"
        with bench_server():
            with app.run(show_logs=False):
                cases = [("(a') plain function, no warm pool", plain)]
                if not args.no_numpy:
                    cases.append(("(b') numpy, no warm pool", with_numpy))
                for label, fn in cases:
                    t, parts = cold_starts(fn, args.n)
                    results[label] = {"median_ms": statistics.median(t),
                                      "p90_ms": percentile(t, 90), "breakdown": med_parts(parts)}
        os.environ.pop("SKIFF_WARM_POOL", None)
        with bench_server() as home:
            bundle = RuncBundle(image_rootfs(home, str(base.object_id)), work)
            try:
                bundle.set_args(["python3", "-c", "pass"])
                bundle.run_once()
                t = [bundle.run_once() * 1000 for _ in range(args.n)]
            finally:
                bundle.close()
            results["(d) runc run python3 -c pass"] = {"median_ms": statistics.median(t),
                                                      "p90_ms": percentile(t, 90)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results))
        return
    floor = results["(d) runc run python3 -c pass"]["median_ms"]
    print(f"cold starts, .remote() to result, function scaled to zero before each, N={args.n}")
    print(f"{'case':<36}{'median':>9}{'p90':>9}{'/ floor':>9}   breakdown (median, ms; warm: "
          "how many took a warm container)")
    for label, r in results.items():
        b = r.get("breakdown") or {}
        parts = ", ".join(f"{k[:-3]} {v:.1f}" if k.endswith("_ms") else f"warm {v}/{args.n}"
                          for k, v in b.items())
        print(f"{label:<36}{r['median_ms']:7.1f}ms{r['p90_ms']:7.1f}ms"
              f"{r['median_ms'] / floor:8.2f}x   {parts}")
    print("runtime = runc create/start + exec + Python's own start (incl. `import skiff`); "
          "interpreter = the SDK runtime's load to the worker socket")


if __name__ == "__main__":
    main()
