"""Image build steps on the client (docs/api.md, "Image build steps and the
layer cache"): the JSON each method adds, its checks, content hashes and
ignore patterns, the Dockerfile reader, from_registry, copy=False mounts in
registrations, the progress view, and skiff._build_fn in a subprocess."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest

import skiff
from skiff import _image_files as F
from skiff._image_progress import Progress, build_spec
from skiff.exception import InvalidError

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.join(os.path.dirname(os.path.dirname(HERE)), "sdk", "python")
ENSURE_PIP = ("python3 -m pip --version >/dev/null 2>&1 || (apt-get update -q && "
              "DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip)")
PIP = "python3 -m pip install --break-system-packages"


def steps(im: skiff.Image) -> list[dict[str, Any]]:
    return list(im._spec.get("steps", []))


def run_step(label: str, commands: list[str], env: Any = None, mounts: Any = None,
             content_hash: Any = None, force: bool = False) -> dict[str, Any]:
    return {"op": "run", "label": label, "force": force, "commands": commands,
            "env": env or {}, "mounts": mounts or [], "content_hash": content_hash}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    d = tmp_path / "proj"
    (d / "pkg" / "__pycache__").mkdir(parents=True)
    (d / "pkg" / "mod.py").write_text("X = 1\n")
    (d / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0junk")
    (d / "top.pyc").write_bytes(b"\0")
    (d / "README").write_text("hi\n")
    (d / "link").symlink_to("README")
    return d


# -- run steps ---------------------------------------------------------------------


def test_pip_install_step() -> None:
    im = skiff.Image.debian_slim().pip_install("requests", ["numpy<2", "a b"],
                                               index_url="https://i/simple",
                                               extra_index_url="https://x/y z", pre=True,
                                               extra_options="--no-deps --timeout '3'",
                                               force_build=True)
    assert steps(im) == [run_step(
        "pip_install a b numpy<2 requests",
        [ENSURE_PIP, PIP + " --index-url https://i/simple --extra-index-url 'https://x/y z' "
         "--pre --no-deps --timeout 3 'a b' 'numpy<2' requests"], force=True)]
    assert skiff.Image.debian_slim().pip_install()._spec == skiff.Image.debian_slim()._spec
    with pytest.raises(InvalidError, match="extra_options"):
        skiff.Image.debian_slim().pip_install("--upgrade")
    with pytest.raises(InvalidError, match="pip_install"):
        skiff.Image.debian_slim().pip_install(3)  # type: ignore[arg-type]


def test_pip_find_links_dir_is_mounted_and_hashed(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "x-1.0-py3-none-any.whl").write_bytes(b"zip")
    im = skiff.Image.debian_slim().pip_install("x", find_links=str(wheels))
    (st,) = steps(im)
    assert st["mounts"] == [{"source": str(wheels), "target": "/skiff/build/m0"}]
    assert st["commands"][1] == PIP + " --find-links /skiff/build/m0 x"
    assert st["content_hash"] == F.hash_many([str(wheels)])
    url = skiff.Image.debian_slim().pip_install("x", find_links="https://h/wheels/")
    assert steps(url)[0]["mounts"] == [] and "--find-links https://h/wheels/" in \
        steps(url)[0]["commands"][1]
    with pytest.raises(InvalidError, match="not a directory"):
        skiff.Image.debian_slim().pip_install("x", find_links=str(tmp_path / "nope"))


def test_pip_install_from_requirements(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("requests==2.31\n")
    im = skiff.Image.debian_slim().pip_install_from_requirements(str(req))
    (st,) = steps(im)
    assert st["label"] == "pip_install_from_requirements requirements.txt"
    assert st["commands"] == [ENSURE_PIP, PIP + " -r /skiff/build/requirements.txt"]
    assert st["mounts"] == [{"source": str(req), "target": "/skiff/build/requirements.txt"}]
    h = st["content_hash"]
    req.write_text("requests==2.32\n")
    assert steps(skiff.Image.debian_slim().pip_install_from_requirements(str(req)))[0][
        "content_hash"] != h
    with pytest.raises(InvalidError, match="is not a file"):
        skiff.Image.debian_slim().pip_install_from_requirements(str(tmp_path / "none.txt"))


def test_run_commands_env_and_secrets() -> None:
    sec = skiff.Secret.from_dict({"TOKEN": "t0k", "A": "from-secret"})
    im = skiff.Image.debian_slim().run_commands("echo 1", ["echo 2", "echo 3"],
                                                env={"A": "1"}, secrets=[sec])
    assert steps(im) == [run_step("run_commands echo 1 && echo 2 && echo 3",
                                  ["echo 1", "echo 2", "echo 3"],
                                  env={"TOKEN": "t0k", "A": "1"})]
    assert skiff.Image.debian_slim().run_commands()._spec == skiff.Image.debian_slim()._spec
    with pytest.raises(InvalidError, match="secrets"):
        skiff.Image.debian_slim().run_commands("x", secrets=sec)  # type: ignore[arg-type]
    with pytest.raises(InvalidError, match="run_commands"):
        skiff.Image.debian_slim().run_commands("x", env={"A": 1})  # type: ignore[dict-item]


def test_config_steps() -> None:
    im = (skiff.Image.debian_slim().env({"A": "1", "B": "x y"}).workdir("/app").workdir("src")
          .entrypoint(["python3", "-m", "srv"]).cmd(["--port", "80"]))
    assert steps(im) == [
        {"op": "env", "label": "env A=1 B=x y", "force": False, "vars": {"A": "1", "B": "x y"}},
        {"op": "workdir", "label": "workdir /app", "force": False, "path": "/app"},
        {"op": "workdir", "label": "workdir /app/src", "force": False, "path": "/app/src"},
        {"op": "entrypoint", "label": "entrypoint python3 -m srv", "force": False,
         "argv": ["python3", "-m", "srv"]},
        {"op": "cmd", "label": "cmd --port 80", "force": False, "argv": ["--port", "80"]},
    ]
    for bad in (lambda i: i.env({"A=B": "1"}), lambda i: i.env({"A": 1}),
                lambda i: i.entrypoint("python3"), lambda i: i.cmd([1]),
                lambda i: i.workdir(""), lambda i: i.env({"A": "1"}, force_build="yes")):
        with pytest.raises(InvalidError):
            bad(skiff.Image.debian_slim())


def test_steps_never_change_the_original() -> None:
    base = skiff.Image.debian_slim().run_commands("a")
    before = json.dumps(base._spec, sort_keys=True)
    one = base.run_commands("b")
    two = base.env({"X": "1"})
    assert json.dumps(base._spec, sort_keys=True) == before
    assert len(steps(one)) == len(steps(two)) == 2
    assert steps(one)[1]["op"] == "run" and steps(two)[1]["op"] == "env"
    assert steps(one)[0] is not None and one._spec is not base._spec


# -- local files -------------------------------------------------------------------


def test_add_local_file_and_dir_copy(tree: Path) -> None:
    im = (skiff.Image.debian_slim().add_local_file(tree / "README", "/etc/", copy=True)
          .add_local_dir(str(tree / "pkg"), "/opt/pkg", copy=True))
    f, d = steps(im)
    assert f == {"op": "copy", "label": f"add_local_file {tree / 'README'} /etc/README",
                 "force": False, "source": str(tree / "README"), "target": "/etc/README",
                 "content_hash": F.content_hash(str(tree / "README"))}
    assert d["source"] == str(tree / "pkg") and d["target"] == "/opt/pkg"
    assert d["content_hash"] == F.content_hash(str(tree / "pkg"))
    assert im._mounts == []
    with pytest.raises(InvalidError, match="absolute"):
        skiff.Image.debian_slim().add_local_file(tree / "README", "etc/README", copy=True)
    with pytest.raises(InvalidError, match="is not a directory"):
        skiff.Image.debian_slim().add_local_dir(tree / "README", "/x")
    with pytest.raises(InvalidError, match="is not a file"):
        skiff.Image.debian_slim().add_local_file(tree, "/x")


def test_content_hash_follows_content_only(tree: Path) -> None:
    h = F.content_hash(str(tree))
    assert F.content_hash(str(tree)) == h
    os.utime(tree / "README", (1, 1))             # a touch changes nothing
    assert F.content_hash(str(tree)) == h
    (tree / "README").write_text("hi!\n")
    h2 = F.content_hash(str(tree))
    assert h2 != h
    os.chmod(tree / "README", 0o600)              # modes count
    assert F.content_hash(str(tree)) != h2
    os.chmod(tree / "README", 0o644)
    (tree / "link").unlink()
    (tree / "link").symlink_to("pkg")             # a symlink's target text counts
    assert F.content_hash(str(tree)) not in (h, h2)
    f = F.content_hash(str(tree / "pkg" / "mod.py"))
    (tree / "pkg" / "mod.py").write_text("X = 2\n")
    assert F.content_hash(str(tree / "pkg" / "mod.py")) != f


def test_ignore_patterns(tree: Path) -> None:
    def kept(ignore: Any) -> list[str]:
        return [rel for rel, _ in F.walk(str(tree), F.Ignore(ignore))]

    everything = ["README", "link", "pkg", "pkg/__pycache__",
                  "pkg/__pycache__/mod.cpython-311.pyc", "pkg/mod.py", "top.pyc"]
    assert kept(None) == everything
    assert kept(["*.pyc"]) == [p for p in everything if p != "top.pyc"]    # anchored
    assert kept(["**/*.pyc"]) == ["README", "link", "pkg", "pkg/__pycache__", "pkg/mod.py"]
    assert kept(["**/__pycache__", "# comment", ""]) == [
        "README", "link", "pkg", "pkg/mod.py", "top.pyc"]
    assert kept(["pkg", "!pkg/mod.py"]) == ["README", "link", "pkg/mod.py", "top.pyc"]
    assert kept(["R?ADME", "[lt]*"]) == ["pkg", "pkg/__pycache__",
                                          "pkg/__pycache__/mod.cpython-311.pyc", "pkg/mod.py"]
    assert kept(lambda p: p.suffix == ".pyc") == [
        "README", "link", "pkg", "pkg/__pycache__", "pkg/mod.py"]
    with pytest.raises(InvalidError, match="ignore"):
        F.Ignore("*.pyc")  # type: ignore[arg-type]


def test_ignore_changes_the_hash_and_stages_a_filtered_copy(tree: Path) -> None:
    plain = skiff.Image.debian_slim().add_local_dir(tree, "/app", copy=True)
    ig = skiff.Image.debian_slim().add_local_dir(tree, "/app", copy=True,
                                                 ignore=["**/*.pyc", "**/__pycache__"])
    (a,), (b,) = steps(plain), steps(ig)
    assert a["content_hash"] != b["content_hash"]
    assert b["source"] == F.staging_dir(b["content_hash"]) and b["source"] != str(tree)
    # Changing an ignored file changes nothing.
    (tree / "top.pyc").write_bytes(b"\1\2")
    again = skiff.Image.debian_slim().add_local_dir(tree, "/app", copy=True,
                                                    ignore=["**/*.pyc", "**/__pycache__"])
    assert steps(again) == [b]
    # A pattern that ignores nothing copies the directory itself.
    none = skiff.Image.debian_slim().add_local_dir(tree, "/app", copy=True, ignore=["*.zip"])
    assert steps(none)[0]["source"] == str(tree)

    class Rec:
        seen: list[str] = []

        def stream_ndjson(self, method: str, path: str, body: Any) -> Iterator[dict[str, Any]]:
            src = body["steps"][0]["source"]
            Rec.seen = sorted(str(p.relative_to(src)) for p in Path(src).rglob("*"))
            assert F.content_hash(src) == body["steps"][0]["content_hash"]
            yield {"image_id": "im-x", "cached": True}

    assert ig._build(Rec(), io.StringIO()) == "im-x"  # type: ignore[arg-type]
    assert Rec.seen == ["README", "link", "pkg", "pkg/mod.py"]
    assert not os.path.exists(b["source"])           # removed after the build


def test_copy_false_mounts_travel_and_stay_out_of_the_spec(tree: Path) -> None:
    base = skiff.Image.debian_slim().run_commands("true")
    im = base.add_local_dir(tree, "/app").add_local_file(tree / "README", "/etc/motd")
    assert im._spec == base._spec
    assert im._mounts == [{"source": str(tree), "target": "/app", "readonly": True},
                          {"source": str(tree / "README"), "target": "/etc/motd",
                           "readonly": True}]
    assert base._mounts == []
    more = im.env({"A": "1"})
    assert more._mounts == im._mounts
    with pytest.raises(InvalidError, match="copy=False"):
        im.run_commands("ls /app")


def test_copy_false_ignore_warns(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    skiff.Image.debian_slim().add_local_dir(tree, "/w1", ignore=["*.pyc"])
    skiff.Image.debian_slim().add_local_dir(tree, "/w2", ignore=["*.pyc"])
    err = capsys.readouterr().err
    assert err.count("mounts the whole directory") <= 1


def test_add_local_python_source(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tree))
    (tree / "single.py").write_text("Y = 2\n")
    im = skiff.Image.debian_slim().add_local_python_source("pkg", "single")
    assert im._mounts == [
        {"source": str(tree / "pkg"), "target": "/root/pkg", "readonly": True},
        {"source": str(tree / "single.py"), "target": "/root/single.py", "readonly": True}]
    assert "pkg" not in sys.modules    # found, not imported
    assert im._sandbox_env({}) == {"PYTHONPATH": "/root"}
    assert im._sandbox_env({"PYTHONPATH": "/x"}) == {"PYTHONPATH": "/x:/root"}
    cp = skiff.Image.debian_slim().add_local_python_source("pkg", "single", copy=True)
    a, b, env = steps(cp)
    assert (a["op"], a["target"], b["target"]) == ("copy", "/root/pkg", "/root/single.py")
    # __pycache__ is left out by default.
    assert a["content_hash"] == F.content_hash(
        str(tree / "pkg"), F.Ignore(["**/__pycache__", "**/*.pyc"]))
    assert env["op"] == "env" and env["vars"] == {"PYTHONPATH": "/root"}
    with pytest.raises(InvalidError, match="no module named"):
        skiff.Image.debian_slim().add_local_python_source("no_such_module_xyz")
    with pytest.raises(InvalidError, match="top-level"):
        skiff.Image.debian_slim().add_local_python_source("pkg.mod")


def test_in_a_container_local_paths_are_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKIFF_CONTAINER_ID", "ct-x")
    im = (skiff.Image.debian_slim().add_local_dir("/no/such/dir", "/app", copy=True)
          .add_local_python_source("no_such_module_xyz"))
    assert steps(im)[0]["content_hash"] is None
    assert skiff.Image.from_registry("/no/such/layout")._spec["base"] == "oci"


# -- bases ---------------------------------------------------------------------------


def test_from_registry(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text("{}")
    assert skiff.Image.from_registry(str(layout))._spec == {"base": "oci", "path": str(layout)}
    tar = tmp_path / "img.tar"
    tar.write_bytes(b"")
    assert skiff.Image.from_registry(str(tar))._spec == {"base": "oci", "path": str(tar)}
    with pytest.raises(InvalidError) as e:
        skiff.Image.from_registry("python:3.12-slim")
    msg = str(e.value)
    assert "network" in msg and "docker save" in msg and "skopeo copy" in msg
    with pytest.raises(InvalidError, match="add_python"):
        skiff.Image.from_registry(str(layout), add_python="3.11")
    assert skiff.Image.from_scratch()._spec == {"base": "scratch"}
    setup = skiff.Image.from_registry(str(layout), setup_dockerfile_commands=[
        "RUN apt-get update", "ENV A=1"], force_build=True)
    assert [(x["op"], x["force"]) for x in steps(setup)] == [("run", True), ("env", False)]
    with pytest.raises(InvalidError, match="setup_dockerfile_commands line 2: EXPOSE"):
        skiff.Image.from_registry(str(layout), setup_dockerfile_commands=["RUN x", "EXPOSE 1"])


DOCKERFILE = r"""# syntax=docker/dockerfile:1
ARG BASE=bookworm
FROM debian:${BASE}-slim AS build
ARG VERSION=1.0
ARG WHO
# comments inside are fine
ENV APP_HOME=/srv/app \
    GREETING="hello world" LEVEL=$VERSION
