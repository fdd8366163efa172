"""End to end: images with build steps and the layer cache (issue 6).

One app (written to a temp folder with its local files, run with
`skiff run` as a user would) uses an image with every kind of step, a
Dockerfile image and an OCI layout imported from disk; then the cache is
checked through the server's build stream: a second run rebuilds nothing
and its image step is quick, a changed file rebuilds only its step and those
after it, a failing step reports its exit code and output and caches
nothing, and a prune while a container runs leaves that container working.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import textwrap
import time
import zipfile
from typing import Any, Iterator

import pytest

from conftest import SKIFF_BIN

SDK = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "sdk", "python"))

APP = '''
import json, os, subprocess
import skiff

def prep():
    with open("/prepared.txt", "w") as f:
        f.write("from run_function")

image = (
    skiff.Image.debian_slim()
    .apt_install("jq")
    .pip_install("skifftestpkg", find_links=os.path.join(os.path.dirname(__file__), "wheels"),
                 extra_options="--no-index")
    .run_commands("echo $GREETING > /built.txt", env={"GREETING": "built-with-env"})
    .env({"MODE": "prod"})
    .workdir("/app")
    .add_local_file(os.path.join(os.path.dirname(__file__), "data.txt"), "/app/data.txt", copy=True)
    .add_local_dir(os.path.join(os.path.dirname(__file__), "d"), "/app/d", copy=True)
    .run_function(prep)
    .add_local_file(os.path.join(os.path.dirname(__file__), "live.txt"), "/live.txt")
    .add_local_dir(os.path.join(os.path.dirname(__file__), "live"), "/livedir")
    .add_local_python_source("helpers_mod")
)
dimage = skiff.Image.from_dockerfile(os.path.join(os.path.dirname(__file__), "Dockerfile"),
                                     build_args={"GREETING": "hello"})
oimage = skiff.Image.from_registry(os.path.join(os.path.dirname(__file__), "layout"))
app = skiff.App("image-layers", image=image)

@app.function()
def check():
    import helpers_mod, skifftestpkg
    return {
        "jq": subprocess.run(["jq", "--version"], capture_output=True, text=True).stdout.strip(),
        "pkg": skifftestpkg.VALUE, "built": open("/built.txt").read().strip(),
        "mode": os.environ.get("MODE"), "cwd": os.getcwd(),
        "data": open("/app/data.txt").read().strip(), "d": open("/app/d/x.txt").read().strip(),
        "prep": open("/prepared.txt").read(), "live": open("/live.txt").read().strip(),
        "livedir": open("/livedir/y.txt").read().strip(), "helper": helpers_mod.VALUE,
    }

@app.function(image=dimage)
def dcheck():
    return {"greet": open("/srv/greet").read().strip(), "who": open("/home/app/who").read().strip(),
            "G": os.environ.get("G"), "OTHER": os.environ.get("OTHER"), "cwd": os.getcwd(),
            "copied": open("/srv/data.txt").read().strip(),
            "added": open("/srv/added/x.txt").read().strip()}

@app.function(image=oimage)
def ocheck():
    return {"marker": open("/oci-marker").read(), "A": os.environ.get("OCI_A")}

@app.local_entrypoint()
def main():
    print("RESULT " + json.dumps({"check": check.remote(), "dcheck": dcheck.remote(),
                                  "ocheck": ocheck.remote(),
                                  "ids": [image.object_id, dimage.object_id, oimage.object_id]}))
'''

DOCKERFILE = '''\
# syntax=docker/dockerfile:1
FROM debian:bookworm-slim
ARG GREETING=hi
ENV G=${GREETING} OTHER=1
WORKDIR /srv
COPY data.txt /srv/data.txt
ADD d /srv/added
RUN echo "$G" > /srv/greet && \\
    useradd -m app
USER app
RUN id -un > /home/app/who
ENTRYPOINT ["python3"]
CMD ["-c", "print(1)"]
'''


def make_wheel(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    name = "skifftestpkg-1.0.dist-info"
    files = {
        "skifftestpkg/__init__.py": b"VALUE = 'from-a-local-wheel'\n",
        f"{name}/METADATA": b"Metadata-Version: 2.1\nName: skifftestpkg\nVersion: 1.0\n",
        f"{name}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
    }
    record = "".join(f"{p},sha256=,{len(d)}\n" for p, d in files.items()) + f"{name}/RECORD,,\n"
    with zipfile.ZipFile(os.path.join(folder, "skifftestpkg-1.0-py3-none-any.whl"), "w") as z:
        for p, d in files.items():
            z.writestr(p, d)
        z.writestr(f"{name}/RECORD", record)


def make_oci_layout(folder: str, rootfs: str) -> None:
    """An OCI layout of two layers: the session image's root file system, then a marker."""
    def blob(data: bytes) -> tuple[str, int]:
        h = hashlib.sha256(data).hexdigest()
        os.makedirs(f"{folder}/blobs/sha256", exist_ok=True)
        with open(f"{folder}/blobs/sha256/{h}", "wb") as f:
            f.write(data)
        return "sha256:" + h, len(data)

    base = io.BytesIO()
    with tarfile.open(fileobj=base, mode="w") as t:
        t.add(rootfs, arcname=".")
    top = io.BytesIO()
    with tarfile.open(fileobj=top, mode="w") as t:
        ti = tarfile.TarInfo("oci-marker")
        ti.size = 6
        t.addfile(ti, io.BytesIO(b"marker"))
    layers = [blob(gzip.compress(base.getvalue(), compresslevel=1)), blob(top.getvalue())]
    cfg = blob(json.dumps({"architecture": "amd64", "os": "linux",
                           "config": {"Env": ["OCI_A=1"]}}).encode())
    man = blob(json.dumps({"schemaVersion": 2, "config": {"digest": cfg[0], "size": cfg[1]},
                           "layers": [{"digest": d, "size": s} for d, s in layers]}).encode())
    with open(f"{folder}/index.json", "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{"digest": man[0], "size": man[1]}]}, f)
    with open(f"{folder}/oci-layout", "w") as f:
        f.write('{"imageLayoutVersion": "1.0.0"}')


@pytest.fixture(scope="module")
def project(server: Any, image: Any) -> Iterator[str]:
    import skiff._client

    d = tempfile.mkdtemp(prefix="skiff-image-layers-", dir="/tmp")
    with open(os.path.join(d, "imgapp.py"), "w") as f:
        f.write(APP)
    with open(os.path.join(d, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE)
    for name, text in (("data.txt", "hello-file"), ("live.txt", "live-1"),
                       ("helpers_mod.py", "VALUE = 41\n")):
        with open(os.path.join(d, name), "w") as f:
            f.write(text + "\n")
    for sub, name, text in (("d", "x.txt", "dir-file"), ("live", "y.txt", "live-dir")):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
        with open(os.path.join(d, sub, name), "w") as f:
            f.write(text + "\n")
    make_wheel(os.path.join(d, "wheels"))
    rows = skiff._client.get_client().request("GET", "/v1/images")["images"]
    root = [r for r in rows if r["image_id"] == image.object_id][0]["rootfs"]
    make_oci_layout(os.path.join(d, "layout"), root)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_app(project: str, timeout: float = 600) -> tuple[dict[str, Any], str, float]:
    env = dict(os.environ, PYTHONPATH=SDK)
    t0 = time.monotonic()
    p = subprocess.run([SKIFF_BIN, "run", "imgapp.py"], cwd=project, capture_output=True,
                       text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    took = time.monotonic() - t0
    assert p.returncode == 0, f"skiff run failed ({p.returncode}):\n{p.stdout}\n{p.stderr[-4000:]}"
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, p.stdout + p.stderr[-3000:]
    return json.loads(line[-1][7:]), p.stderr, took


def build_stream(spec: dict[str, Any]) -> list[dict[str, Any]]:
    import skiff._client

    return list(skiff._client.get_client().stream_ndjson("POST", "/v1/images", spec))


def spec_of(project: str, attr: str) -> dict[str, Any]:
    """The image spec the app's module makes, loaded as `skiff run` loads it."""
    from skiff import _run

    mod = _run.load_file(os.path.join(project, "imgapp.py"))
    return getattr(mod, attr)._spec


def step_lines(msgs: list[dict[str, Any]]) -> list[tuple[int, bool]]:
    return [(m["step"], m["cached"]) for m in msgs if "cached" in m and "step" in m]


def test_every_step_kind_reaches_the_function(project: str) -> None:
    r, _, _ = run_app(project)
    c = r["check"]
    assert c["jq"].startswith("jq-"), c
    assert c["pkg"] == "from-a-local-wheel", c
    assert c["built"] == "built-with-env" and c["mode"] == "prod" and c["cwd"] == "/app", c
    assert c["data"] == "hello-file" and c["d"] == "dir-file", c
    assert c["prep"] == "from run_function", c
    assert c["live"] == "live-1" and c["livedir"] == "live-dir" and c["helper"] == 41, c
    d = r["dcheck"]
    assert d == {"greet": "hello", "who": "app", "G": "hello", "OTHER": "1", "cwd": "/srv",
                 "copied": "hello-file", "added": "dir-file"}, d
    assert r["ocheck"] == {"marker": "marker", "A": "1"}, r["ocheck"]


def test_second_run_rebuilds_nothing_and_copy_false_files_are_live(project: str) -> None:
    first, _, _ = run_app(project)
    with open(os.path.join(project, "live.txt"), "w") as f:
        f.write("live-2\n")
    again, err, _ = run_app(project)
    assert again["ids"] == first["ids"], "a copy=False file changed the image id"
    assert again["check"]["live"] == "live-2", "a copy=False file is not read at start"
    assert "=> [" not in err, f"a cached image printed build steps:\n{err}"
    msgs = build_stream(spec_of(project, "image"))
    assert msgs[-1].get("cached") is True, msgs[-1]
    assert all(c for _, c in step_lines(msgs)), step_lines(msgs)
    t0 = time.monotonic()
    build_stream(spec_of(project, "image"))
    took = time.monotonic() - t0
    assert took < 0.1, f"a cached image took {took * 1000:.0f} ms to answer"


def test_a_changed_file_rebuilds_its_step_and_later_ones_only(project: str) -> None:
    run_app(project)
    with open(os.path.join(project, "data.txt"), "w") as f:
        f.write("hello-file-2\n")
    spec = spec_of(project, "image")
    msgs = build_stream(spec)
    assert "image_id" in msgs[-1], msgs[-1]
    steps = step_lines(msgs)
    ops = [s.get("label") or s["op"] for s in spec["steps"]]
    changed = next(i for i, s in enumerate(spec["steps"], 1)
                   if s["op"] == "copy" and s["target"] == "/app/data.txt")
    for i, cached in steps:
        assert cached == (i < changed), (f"step {i} ({ops[i - 1]}) cached={cached} after "
                                         f"changing step {changed}: {steps}")
    r, _, _ = run_app(project)
    assert r["check"]["data"] == "hello-file-2"


def test_failing_step_reports_and_caches_nothing() -> None:
    import skiff

    img = skiff.Image.debian_slim().run_commands("echo before-fail", "exit 3")
    for attempt in range(2):
        msgs = build_stream(img._spec)
        err = msgs[-1].get("error")
        assert err, msgs[-1]
        assert "exited with 3" in err["message"] and "before-fail" in err["message"], err
        assert step_lines(msgs) == [(1, False)], f"attempt {attempt}: {step_lines(msgs)}"


def test_prune_while_a_container_runs(project: str, server: Any) -> None:
    import skiff

    marker = f"prune-{time.time_ns()}"
    img = skiff.Image.debian_slim().run_commands(f"echo {marker} > /marker")
    img.hydrate()
    sb = skiff.Sandbox.create("sleep", "60", image=img)
    try:
        rm = subprocess.run([SKIFF_BIN, "image", "rm", img.object_id], capture_output=True,
                            text=True, timeout=30)
        assert rm.returncode == 0, rm.stderr
        pr = subprocess.run([SKIFF_BIN, "image", "prune", "--json"], capture_output=True,
                            text=True, timeout=60)
        assert pr.returncode == 0, pr.stderr
        assert img.object_id not in json.loads(pr.stdout)["removed_layers"]
        p = sb.exec("cat", "/marker")
        p.wait()
        assert p.stdout.read().strip() == marker
    finally:
        sb.terminate()
    try:
        sb.wait()
    except skiff.exception.Error:
        pass  # terminated: that is how it ends
    pr = subprocess.run([SKIFF_BIN, "image", "prune", "--json"], capture_output=True, text=True,
                        timeout=60)
    assert img.object_id in json.loads(pr.stdout)["removed_layers"], pr.stdout
    ls = subprocess.run([SKIFF_BIN, "image", "list", "--json"], capture_output=True, text=True,
                        timeout=30)
    assert ls.returncode == 0 and isinstance(json.loads(ls.stdout), list)
    table = subprocess.run([SKIFF_BIN, "image", "list"], capture_output=True, text=True,
                           timeout=30)
    assert table.stdout.startswith("IMAGE"), table.stdout
