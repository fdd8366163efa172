"""Image builds (POST /v1/images): concurrent requests share one build, a failed
build says why and leaves nothing behind, and equivalent specs are one image.

The build tests run extra servers in fresh homes: one with a stand-in for
debootstrap (SKIFF_DEBOOTSTRAP) that takes a second and makes a tiny tree, one
with the real debootstrap pointed at a mirror where nothing listens.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import socket
import tempfile
import threading
from typing import Any, Callable, Iterator, Optional

import pytest

from conftest import mounts_under
from extra_server import (ExtraServer, http_json, http_request, ndjson_lines,
                          processes_with_cmdline, scrub_home)

StartFn = Callable[..., ExtraServer]
SPEC = {"base": "debian_slim", "python_version": None}


@pytest.fixture
def start_server() -> Iterator[StartFn]:
    """start_server(env) starts an extra server in a fresh home; afterwards every
    one is stopped and its home scrubbed and removed, whatever the test did."""
    started: list[ExtraServer] = []

    def start(env: Optional[dict[str, Optional[str]]] = None) -> ExtraServer:
        srv = ExtraServer(tempfile.mkdtemp(prefix="skiff-img-", dir="/tmp"), env)
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        srv.stop()
        scrub_home(srv.home)
        srv.close_log()


@pytest.fixture
def tmpdir_path() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="skiff-img-test-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _images_dir_entries(srv: ExtraServer) -> list[str]:
    return sorted(os.listdir(os.path.join(srv.home, "images")))


def test_concurrent_builds_share_one_build(start_server: StartFn, tmpdir_path: str) -> None:
    counter = os.path.join(tmpdir_path, "runs")
    script = os.path.join(tmpdir_path, "debootstrap")
    with open(script, "w") as f:
        f.write(f"""#!/bin/sh
