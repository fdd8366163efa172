"""Container start latency: Skiff's Sandbox.create+wait beside plain `runc run`.

For each command (`/bin/true`, `python3 -c pass`) it times N runs of
``Sandbox.create(*cmd).wait()`` on a cached debian_slim image, and N runs of
the same command with ``runc run`` on a bundle made here from the same image
(an overlay mount of the image's rootfs and a `runc spec` config), then prints
median and p90 of both, the milliseconds Skiff adds and the ratio.

It starts its own `skiff server` with a temporary SKIFF_HOME, or with
SKIFF_TEST_HOME when set (which keeps built images between runs).  Run it as
root through bench/container_start.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import skiff  # noqa: E402
import skiff._client  # noqa: E402
from _server import bench_server  # noqa: E402

COMMANDS: list[list[str]] = [["/bin/true"], ["python3", "-c", "pass"]]


def time_skiff(cmd: list[str], n: int, image: skiff.Image) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        sb = skiff.Sandbox.create(*cmd, image=image)
        sb.wait()
        times.append(time.perf_counter() - t0)
        if sb.returncode != 0:
            sys.exit(f"bench: {cmd} exited with {sb.returncode} in skiff: {sb.stderr.read()}")
    return times


def image_rootfs(home: str, image_id: str) -> str:
    """The image's root filesystem on disk (the server's layout, docs/design.md)."""
    direct = os.path.join(home, "images", image_id, "rootfs")
    if os.path.isdir(direct):
        return direct
    hexpart = image_id.split("-", 1)[-1]
    for pattern in (f"images/*{hexpart}*/rootfs", f"images/*{hexpart[:16]}*/rootfs",
                    f"**/*{hexpart}*/rootfs"):
        found = glob.glob(os.path.join(home, pattern), recursive=True)
        if found:
            return found[0]
    sys.exit(f"bench: can't find the rootfs of {image_id} under {home}/images")


class RuncBundle:
    """An OCI bundle over an overlay of the image's rootfs, for `runc run`."""

    def __init__(self, rootfs: str, workdir: str) -> None:
        self.dir = os.path.join(workdir, "bundle")
        self.state = os.path.join(workdir, "runc-state")
        upper, work = os.path.join(workdir, "upper"), os.path.join(workdir, "work")
        self.merged = os.path.join(self.dir, "rootfs")
        for d in (self.dir, self.state, upper, work, self.merged):
            os.makedirs(d, exist_ok=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={rootfs},upperdir={upper},workdir={work}", self.merged],
                       check=True)
        subprocess.run(["runc", "spec", "--bundle", self.dir], check=True)
        with open(os.path.join(self.dir, "config.json")) as f:
            self.config: dict[str, Any] = json.load(f)
        self.config["process"]["terminal"] = False
        self.config["root"] = {"path": self.merged, "readonly": False}
        self.config["hostname"] = "bench"
        self.n = 0

    def set_args(self, args: list[str]) -> None:
        self.config["process"]["args"] = args
        with open(os.path.join(self.dir, "config.json"), "w") as f:
            json.dump(self.config, f)

    def run_once(self) -> float:
        self.n += 1
        t0 = time.perf_counter()
        r = subprocess.run(["runc", "--root", self.state, "run", "--bundle", self.dir,
                            f"skiff-bench-{os.getpid()}-{self.n}"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(f"bench: runc run failed ({r.returncode}): {r.stderr.decode()}")
        return elapsed

    def close(self) -> None:
        subprocess.run(["umount", self.merged], check=False)


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(p * len(s)) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=30, help="runs per command and runner (30)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs first (2)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="skiff-bench-runc-", dir="/tmp")
    bundle: Optional[RuncBundle] = None
    results: list[tuple[str, list[float], list[float]]] = []
    try:
        with bench_server() as home:
            health = skiff._client.get_client().health()
            image = skiff.Image.debian_slim().hydrate()
            assert image.object_id is not None
            bundle = RuncBundle(image_rootfs(home, image.object_id), work)
            for cmd in COMMANDS:
                time_skiff(cmd, args.warmup, image)
                skiff_times = time_skiff(cmd, args.n, image)
                bundle.set_args(cmd)
                for _ in range(args.warmup):
                    bundle.run_once()
                runc_times = [bundle.run_once() for _ in range(args.n)]
                results.append((" ".join(cmd), skiff_times, runc_times))
            bundle.close()
            bundle = None
    finally:
        if bundle is not None:
            bundle.close()
        shutil.rmtree(work, ignore_errors=True)

    print(f"container start, create -> exit, N={args.n} each "
          f"(server: {health['runtime']}, cgroup {health['cgroup']}, "
          f"{health['cpus']} CPUs; times in ms)")
    head = (f"{'command':<18} {'skiff med':>10} {'skiff p90':>10} {'runc med':>10} "
            f"{'runc p90':>10} {'added med':>10} {'ratio':>6}")
    print(head)
    print("-" * len(head))
    for name, st, rt in results:
        sm, rm = statistics.median(st) * 1e3, statistics.median(rt) * 1e3
        print(f"{name:<18} {sm:10.1f} {pct(st, 0.9) * 1e3:10.1f} {rm:10.1f} "
              f"{pct(rt, 0.9) * 1e3:10.1f} {sm - rm:10.1f} {sm / rm:6.2f}")
    print("runc: `runc run` of a bundle prepared once (overlay already mounted); "
          "skiff: Sandbox.create + wait over the API.")


if __name__ == "__main__":
    main()
