"""Deploy latency: `skiff deploy` of a hello-world web endpoint app, from the
command's start until the endpoint answers over HTTP with the new version.

The server is up and the image cached (a warm-up deploy first, not counted).
Each measured round writes the app file with a changed function body
(version N), runs `skiff deploy FILE --json` as a user would, and polls the
endpoint with a real HTTP client (http.client, a fresh connection) every
~2 ms until its JSON says version N.  Reported per round, as median, p90,
min and max: the total; the command's own wall time (until it exits), split
into what runs before the deploy code (exec, Python start, imports) and the
deploy code itself (the `seconds` of its JSON); and the time after the
command exits until the new version answers.  Beside them, in the same run,
floors: a deploy of the unchanged app (the command's fixed cost; the server
answers "unchanged"), `python3 -c "import skiff"` and `python3 -c pass`.

Modal's published figure for the same hello-world deploy is about 0.75 s
(Modal's docs and blog; published, not measured here).  Target: < 250 ms.

Run as root: bench/deploy [--n 10] [--gap 0.3] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
from typing import Any, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _server import bench_server, percentile  # noqa: E402

MODAL_MS = 750.0
TARGET_MS = 250.0
POLL_S = 0.002
APP = """
import skiff

app = skiff.App("bench-deploy")

@app.function()
@skiff.fastapi_endpoint(method="GET")
def hello():
    return {{"status": "success", "version": {v}}}