# Test stand-in for: debootstrap --variant=minbase --include=python3 SUITE TARGET MIRROR
set -e
echo "$*" >> {counter}
echo "I: fake build: starting"
sleep 1
echo "I: fake build: halfway" >&2
mkdir -p "$4/usr/bin"
cp /bin/true "$4/usr/bin/python3"
echo "I: fake build: done"
""")
    os.chmod(script, 0o755)
    srv = start_server({"SKIFF_DEBOOTSTRAP": script})

    n = 4
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def build(i: int) -> None:
        try:
            barrier.wait(10)
            status, raw = http_request(srv.sock, "POST", "/v1/images", SPEC, timeout=60)
            results[i] = (status, ndjson_lines(raw))
        except Exception as e:  # reported by the asserts below
            results[i] = e

    threads = [threading.Thread(target=build, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads), "a build request never ended"

    ids = set()
    for i, r in enumerate(results):
        assert isinstance(r, tuple), f"request {i} failed: {r!r}"
        status, lines = r
        assert status == 200, (i, lines)
        *progress, final = lines
        assert "image_id" in final, f"request {i} ended with {final}\n{srv.log()}"
        assert final["cached"] is False, (i, final)
        assert progress and all(set(m) == {"progress"} for m in progress), (i, lines)
        texts = [m["progress"] for m in progress]
        assert any("fake build" in t for t in texts), (i, texts)
        ids.add(final["image_id"])
    assert len(ids) == 1, f"one spec, several ids: {ids}"
    image_id = ids.pop()
    assert image_id.startswith("im-") and len(image_id) == 3 + 64

    with open(counter) as f:
        runs = f.read().splitlines()
    assert len(runs) == 1, f"debootstrap ran {len(runs)} times: {runs}"
    args = runs[0].split()
    assert args[:3] == ["--variant=minbase", "--include=python3", "bookworm"], args
    assert len(args) == 5 and args[3].startswith(os.path.join(srv.home, "images", ".tmp-")), args

    # Later: from the cache, without running the build again or any progress.
    lines = srv.build_image(SPEC)
    assert lines == [{"image_id": image_id, "cached": True}], lines
    with open(counter) as f:
        assert len(f.read().splitlines()) == 1
    status, j = srv.json("GET", "/v1/images")
    assert status == 200, j
    assert [(i["image_id"], i["base"], i["python_version"]) for i in j["images"]] == \
        [(image_id, "debian_slim", "3.11")], j
    assert _images_dir_entries(srv) == [image_id]


def test_failed_build_says_why_and_leaves_nothing(start_server: StartFn) -> None:
    if shutil.which("debootstrap", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
        pytest.skip("debootstrap is not installed")
    env = {"SKIFF_DEBIAN_MIRROR": "http://127.0.0.1:9/debian", "SKIFF_DEBOOTSTRAP": None}
    srv = start_server(env)

    lines = srv.build_image(SPEC)
    *progress, final = lines
    assert set(final) == {"error"}, f"the build did not fail: {lines}"
    err = final["error"]
    assert err["code"] and isinstance(err["message"], str), err
    msg = err["message"]
    # The message carries debootstrap's own last words ...
    assert "127.0.0.1:9" in msg, msg
    assert progress, "no build output was streamed"
    last = progress[-1]["progress"].strip()
    assert last and last in msg, f"last output line {last!r} not in the message {msg!r}"

    # ... and the failure leaves no trace.
    assert _images_dir_entries(srv) == [], _images_dir_entries(srv)
    status, j = srv.json("GET", "/v1/images")
    assert status == 200 and j == {"images": []}, j
    assert mounts_under(srv.home) == []

    # The server keeps serving, and a failure is not cached: the next try builds again.
    status, h = srv.json("GET", "/v1/health")
    assert status == 200 and h["pid"] == srv.proc.pid, h
    lines = srv.build_image(SPEC)
    assert "error" in lines[-1] and len(lines) > 1, lines
    assert _images_dir_entries(srv) == []
    assert srv.running()
    assert srv.stop() == 0, srv.log()


def test_python_version_3_11_is_the_default(server: Any, image: Any) -> None:
    for version in ("3.11", None):
        status, raw = http_request(server.sock, "POST", "/v1/images",
                                   {"base": "debian_slim", "python_version": version})
        assert status == 200, raw
        assert ndjson_lines(raw) == [{"image_id": image.object_id, "cached": True}], raw

    import skiff

    assert skiff.Image.debian_slim("3.11").hydrate().object_id == image.object_id


def test_other_python_versions_are_refused(server: Any, image: Any) -> None:
    status, j = http_json(server.sock, "POST", "/v1/images",
                          {"base": "debian_slim", "python_version": "3.12"})
    assert status == 400, j
    assert j["error"]["code"] == "invalid_argument", j
    assert "3.11" in j["error"]["message"], j


def test_shutdown_during_a_build_ends_the_stream_with_an_error(start_server: StartFn,
                                                                tmpdir_path: str) -> None:
    sleep_arg = f"30.{random.randrange(10**6):06d}"
    script = os.path.join(tmpdir_path, "debootstrap")
    with open(script, "w") as f:
        f.write(f"#!/bin/sh\necho 'I: fake build: slow'\nexec sleep {sleep_arg}\n")
    os.chmod(script, 0o755)
    srv = start_server({"SKIFF_DEBOOTSTRAP": script})

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    try:
        s.connect(srv.sock)
        conn = http.client.HTTPConnection("localhost", timeout=15)
        conn.sock = s
        conn.request("POST", "/v1/images", body=json.dumps(SPEC),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        first = json.loads(resp.readline())
        assert "progress" in first, first  # the build is under way

        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(15) == 0, srv.log()
        try:
            rest = resp.read()
        except http.client.IncompleteRead as e:
            pytest.fail(f"the stream was cut after {first} + {e.partial!r}")
    finally:
        s.close()
    lines = ndjson_lines(rest)
    assert lines and set(lines[-1]) == {"error"}, lines
    assert lines[-1]["error"]["code"] == "unavailable", lines
    assert "shutting down" in lines[-1]["error"]["message"], lines
    assert processes_with_cmdline(["sleep", sleep_arg]) == []
    assert _images_dir_entries(srv) == []
