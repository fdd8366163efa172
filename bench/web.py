"""Web endpoint throughput: wrk against a hello-world @skiff.fastapi_endpoint
served through the Skiff gateway by one container, beside the same handler
served directly by uvicorn + FastAPI (uvloop, httptools, one worker), and the
gateway's own ceiling (/__skiff/health, answered without a container).

All three run on this machine in the same run with the same wrk settings,
each after a warm-up run.  Needs wrk and Debian's python3-fastapi,
python3-uvicorn, python3-uvloop and python3-httptools
(scripts/install-deps.sh); the Skiff part needs root and a server with
--web-port.  The endpoint needs no web framework in its image (Skiff's
fastapi_endpoint serves plain functions itself), so the image is plain
debian_slim (built once, about a minute, unless SKIFF_TEST_HOME keeps it).

Run as root: bench/web [--duration 10] [--connections 64] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import skiff  # noqa: E402
from _server import bench_server  # noqa: E402

APP_NAME = "bench-web"
HELLO = {"status": "success", "data": "Hello, world!"}
PYTHON = "/usr/bin/python3"  # Debian's, where apt put uvicorn and FastAPI

app = skiff.App(APP_NAME, image=skiff.Image.debian_slim())


@app.function(max_containers=1)
@skiff.fastapi_endpoint()
def hello():
    return {"status": "success", "data": "Hello, world!"}


UVICORN_APP = '''
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def hello():
    return {"status": "success", "data": "Hello, world!"}
'''


def die(msg: str) -> None:
    sys.exit(f"bench/web: {msg}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(url: str, want: Optional[Any], timeout: float, what: str) -> None:
    """Polls url until it answers 200 (with JSON equal to want, when given)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, body = get(url, timeout=max(1.0, deadline - time.monotonic()))
            if status == 200 and (want is None or json.loads(body) == want):
                return
            last = f"HTTP {status}: {body[:200]!r}"
        except (OSError, ValueError) as e:
            last = str(e)
        time.sleep(0.1)
    die(f"{what} at {url} did not answer as expected within {timeout:.0f} s ({last})")


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unknown wrk duration {text!r}")
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    """Requests/s, p50/p99 (ms) and error counts from `wrk --latency` output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"^\s+(\d+) requests in", out, re.M)
    if not (rps and p50 and p99 and total):
        raise ValueError("cannot parse wrk output:\n" + out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": float(rps.group(1)),
        "p50_ms": _ms(p50.group(1)),
        "p99_ms": _ms(p99.group(1)),
        "requests": int(total.group(1)),
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def wrk(url: str, args: argparse.Namespace, duration: float) -> dict[str, Any]:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration:g}s",
           "--latency", url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if p.returncode != 0:
        die(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return parse_wrk(p.stdout)


def measure(url: str, args: argparse.Namespace, label: str) -> dict[str, Any]:
    note(f"{label}: warm-up {args.warmup:g} s, then {args.duration:g} s against {url}")
    wrk(url, args, args.warmup)
    r = wrk(url, args, args.duration)
    r["url"] = url
    return r


def note(msg: str) -> None:
    print(f"bench/web: {msg}", file=sys.stderr, flush=True)


def run_uvicorn(args: argparse.Namespace) -> dict[str, Any]:
    for mod in ("uvicorn", "fastapi", "uvloop", "httptools"):
        if subprocess.run([PYTHON, "-c", f"import {mod}"], capture_output=True).returncode:
            die(f"{PYTHON} cannot import {mod}; run scripts/install-deps.sh")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="skiff-bench-web-") as d:
        with open(os.path.join(d, "hello_app.py"), "w") as f:
            f.write(UVICORN_APP)
        log = open(os.path.join(d, "uvicorn.log"), "w+")
        proc = subprocess.Popen(
            [PYTHON, "-m", "uvicorn", "hello_app:app", "--app-dir", d, "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1", "--loop", "uvloop", "--http", "httptools",
             "--log-level", "warning", "--no-access-log"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/"
            try:
                wait_for(url, HELLO, 30, "uvicorn")
            except SystemExit:
                log.seek(0)
                note("uvicorn's output:\n" + log.read()[-2000:])
                raise
            return measure(url, args, "uvicorn + FastAPI")
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def server_has_web_port() -> bool:
    binary = os.environ.get("SKIFF_BIN") or shutil.which("skiff") or ""
    if not binary or not os.access(binary, os.X_OK):
        die("set SKIFF_BIN to the skiff binary (or run `make`)")
    p = subprocess.run([binary, "server", "--help"], capture_output=True, text=True, timeout=30)
    return "--web-port" in p.stdout + p.stderr


def run_skiff(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    port = free_port()
    with bench_server(["--web-port", str(port)]):
        note("starting the app (the first run builds debian_slim)")
        with app.run():
            get_url = getattr(hello, "get_web_url", None)
            url = (get_url() if get_url else None) or f"http://127.0.0.1:{port}/{APP_NAME}/hello"
            health = f"http://127.0.0.1:{port}/__skiff/health"
            wait_for(url, HELLO, 180, "the Skiff endpoint")
            endpoint = measure(url, args, "skiff gateway -> container")
            wait_for(health, None, 10, "the gateway's health route")
            gateway = measure(health, args, "gateway alone")
    return endpoint, gateway


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10, help="seconds per timed wrk run (10)")
    ap.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per target (3)")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    ap.add_argument("--uvicorn-only", action="store_true",
                    help="only the uvicorn baseline (no Skiff server, no root needed)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    if args.connections < args.threads:
        die("--connections must be at least --threads")
    if not shutil.which("wrk"):
        die("wrk is not installed; run scripts/install-deps.sh")
    if not args.uvicorn_only:
        if os.geteuid() != 0:
            die("needs root (containers, mounts); --uvicorn-only runs the baseline alone")
        if not server_has_web_port():
            die("this skiff server has no --web-port option (no web gateway in this build); "
                "rebuild with the gateway, or run --uvicorn-only")

    results: dict[str, Any] = {
        "wrk": {"threads": args.threads, "connections": args.connections,
                "duration_s": args.duration, "warmup_s": args.warmup},
        "uvicorn": run_uvicorn(args),
    }
    if not args.uvicorn_only:
        results["skiff"], results["gateway"] = run_skiff(args)
        sk, uv = results["skiff"], results["uvicorn"]
        results["ratio"] = {
            "requests_per_s": sk["requests_per_s"] / uv["requests_per_s"],
            "p99": sk["p99_ms"] / uv["p99_ms"],
        }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    report(results, args)


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    rows = [("skiff", "skiff gateway -> 1 container"),
            ("uvicorn", "uvicorn + FastAPI (uvloop)"),
            ("gateway", "gateway alone (/__skiff/health)")]
    print(f"hello-world web endpoint: wrk -t{args.threads} -c{args.connections} "
          f"-d{args.duration:g}s --latency, after a {args.warmup:g} s warm-up")
    print(f"{'':34}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    bad = False
    for key, label in rows:
        r = results.get(key)
        if not r:
            continue
        errors = r["socket_errors"] + r["non_2xx"]
        bad = bad or errors > 0
        print(f"{label:34}{r['requests_per_s']:10.0f}{r['p50_ms']:9.2f}{r['p99_ms']:9.2f}"
              f"{errors:8d}")
    ratio = results.get("ratio")
    if ratio:
        print(f"ratio skiff/uvicorn: req/s {ratio['requests_per_s']:.2f}x "
              f"(target >= 1.5x: {'met' if ratio['requests_per_s'] >= 1.5 else 'NOT met'}), "
              f"p99 {ratio['p99']:.2f}x "
              f"(target <= 1.0x: {'met' if ratio['p99'] <= 1.0 else 'NOT met'})")
    if bad:
        print("warning: some requests failed (socket errors or non-2xx answers); "
              "the figures above count them as requests")


if __name__ == "__main__":
    main()