"""


def die(msg: str) -> None:
    sys.exit(f"bench/deploy: {msg}")


def write_app(path: str, version: int) -> None:
    with open(path, "w") as f:
        f.write(textwrap.dedent(APP.format(v=version)))


def deploy_env(home: str) -> dict[str, str]:
    """The environment of the deploys: the bench server's, spelled so that a
    deploy that finds it gone fails rather than starting a server of its own
    in the home (the SDK does that for the home's default socket path only)."""
    return dict(os.environ, SKIFF_HOME=home,
                SKIFF_SERVER="unix:" + os.path.join(home, ".", "skiff.sock"))


def deploy(binary: str, path: str, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """Runs `skiff deploy --json path`; returns (wall ms, its JSON)."""
    t0 = time.perf_counter()
    r = subprocess.run([binary, "deploy", "--json", path], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, env=env, timeout=600)
    ms = (time.perf_counter() - t0) * 1000
    if r.returncode != 0:
        die(f"skiff deploy exited with {r.returncode}:\n{r.stderr[-2000:]}")
    return ms, json.loads(r.stdout.strip().splitlines()[-1])


def answer(url: str) -> tuple[int, Any]:
    """(HTTP status, JSON body) of a GET of url on a fresh connection."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    try:
        conn.request("GET", u.path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, json.loads(body) if resp.status == 200 else body[:200]
    finally:
        conn.close()


def wait_answers(url: str, version: int, t0: float, timeout: float) -> float:
    """Polls until version answers; returns perf_counter() at that moment."""
    polls, last = 0, "no answer"
    wall0 = time.time()
    while True:
        polls += 1
        try:
            status, body = answer(url)
            if status == 200 and isinstance(body, dict) and body.get("version") == version:
                return time.perf_counter()
            last = f"HTTP {status}: {body!r}"
        except (OSError, ValueError, http.client.HTTPException) as e:
            last = f"{type(e).__name__}: {e}"
        if time.perf_counter() - t0 > timeout:
            die(f"version {version} did not answer at {url} within {timeout:.0f} s "
                f"({polls} polls over {time.time() - wall0:.1f} s of wall clock; last: {last})")
        time.sleep(POLL_S)


def run_ms(cmd: Sequence[str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    if r.returncode != 0:
        die(f"{' '.join(cmd)} exited with {r.returncode}: {r.stderr[-500:]!r}")
    return (time.perf_counter() - t0) * 1000


def measure(binary: str, home: str, path: str, n: int,
            gap: float) -> tuple[list[dict[str, float]], dict[str, list[float]]]:
    env = deploy_env(home)
    rounds: list[dict[str, float]] = []
    write_app(path, 0)
    _, first = deploy(binary, path, env)  # warm-up: the image; a kept home may hold versions
    url, base = first["functions"]["hello"]["web_url"], int(first["version"])
    wait_answers(url, 0, time.perf_counter(), 120)
    time.sleep(gap)
    for v in range(1, n + 1):
        write_app(path, v)
        t0 = time.perf_counter()
        cmd_ms, out = deploy(binary, path, env)
        if out.get("unchanged") or out.get("version") != base + v:
            die(f"deploy {v} did not make a new version: {out}")
        t_end = wait_answers(url, v, t0, 60)
        total_ms = (t_end - t0) * 1000
        deploy_ms = float(out.get("seconds", 0)) * 1000
        rounds.append({"total_ms": total_ms, "command_ms": cmd_ms,
                       "before_deploy_code_ms": cmd_ms - deploy_ms, "deploy_code_ms": deploy_ms,
                       "after_exit_ms": total_ms - cmd_ms})
        time.sleep(gap)  # a person's pause between deploys; the old version's container goes
    # Floors, same server, same run.
    python = os.environ.get("SKIFF_PYTHON") or "python3"
    floors: dict[str, list[float]] = {"unchanged_deploy_ms": [], "python_import_skiff_ms": [],
                               "python_pass_ms": []}
    for _ in range(n):
        ms, out = deploy(binary, path, env)
        if not out.get("unchanged"):
            die(f"a redeploy of the same file was not unchanged: {out}")
        floors["unchanged_deploy_ms"].append(ms)
        floors["python_import_skiff_ms"].append(run_ms([python, "-c", "import skiff"]))
        floors["python_pass_ms"].append(run_ms([python, "-c", "pass"]))
    return rounds, floors


def summary(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "p90": percentile(xs, 90), "min": min(xs),
            "max": max(xs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--n", type=int, default=10, help="measured redeploys (default 10)")
    ap.add_argument("--gap", type=float, default=0.3,
                    help="seconds between a round's answer and the next deploy (default 0.3)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if args.n < 1:
        die("--n must be at least 1")
    binary = os.environ.get("SKIFF_BIN") or shutil.which("skiff") or ""
    d = tempfile.mkdtemp(prefix="skiff-bench-deploy-", dir="/tmp")
    try:
        with bench_server(["--web-port", "0"]) as home:
            rounds, floors = measure(binary, home, os.path.join(d, "hello_deploy.py"), args.n,
                                     args.gap)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    keys = ("total_ms", "command_ms", "before_deploy_code_ms", "deploy_code_ms", "after_exit_ms")
    result: dict[str, Any] = {"n": len(rounds), "gap_s": args.gap, "poll_ms": POLL_S * 1000}
    result.update({k: summary([r[k] for r in rounds]) for k in keys})
    result["floors"] = {k: summary(xs) for k, xs in floors.items()}
    result.update({"modal_published_ms": MODAL_MS,
                   "ratio_to_modal": result["total_ms"]["median"] / MODAL_MS,
                   "target_ms": TARGET_MS, "rounds": rounds})
    if args.json:
        print(json.dumps(result))
        return
    report(result)


def report(r: dict[str, Any]) -> None:
    fl = r["floors"]
    rows = [("until the new version answers (total)", r["total_ms"]),
            ("  `skiff deploy`, until it exits", r["command_ms"]),
            ("    exec, Python start, imports", r["before_deploy_code_ms"]),
            ("    the deploy code (its \"seconds\")", r["deploy_code_ms"]),
            ("  after it exits, until the new answers", r["after_exit_ms"]),
            ("floor: deploy of the unchanged app", fl["unchanged_deploy_ms"]),
            ("floor: python3 -c 'import skiff'", fl["python_import_skiff_ms"]),
            ("floor: python3 -c pass", fl["python_pass_ms"])]
    print(f"skiff deploy of a hello-world endpoint: {r['n']} redeploys, each with a changed "
          f"body, {r['gap_s']:g} s apart (server up, image cached; polled every "
          f"{r['poll_ms']:g} ms)")
    print(f"{'':42}{'median':>9}{'p90':>9}{'min':>9}{'max':>9}")
    for label, s in rows:
        print(f"{label:42}" + "".join(f"{s[k]:7.0f}ms" for k in ("median", "p90", "min", "max")))
    med = r["total_ms"]["median"]
    print(f"Modal's published figure: ~{MODAL_MS:.0f} ms (Modal's docs/blog; NOT measured here); "
          f"Skiff median / Modal = {r['ratio_to_modal']:.2f}x")
    print(f"target < {TARGET_MS:.0f} ms: {'met' if med < TARGET_MS else 'NOT met'} "
          f"(median {med:.0f} ms)")


if __name__ == "__main__":
    main()
