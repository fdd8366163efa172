"""Cold starts of functions: from ``.remote()`` to its result, with the
function scaled to zero before each call, beside ``runc run`` of
``python3 -c pass`` on the same image -- the floor of any container start.

Cases (issue 8's list), each the median and p90 of --n cold starts (default
20) after one warm-up that is not counted, all in one run:
  (a) a plain function on a cached debian_slim image;
  (b) a function whose module imports numpy (Debian's python3-numpy in its
      image), without a memory snapshot, and the same function with
      `enable_memory_snapshot=True` ("(b) ... snapshot");
  (c) the same with torch (Debian's python3-torch, 1.13, in its image; the
      module imports it at top level), without and with a memory snapshot;
  (d) `runc run` of `python3 -c pass` on the debian_slim image;
and (a'), (b') and (c') again on a server that makes nothing ahead of demand
(SKIFF_WARM_POOL=0, SKIFF_SNAPSHOT_SPARE=0): each cold start starts a
container, or forks the template on demand.  It prints how many times faster
a snapshot cold start is ready than a fresh import, for torch and numpy.

Before each sample the function is scaled to zero (its containers stopped; a
snapshot's template stays, which is the point) and the bench waits until
what the server keeps ahead of demand is up again: the warm container of the
image (it refills ~0.2 s after one is taken) or, for a snapshot function, its
spare fork (refilled once the fork that took it is ready), then 0.2 s --
the steady state of a function scaled to zero.  The warm-up call of a
snapshot function makes its template (the import, once); its time is printed
apart.  Where the SDK refuses `enable_memory_snapshot=True` (at decoration),
those cases are skipped with the SDK's reason, not faked; where the server
falls back to normal cold starts, a note says how many samples were not
forks.  Each case also prints the server's breakdown of the median cold
start (`cold_start` of `skiff container list --json`): runtime create plus
interpreter start, the SDK runtime's load, the user's import, enter hooks;
for a fork of a template, its preparation, fork, setup and attach, how many
took the spare fork, and the template's container id.

Run as root: bench/cold_start [--n 20] [--no-numpy] [--no-torch] [--json]
(the first run builds the numpy and torch images, about a minute with a fast
Debian mirror; SKIFF_TEST_HOME keeps them)
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
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import skiff  # noqa: E402
import skiff._client  # noqa: E402
from _server import bench_server, percentile  # noqa: E402
from container_start import RuncBundle, image_rootfs  # noqa: E402

# The module imports numpy and torch (in their containers; the host, and the
# other images, may not have them).
try:
    import numpy
except ImportError:
    numpy = None
try:
    import torch
except ImportError:
    torch = None

app = skiff.App("bench-cold-start")
numpy_image = skiff.Image.debian_slim().apt_install("python3-numpy")
torch_image = skiff.Image.debian_slim().apt_install("python3-torch")

# Snapshot functions the SDK would not make: their name -> why.
SNAPSHOT_REFUSED: dict[str, str] = {}


def snapshot_function(image: skiff.Image) -> Callable[[Callable[..., Any]], Any]:
    """``@app.function(image=..., enable_memory_snapshot=True)``, or None
    (the reason in SNAPSHOT_REFUSED) where the SDK refuses the option."""
    def decorate(f: Callable[..., Any]) -> Any:
        try:
            return app.function(image=image, scaledown_window=600,
                                enable_memory_snapshot=True)(f)
        except Exception as e:  # noqa: BLE001 -- whatever the SDK raises, recorded
            SNAPSHOT_REFUSED[f.__name__] = f"{type(e).__name__}: {e}"
            return None
    return decorate


@app.function(scaledown_window=600)
def plain(x: int) -> int:
    return x + 1


@app.function(image=numpy_image, scaledown_window=600)
def numpy_fn(x: int) -> float:
    return float(numpy.float64(x) + 1)


@snapshot_function(numpy_image)
def numpy_snap(x: int) -> float:
    return float(numpy.float64(x) + 1)


@app.function(image=torch_image, scaledown_window=600)
def torch_fn(x: int) -> float:
    return float(torch.tensor(float(x)) + 1)


@snapshot_function(torch_image)
def torch_snap(x: int) -> float:
    return float(torch.tensor(float(x)) + 1)


def fn_rows(fn_name: str) -> list[dict[str, Any]]:
    """The function's containers in `skiff container list`, a snapshot's template
    included (status "template" or "starting", with "snapshot_of")."""
    return [c for c in skiff._client.get_client().request("GET", "/v1/containers")["containers"]
            if c.get("app_name") == app.name and c.get("function") == fn_name]


def is_template(c: dict[str, Any]) -> bool:
    return "snapshot_of" in c or c.get("status") == "template"


def scale_to_zero(fn_name: str) -> None:
    """Stops the function's containers and waits until none is left (a
    snapshot's template stays: scaled to zero, a function keeps it)."""
    client = skiff._client.get_client()
    deadline = time.monotonic() + 60
    while True:
        rows = [c for c in fn_rows(fn_name) if not is_template(c)]
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