ENV PLAIN value with spaces
WORKDIR $APP_HOME
RUN apt-get update && \
    # a comment inside a continuation
    apt-get install -y jq
RUN ["echo", "exec form", "$VERSION"]
COPY app.py ./
COPY --link data /data
ADD conf/settings.ini /etc/settings.ini
USER nobody
ENTRYPOINT ["python3", "app.py"]
CMD --serve
"""


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "data" / "cache").mkdir(parents=True)
    (ctx / "conf").mkdir()
    (ctx / "app.py").write_text("print(1)\n")
    (ctx / "data" / "a.txt").write_text("a\n")
    (ctx / "data" / "cache" / "big.bin").write_bytes(b"x" * 10)
    (ctx / "conf" / "settings.ini").write_text("[x]\n")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    return ctx


def test_from_dockerfile_every_instruction(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    im = skiff.Image.from_dockerfile(ctx / "Dockerfile", build_args={"VERSION": "2.5"})
    s = steps(im)
    assert im._spec["base"] == "debian_slim" and im._spec["python_version"] is None
    assert [x["op"] for x in s] == ["env", "env", "workdir", "run", "run", "copy", "copy",
                                    "copy", "user", "entrypoint", "cmd"]
    assert s[0]["vars"] == {"APP_HOME": "/srv/app", "GREETING": "hello world", "LEVEL": "2.5"}
    assert s[1]["vars"] == {"PLAIN": "value with spaces"}
    assert s[2]["path"] == "/srv/app"
    assert s[3]["commands"] == ["apt-get update && apt-get install -y jq"]
    assert s[3]["env"] == {"VERSION": "2.5", "WHO": ""}      # ARGs reach RUN as env
    assert s[4]["commands"] == ["echo 'exec form' '$VERSION'"]
    assert (s[5]["source"], s[5]["target"]) == (str(ctx / "app.py"), "/srv/app/app.py")
    assert (s[6]["source"], s[6]["target"]) == (str(ctx / "data"), "/data")
    assert s[6]["content_hash"] == F.content_hash(str(ctx / "data"))
    assert (s[7]["source"], s[7]["target"]) == (str(ctx / "conf" / "settings.ini"),
                                                "/etc/settings.ini")
    assert s[8]["user"] == "nobody"
    assert s[9]["argv"] == ["python3", "app.py"]
    assert s[10]["argv"] == ["/bin/sh", "-c", "--serve"]
    # Defaults without build_args; a FROM that uses a global ARG.
    s2 = steps(skiff.Image.from_dockerfile(ctx / "Dockerfile"))
    assert s2[0]["vars"]["LEVEL"] == "1.0"


def test_dockerignore_and_context_dir(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    (ctx / ".dockerignore").write_text("data/cache\n")
    elsewhere = tmp_path / "df"
    elsewhere.mkdir()
    (elsewhere / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY data /data\n")
    (st,) = steps(skiff.Image.from_dockerfile(elsewhere / "Dockerfile", context_dir=ctx))
    assert st["content_hash"] == F.content_hash(str(ctx / "data"), F.Ignore(["cache"]))
    assert st["source"] == F.staging_dir(st["content_hash"])


@pytest.mark.parametrize("text,line,words", [
    ("FROM debian:bookworm\nRUN true\n\nEXPOSE 80\n", 4, ["EXPOSE"]),
    ("FROM debian:12\nLABEL a=b\n", 2, ["LABEL"]),
    ("FROM debian:12\nHEALTHCHECK CMD true\n", 2, ["HEALTHCHECK"]),
    ("FROM ubuntu:22.04\n", 1, ["ubuntu:22.04"]),
    ("FROM ./my-layout\n", 1, ["./my-layout"]),
    ("FROM debian:12\nCOPY --chown=1:1 a /a\n", 2, ["--chown"]),
    ("FROM debian:12\nCOPY --from=build /x /x\n", 2, ["--from"]),
    ("FROM debian:12\nADD https://e.com/x /x\n", 2, ["URL"]),
    ("FROM debian:12\nCOPY missing.txt /x\n", 2, ["missing.txt"]),
    ("FROM debian:12\nCOPY ../outside /x\n", 2, ["../outside"]),
    ("FROM debian:12\nFROM debian:12\n", 2, ["multi-stage"]),
    ("RUN true\n", 1, ["before FROM"]),
    ("FROM debian:12\nRUN <<EOF\necho\nEOF\n", 2, ["heredoc"]),
    ("FROM debian:12\nFROBNICATE x\n", 2, ["FROBNICATE"]),
    ("# just a comment\n", 0, ["no FROM"]),
])
def test_dockerfile_errors(tmp_path: Path, text: str, line: int, words: list[str]) -> None:
    (tmp_path / "outside").write_text("x")
    ctx = tmp_path / "c"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(text)
    with pytest.raises(InvalidError) as e:
        skiff.Image.from_dockerfile(ctx / "Dockerfile")
    msg = str(e.value)
    if line:
        assert f"Dockerfile line {line}:" in msg, msg
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize("ref,base", [("debian:bookworm", "debian_slim"),
                                      ("debian:bookworm-slim", "debian_slim"),
                                      ("debian:12.5-slim", "debian_slim"),
                                      ("python:3.11-slim-bookworm", "debian_slim"),
                                      ("scratch", "scratch")])
def test_dockerfile_known_bases(tmp_path: Path, ref: str, base: str) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {ref}\n")
    im = skiff.Image.from_dockerfile(tmp_path / "Dockerfile", force_build=False)
    assert im._spec["base"] == base and "steps" not in im._spec


def test_dockerfile_force_build_forces_the_first_step(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM debian:12\nRUN a\nRUN b\n")
    s = steps(skiff.Image.from_dockerfile(tmp_path / "Dockerfile", force_build=True))
    assert [x["force"] for x in s] == [True, False]


# -- registration and sandboxes ------------------------------------------------------

mounted_image = skiff.Image.debian_slim().add_local_dir(HERE, "/data/tests")
mount_app = skiff.App("fake-mounts")


@mount_app.function(image=mounted_image)
def uses_mount() -> int:
    return 1


def test_mounts_go_into_the_function_registration(fake: Any) -> None:
    with mount_app.run(show_logs=False):
        pass
    (r,) = [r for r in fake.registrations if r["name"] == "uses_mount"]
    assert r["mounts"] == [{"source": HERE, "target": "/data/tests", "readonly": True}]


def test_mounts_go_into_the_sandbox_body(tree: Path) -> None:
    class Rec:
        body: Any = None

        def stream_ndjson(self, method: str, path: str, body: Any) -> Iterator[dict[str, Any]]:
            yield {"image_id": "im-x", "cached": True}

        def request(self, method: str, path: str, body: Any = None) -> Any:
            assert (method, path) == ("POST", "/v1/sandboxes")
            Rec.body = body
            return {"sandbox_id": "sb-1"}

    im = skiff.Image.debian_slim().add_local_dir(tree, "/app")
    skiff.Sandbox.create("true", image=im, client=Rec())  # type: ignore[arg-type]
    assert Rec.body["mounts"] == [{"source": str(tree), "target": "/app", "readonly": True}]
    skiff.Sandbox.create("true", client=Rec())  # type: ignore[arg-type]
    assert "mounts" not in Rec.body


# -- run_function and _build_fn ---------------------------------------------------


def test_run_function_step_and_build_fn(tmp_path: Path) -> None:
    mod = tmp_path / "bfmod.py"
    mod.write_text(textwrap.dedent("""
        import os

        def setup(path, text, upper=False):
            with open(path, "w") as f:
                f.write(text.upper() if upper else text)

        async def asetup(path):
            with open(path, "w") as f:
                f.write("async")

        def boom():
            raise RuntimeError("model download failed")
    """))
    sys.path.insert(0, str(tmp_path))
    try:
        import bfmod  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    out = tmp_path / "out.txt"
    im = skiff.Image.debian_slim().run_function(bfmod.setup, args=(str(out), "hi"),
                                                kwargs={"upper": True})
    (st,) = steps(im)
    assert st["label"] == "run_function setup"
    assert st["mounts"][:2] == [{"source": SDK, "target": "/skiff/sdk"},
                                {"source": str(tmp_path), "target": "/skiff/app"}]
    assert st["env"]["PYTHONPATH"] == "/skiff/sdk:/skiff/app:/skiff/extra"
    (cmd,) = st["commands"]
    assert cmd.startswith("python3 -m skiff._build_fn ")
    doc = json.loads(base64.b64decode(cmd.split()[-1]))
    assert (doc["module"], doc["file"], doc["qualname"]) == ("bfmod", "/skiff/app/bfmod.py",
                                                            "setup")
    # The hash follows the arguments and the module's source.
    same = skiff.Image.debian_slim().run_function(bfmod.setup, args=(str(out), "hi"),
                                                  kwargs={"upper": True})
    other = skiff.Image.debian_slim().run_function(bfmod.setup, args=(str(out), "ho"))
    assert steps(same)[0]["content_hash"] == st["content_hash"]
    assert steps(other)[0]["content_hash"] != st["content_hash"]

    def build_fn(qualname: str, args: tuple[Any, ...], kwargs: dict[str, Any]
                 ) -> subprocess.CompletedProcess[str]:
        payload, _ = skiff.image.run_function_payload("bfmod", str(mod), qualname, args, kwargs)
        env = dict(os.environ, PYTHONPATH=SDK)
        return subprocess.run([sys.executable, "-m", "skiff._build_fn", payload], env=env,
                              capture_output=True, text=True, timeout=60)

    p = build_fn("setup", (str(out), "hi"), {"upper": True})
    assert p.returncode == 0, p.stderr
    assert out.read_text() == "HI"
    p = build_fn("asetup", (str(out),), {})
    assert p.returncode == 0, p.stderr
    assert out.read_text() == "async"
    p = build_fn("boom", (), {})
    assert p.returncode == 1
    assert "RuntimeError: model download failed" in p.stderr and "Traceback" in p.stderr

    def local_fn() -> None:
        pass
    with pytest.raises(InvalidError, match="module level"):
        skiff.Image.debian_slim().run_function(local_fn)


# -- progress --------------------------------------------------------------------------


class _Stream:
    def __init__(self, msgs: list[dict[str, Any]]) -> None:
        self.msgs = msgs
        self.body: Any = None

    def stream_ndjson(self, method: str, path: str, body: Any) -> Iterator[dict[str, Any]]:
        self.body = body
        yield from self.msgs


MSGS = [{"progress": "=> [1/2] apt_install jq", "step": 1, "cached": True},
        {"progress": "=> [2/2] run_commands make", "step": 2, "cached": False},
        {"progress": "cc -o x x.c", "step": 2},
        {"progress": "done", "step": 2},
        {"image_id": "im-abc", "cached": False}]


def test_plain_progress() -> None:
    out = io.StringIO()
    assert build_spec(_Stream(MSGS), {"base": "scratch"}, out) == "im-abc"  # type: ignore
    lines = out.getvalue().splitlines()
    assert lines[0] == "skiff: image build: => [1/2] apt_install jq CACHED"
    assert lines[1] == "skiff: image build: => [2/2] run_commands make"
    assert lines[2:4] == ["skiff: image build: cc -o x x.c", "skiff: image build: done"]
    assert lines[4].startswith("skiff: image build: => [2/2] run_commands make done in ")
    assert lines[5].startswith("skiff: image build: built im-abc in ")


def test_tty_progress_keeps_one_line_per_step() -> None:
    out = io.StringIO()
    p = Progress(out, plain=False)
    for m in MSGS[:-1]:
        p.message(m)
    p.done("built im-abc in 1.0 s")
    text = out.getvalue()
    assert "\x1b[" in text                              # drawn in place
    final = text.split("\x1b[J")[-1]
    assert "=> [2/2] run_commands make " in final and final.rstrip().endswith("s")
    assert text.count("=> [1/2] apt_install jq CACHED\n") == 1


def test_failed_build_raises_the_servers_message() -> None:
    msgs = MSGS[:3] + [{"error": {"code": "build_failed",
                                  "message": "step 2 (run_commands make): `make` exited "
                                             "with 2; last lines: cc: error"}}]
    with pytest.raises(skiff.exception.Error) as e:
        build_spec(_Stream(msgs), {"base": "scratch"}, io.StringIO())  # type: ignore
    assert "image build failed: step 2 (run_commands make)" in str(e.value)
    assert "cc: error" in str(e.value)
