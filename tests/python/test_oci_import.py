"""skiff._oci_import: OCI layouts, OCI archives and docker-save tarballs made
here with the stdlib, flattened with whiteouts, and never written outside
their destination."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest

from skiff import _oci_import


def _layer(files: list[tuple[str, str, object]], gz: bool = True) -> bytes:
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w") as t:
        for name, kind, val in files:
            ti = tarfile.TarInfo(name)
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, str(val)
                t.addfile(ti)
            else:
                data = bytes(val)  # type: ignore[arg-type]
                ti.size, ti.mode = len(data), 0o755 if kind == "x" else 0o644
                t.addfile(ti, io.BytesIO(data))
    return gzip.compress(bio.getvalue()) if gz else bio.getvalue()


LAYER1 = [("etc", "dir", None), ("etc/a", "f", b"A"), ("etc/gone", "f", b"x"),
          ("opq", "dir", None), ("opq/old", "f", b"o"), ("link", "sym", "/etc"),
          ("esc", "sym", "/"), ("bin", "dir", None), ("bin/tool", "x", b"#!/bin/sh\n")]
LAYER2 = [("etc/.wh.gone", "f", b""), ("opq/.wh..wh..opq", "f", b""), ("opq/new", "f", b"n"),
          ("oci-marker", "f", b"marker"), ("link/viaLink", "f", b"v"),
          ("esc/escaped", "f", b"bad")]
CONFIG = {"architecture": "amd64", "os": "linux",
          "config": {"Env": ["A=1"], "WorkingDir": "/w", "Entrypoint": ["/bin/tool"],
                     "Cmd": ["x"], "User": "nobody"}}


def _blob(d: str, data: bytes) -> tuple[str, int]:
    h = hashlib.sha256(data).hexdigest()
    os.makedirs(f"{d}/blobs/sha256", exist_ok=True)
    with open(f"{d}/blobs/sha256/{h}", "wb") as f:
        f.write(data)
    return "sha256:" + h, len(data)


def make_layout(d: str) -> str:
    cd, cs = _blob(d, json.dumps(CONFIG).encode())
    layers = [_blob(d, _layer(LAYER1)), _blob(d, _layer(LAYER2))]
    man = {"schemaVersion": 2, "config": {"digest": cd, "size": cs},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": ld, "size": ls} for ld, ls in layers]}
    md, ms = _blob(d, json.dumps(man).encode())
    with open(f"{d}/index.json", "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{"digest": md, "size": ms}]}, f)
    with open(f"{d}/oci-layout", "w") as f:
        f.write('{"imageLayoutVersion": "1.0.0"}')
    return md


def make_docker_save(path: str) -> str:
    raw = json.dumps(CONFIG).encode()
    with tarfile.open(path, "w") as t:
        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        add("cfg.json", raw)
        add("l1/layer.tar", _layer(LAYER1, gz=False))
        add("l2/layer.tar", _layer(LAYER2, gz=False))
        add("manifest.json", json.dumps([{"Config": "cfg.json", "RepoTags": ["x:1"],
                                          "Layers": ["l1/layer.tar", "l2/layer.tar"]}]).encode())
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:
    rc = _oci_import.main(list(args))
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    return rc, (json.loads(lines[-1]) if rc == 0 else {}), out.err


def check_tree(root: str) -> None:
    assert open(f"{root}/etc/a").read() == "A"
    assert not os.path.exists(f"{root}/etc/gone"), "a whiteout did not delete"
    assert sorted(os.listdir(f"{root}/opq")) == ["new"], "an opaque dir kept lower entries"
    assert open(f"{root}/oci-marker").read() == "marker"
    # Writes through symlinks of earlier layers stay inside the image.
    assert open(f"{root}/etc/viaLink").read() == "v"
    assert open(f"{root}/escaped").read() == "bad"
    assert os.access(f"{root}/bin/tool", os.X_OK)


def test_oci_layout_folder(tmp_path, capsys) -> None:
    lay = str(tmp_path / "layout")
    digest = make_layout(lay)
    out = tmp_path / "root"
    out.mkdir()
    rc, j, err = run(capsys, lay, str(out))
    assert rc == 0, err
    assert j["digest"] == digest
    assert j["config"] == {"env": ["A=1"], "workdir": "/w", "entrypoint": ["/bin/tool"],
                           "cmd": ["x"], "user": "nobody"}
    check_tree(str(out))
    assert not os.path.exists("/escaped")
    rc, j, _ = run(capsys, "--digest", lay)
    assert rc == 0 and j == {"digest": digest}


def test_oci_archive(tmp_path, capsys) -> None:
    lay = str(tmp_path / "layout")
    digest = make_layout(lay)
    arch = str(tmp_path / "img.tar")
    with tarfile.open(arch, "w") as t:
        t.add(lay, arcname=".")
    out = tmp_path / "root"
    out.mkdir()
    rc, j, err = run(capsys, arch, str(out))
    assert rc == 0, err
    assert j["digest"] == digest
    check_tree(str(out))


def test_docker_save_archive(tmp_path, capsys) -> None:
    arch = str(tmp_path / "saved.tar")
    digest = make_docker_save(arch)
    out = tmp_path / "root"
    out.mkdir()
    rc, j, err = run(capsys, arch, str(out))
    assert rc == 0, err
    assert j["digest"] == digest and j["config"]["workdir"] == "/w"
    check_tree(str(out))


def test_errors_are_messages(tmp_path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = run(capsys, str(empty), str(tmp_path))
    assert rc == 1 and "no index.json or manifest.json" in err and "Traceback" not in err
    notar = tmp_path / "x.tar"
    notar.write_bytes(b"not a tar")
    rc, _, err = run(capsys, str(notar), str(tmp_path))
    assert rc == 1 and "is not an OCI layout folder or an image archive" in err


def test_dotdot_member_is_refused(tmp_path, capsys) -> None:
    lay = str(tmp_path / "layout")
    cd, cs = _blob(lay, json.dumps(CONFIG).encode())
    ld, ls = _blob(lay, _layer([("../outside", "f", b"x")]))
    man = {"schemaVersion": 2, "config": {"digest": cd, "size": cs},
           "layers": [{"digest": ld, "size": ls}]}
    md, ms = _blob(lay, json.dumps(man).encode())
    with open(f"{lay}/index.json", "w") as f:
        json.dump({"manifests": [{"digest": md, "size": ms}]}, f)
    out = tmp_path / "root"
    out.mkdir()
    rc, _, err = run(capsys, lay, str(out))
    assert rc == 1 and "leaves the image" in err
    assert not (tmp_path / "outside").exists()