def wait_spare(fn_name: str, timeout: float = 10, settle: float = 0.2) -> None:
    """Until the spare fork of the function's snapshot template is up (a new
    one is forked once the fork that took the last is ready), then `settle`
    seconds more, as the other cases settle (the server lists a spare "warm"
    once a cold start can take it: connected and in its box).
    Gives up quietly: the breakdown then shows fewer samples that took a spare."""
    client = skiff._client.get_client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = client.request("GET", "/v1/containers")["containers"]
        tpl = {c.get("container_id") for c in rows if c.get("app_name") == app.name
               and c.get("function") == fn_name and c.get("status") == "template"}
        if any(c.get("status") == "warm" and c.get("spare_of") in tpl for c in rows):
            time.sleep(settle)
            return
        time.sleep(0.01)


def breakdown(fn_name: str) -> dict[str, Any]:
    rows = [c for c in fn_rows(fn_name) if not is_template(c)]
    return (rows[0].get("cold_start") or {}) if rows else {}


def cold_starts(fn: Any, n: int, image_id: str = "", snapshot: bool = False,
                spare: bool = True) -> tuple[list[float], list[dict[str, Any]], float]:
    """n timed cold starts after one warm-up; returns their times (ms), their
    breakdowns, and the warm-up's time (ms: a snapshot's template made)."""
    times, parts, first = [], [], 0.0
    for i in range(n + 1):
        scale_to_zero(fn.__name__)
        if snapshot and spare and i:
            wait_spare(fn.__name__)
        elif image_id:
            wait_warm(image_id)
        t0 = time.perf_counter()
        fn.remote(i)
        dt = time.perf_counter() - t0
        if i:  # the first one is a warm-up (page cache, bytecode; a snapshot's template)
            times.append(dt * 1000)
            parts.append(breakdown(fn.__name__))
        else:
            first = dt * 1000
    scale_to_zero(fn.__name__)
    return times, parts, first


PART_KEYS = ("runtime_ms", "interpreter_ms", "prepare_ms", "fork_ms", "setup_ms", "attach_ms",
             "import_ms", "enter_ms", "ready_ms")


def med_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: statistics.median([p[k] for p in parts if isinstance(p.get(k), (int, float))])
        for k in PART_KEYS if any(isinstance(p.get(k), (int, float)) for p in parts)}
    out["warm_count"] = sum(1 for p in parts if p.get("warm"))
    if any("snapshot" in p for p in parts):
        out["snapshot_count"] = sum(1 for p in parts if p.get("snapshot"))
        out["spare_count"] = sum(1 for p in parts if p.get("spare"))
        out["templates"] = sorted({str(p["template"]) for p in parts if p.get("template")})
    return out


def run_case(results: dict[str, dict[str, Any]], label: str, fn: Any, n: int,
             image_id: str = "", snapshot: bool = False, spare: bool = True) -> None:
    if fn is None:  # a snapshot function the SDK refused
        return
    t, parts, first = cold_starts(fn, n, image_id, snapshot, spare)
    r: dict[str, Any] = {"median_ms": statistics.median(t), "p90_ms": percentile(t, 90),
                         "breakdown": med_parts(parts)}
    if snapshot:
        r["first_call_ms"] = first
    results[label] = r


