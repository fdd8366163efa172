"""Image build times: a cold `debian_slim()` (debootstrap from the machine's
Debian mirror), a cold `debian_slim().apt_install("jq")` on top of it (one
layer: apt-get in a build container), and cache hits of both (what a second
`skiff run` of the same app pays), beside `debootstrap` run by hand into a
folder, the floor for the first.

Always uses a fresh SKIFF_HOME (cold means cold); needs root and network
access to the Debian mirror.  Run as root: bench/image [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.pop("SKIFF_TEST_HOME", None)   # cold builds need a home of their own

import skiff  # noqa: E402
from _server import bench_server  # noqa: E402


def timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def hydrate(img: "skiff.Image") -> None:
    with open(os.devnull, "w") as devnull:
        img._build(skiff._client.get_client(), devnull)


def debootstrap_by_hand() -> float:
    d = tempfile.mkdtemp(prefix="skiff-bench-debootstrap-", dir="/tmp")
    try:
        cmd = ["debootstrap", "--variant=minbase", "--include=python3", "bookworm", d]
        mirror = os.environ.get("SKIFF_DEBIAN_MIRROR")
        if mirror:
            cmd.append(mirror)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="cache hits to time (median)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out: dict[str, float] = {}
    with bench_server() as home:
        base = skiff.Image.debian_slim()
        out["cold debian_slim"] = timed(lambda: hydrate(base))
        jq = skiff.Image.debian_slim().apt_install("jq")
        out["cold + apt_install(jq) layer"] = timed(lambda: hydrate(jq))
        hits_base, hits_jq = [], []

        def ask(img: "skiff.Image") -> None:
            # What a second `skiff run` (a new process) pays: the server's answer.
            for msg in skiff._client.get_client().stream_ndjson("POST", "/v1/images", img._spec):
                if "image_id" in msg:
                    assert msg.get("cached"), msg
                elif "error" in msg:
                    raise SystemExit(f"bench/image: {msg['error']}")

        for _ in range(args.repeat):
            hits_base.append(timed(lambda: ask(skiff.Image.debian_slim())))
            hits_jq.append(timed(lambda: ask(skiff.Image.debian_slim().apt_install("jq"))))
        out["cache hit debian_slim (median)"] = statistics.median(hits_base)
        out["cache hit + apt_install(jq) (median)"] = statistics.median(hits_jq)
    out["debootstrap by hand"] = debootstrap_by_hand()
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{'what':45s} {'seconds':>10s}")
    for k, v in out.items():
        print(f"{k:45s} {v:10.4f}")
    print(f"ratio cold debian_slim / debootstrap by hand: "
          f"{out['cold debian_slim'] / out['debootstrap by hand']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