def skip_note(name: str) -> str:
    return (f"skipped: the SDK refused @app.function(enable_memory_snapshot=True) for {name} "
            f"({SNAPSHOT_REFUSED[name]})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20, help="cold starts per case (20)")
    ap.add_argument("--no-numpy", action="store_true", help="skip case (b) (its image build)")
    ap.add_argument("--no-torch", action="store_true", help="skip case (c) (its image build)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results: dict[str, dict[str, Any]] = {}
    for name, flag in (("numpy_snap", args.no_numpy), ("torch_snap", args.no_torch)):
        if name in SNAPSHOT_REFUSED and not flag:
            print(f"bench: {skip_note(name)}", file=sys.stderr)
    # case: (its labels without and with a snapshot, the two functions, their
    # image, the snapshot function's name, left out by a flag)
    labels = {
        "b": ("(b) numpy, no snapshot", "(b) numpy, snapshot", numpy_fn, numpy_snap,
              numpy_image, "numpy_snap", args.no_numpy),
        "c": ("(c) torch, no snapshot", "(c) torch, snapshot", torch_fn, torch_snap,
              torch_image, "torch_snap", args.no_torch),
    }
    work = tempfile.mkdtemp(prefix="skiff-bench-cold-", dir="/tmp")
    try:
        with bench_server() as home:
            base = skiff.Image.debian_slim().hydrate()
            for _, _, _, _, im, _, off in labels.values():
                if not off:
                    t0 = time.perf_counter()
                    im.hydrate()
                    took = time.perf_counter() - t0
                    if took > 5:
                        print(f"bench: built {im.object_id} in {took:.0f} s", file=sys.stderr)
            with app.run(show_logs=False):
                run_case(results, "(a) plain function", plain, args.n, str(base.object_id))
                for l_fresh, l_snap, fresh, snap, im, snap_name, off in labels.values():
                    if off:
                        continue
                    run_case(results, l_fresh, fresh, args.n, str(im.object_id))
                    if snap is None:
                        results[l_snap] = {"skipped": skip_note(snap_name)}
                    else:
                        run_case(results, l_snap, snap, args.n, snapshot=True)
        # The same with nothing made ahead of demand: a container started for
        # each cold start, a snapshot's fork made on demand.
        os.environ["SKIFF_WARM_POOL"] = "0"
        os.environ["SKIFF_SNAPSHOT_SPARE"] = "0"
        with bench_server():
            with app.run(show_logs=False):
                run_case(results, "(a') plain function, no warm pool", plain, args.n)
                for l_fresh, l_snap, fresh, snap, _, snap_name, off in labels.values():
                    if off:
                        continue
                    case = l_fresh[1]
                    run_case(results, f"({case}') {l_fresh[4:]}, no warm pool", fresh, args.n)
                    if snap is None:
                        results[f"({case}') {l_snap[4:]}, no spare fork"] = {
                            "skipped": skip_note(snap_name)}
                    else:
                        run_case(results, f"({case}') {l_snap[4:]}, no spare fork", snap,
                                 args.n, snapshot=True, spare=False)
        os.environ.pop("SKIFF_WARM_POOL", None)
        os.environ.pop("SKIFF_SNAPSHOT_SPARE", None)
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
    ratios: dict[str, Optional[float]] = {}
    for what, fresh, snap in (("torch", "(c) torch, no snapshot", "(c) torch, snapshot"),
                              ("numpy", "(b) numpy, no snapshot", "(b) numpy, snapshot"),
                              ("torch, nothing ahead of demand",
                               "(c') torch, no snapshot, no warm pool",
                               "(c') torch, snapshot, no spare fork"),
                              ("numpy, nothing ahead of demand",
                               "(b') numpy, no snapshot, no warm pool",
                               "(b') numpy, snapshot, no spare fork")):
        if "median_ms" in results.get(fresh, {}) and "median_ms" in results.get(snap, {}):
            ratios[what] = results[fresh]["median_ms"] / results[snap]["median_ms"]
        elif "skipped" in results.get(snap, {}):
            ratios[what] = None  # the snapshot case was skipped: no ratio
    if args.json:
        print(json.dumps({**results, "ratios": ratios}))
        return
    floor = results["(d) runc run python3 -c pass"]["median_ms"]
    print(f"cold starts, .remote() to result, function scaled to zero before each, N={args.n}")
    print(f"{'case':<42}{'median':>9}{'p90':>10}{'/ floor':>9}   breakdown (median, ms; warm: "
          "how many took a warm container; spare: a spare fork)")
    for label, r in results.items():
        if "skipped" in r:
            print(f"{label:<42}  {r['skipped']}")
            continue
        b = r.get("breakdown") or {}
        items = []
        for k, v in b.items():
            if k.endswith("_ms"):
                items.append(f"{k[:-3]} {v:.1f}")
            elif k == "warm_count" and "snapshot_count" not in b:
                items.append(f"warm {v}/{args.n}")
            elif k in ("snapshot_count", "spare_count"):
                items.append(f"{k[:-6]} {v}/{args.n}")
            elif k == "templates":
                items.append(f"template {', '.join(v)}")
        print(f"{label:<42}{r['median_ms']:7.1f}ms{r['p90_ms']:8.1f}ms"
              f"{r['median_ms'] / floor:8.2f}x   {', '.join(items)}")
        if "first_call_ms" in r:
            print(f"{'':<42}  (its first call, which made the template: "
                  f"{r['first_call_ms']:.0f} ms; not counted)")
        if "snapshot_count" in b and b["snapshot_count"] < args.n:
            print(f"{'':<42}  note: {args.n - b['snapshot_count']} of {args.n} cold starts were "
                  f"not forks of a template (the server fell back; see bench-server.log)")
    for what, x in ratios.items():
        if x is None:
            print(f"{what}: no ratio, the snapshot case was skipped")
        else:
            print(f"{what} ready {x:.1f}x faster from a memory snapshot than a fresh import "
                  f"(median cold starts)")
    print("runtime = runc create/start + exec + Python's own start (incl. `import skiff`); "
          "interpreter = the SDK runtime's load to the worker socket; prepare/fork/setup/attach: "
          "a snapshot fork's root and box, the fork, its namespaces, its connection")


if __name__ == "__main__":
    main()
