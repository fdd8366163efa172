"""Imports an OCI image from disk into a root file system: the server runs
``python3 -m skiff._oci_import SRC DEST`` for ``Image.from_registry(path)``.

SRC is an OCI image layout directory (``oci-layout``, ``index.json``,
``blobs/``), an OCI archive (a tar of such a layout) or a ``docker save``
tarball (``manifest.json``).  The image's layers are applied in order into
DEST (an empty folder), with OCI whiteouts (``.wh.NAME`` deletes NAME,
``.wh..wh..opq`` empties its folder of what lower layers put there), giving
the flattened file system.  Writes never leave DEST: every path is resolved
inside it as in a chroot (symlinks of earlier layers included), and members
with ``..`` are refused.  Device nodes are skipped (containers get /dev from
the runtime).

Progress goes to stdout line by line; the last line is one JSON object:
``{"digest": "sha256:...", "config": {"env", "workdir", "entrypoint",
"cmd", "user"}}``.  ``--digest SRC`` prints only ``{"digest": ...}``.
Errors: a message on stderr and exit status 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import stat
import sys
import tarfile
from typing import IO, Any, Callable, Optional


class ImportError_(Exception):
    pass


# --- sources -------------------------------------------------------------------

class Source:
    """Blobs by digest and the files of a layout, from a folder or a tar."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.tar: Optional[tarfile.TarFile] = None
        self.names: dict[str, tarfile.TarInfo] = {}
        if os.path.isdir(path):
            return
        try:
            self.tar = tarfile.open(path, "r:*")
        except (tarfile.TarError, OSError) as e:
            raise ImportError_(f"{path} is not an OCI layout folder or an image archive "
                               f"(.tar): {e}") from None
        for m in self.tar.getmembers():
            self.names[m.name.lstrip("./")] = m

    def has(self, name: str) -> bool:
        if self.tar is None:
            return os.path.isfile(os.path.join(self.path, name))
        return name in self.names

    def open(self, name: str) -> IO[bytes]:
        if self.tar is None:
            return open(os.path.join(self.path, name), "rb")
        m = self.names.get(name)
        f = self.tar.extractfile(m) if m is not None else None
        if f is None:
            raise ImportError_(f"{self.path} has no {name}")
        return f

    def json(self, name: str) -> Any:
        with self.open(name) as f:
            return json.load(f)

    def blob_name(self, digest: str) -> str:
        alg, _, hexd = digest.partition(":")
        if not hexd or "/" in hexd or "/" in alg:
            raise ImportError_(f"bad digest {digest!r}")
        return f"blobs/{alg}/{hexd}"


def pick_manifest(src: Source, index: Any) -> tuple[str, Any]:
    """The image manifest (digest, JSON) an index points at (linux/amd64 when several)."""
    for _ in range(4):
        mans = index.get("manifests") or []
        if not mans:
            raise ImportError_("the image index lists no manifests")
        if len(mans) > 1:
            amd = [m for m in mans if (m.get("platform") or {}).get("architecture") == "amd64"
                   and (m.get("platform") or {}).get("os", "linux") == "linux"]
            if not amd:
                plats = ", ".join(f"{(m.get('platform') or {}).get('os')}/"
                                  f"{(m.get('platform') or {}).get('architecture')}" for m in mans)
                raise ImportError_(f"no linux/amd64 image in the index (it has {plats})")
            mans = amd
        desc = mans[0]
        doc = src.json(src.blob_name(desc["digest"]))
        if "manifests" in doc:       # a nested index
            index = doc
            continue
        return desc["digest"], doc
    raise ImportError_("image indexes nest too deeply")


def read_image(src: Source) -> tuple[str, Any, list[Callable[[], IO[bytes]]], list[str]]:
    """(digest, config JSON, layer openers, layer names)."""
    if src.has("index.json"):
        digest, man = pick_manifest(src, src.json("index.json"))
        cfg = src.json(src.blob_name(man["config"]["digest"]))
        layers = [(lambda d=layer["digest"]: src.open(src.blob_name(d)))
                  for layer in man.get("layers", [])]
        names = [layer["digest"] for layer in man.get("layers", [])]
        for layer in man.get("layers", []):
            mt = layer.get("mediaType", "")
            if "zstd" in mt:
                raise ImportError_("zstd-compressed layers are not supported "
                                   "(re-save the image with gzip layers)")
        return digest, cfg, layers, names
    if src.has("manifest.json"):
        man = src.json("manifest.json")
        if not isinstance(man, list) or not man:
            raise ImportError_("manifest.json lists no image")
        if len(man) > 1:
            raise ImportError_("the archive holds several images: `docker save` one only")
        entry = man[0]
        with src.open(entry["Config"]) as f:
            raw = f.read()
        cfg = json.loads(raw)
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        layers = [(lambda n=n: src.open(n)) for n in entry.get("Layers", [])]
        return digest, cfg, layers, list(entry.get("Layers", []))
    raise ImportError_(f"{src.path} is not an OCI layout, OCI archive or docker save archive "
                       "(no index.json or manifest.json)")


def config_of(cfg: Any) -> dict[str, Any]:
    c = (cfg or {}).get("config") or {}
    return {"env": list(c.get("Env") or []), "workdir": c.get("WorkingDir") or None,
            "entrypoint": c.get("Entrypoint") or None, "cmd": c.get("Cmd") or None,
            "user": c.get("User") or None}


# --- applying layers -------------------------------------------------------------

def clean(name: str) -> Optional[str]:
    """The member's path relative to the root, or None for the root itself."""
    parts = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            raise ImportError_(f"a layer entry leaves the image: {name!r}")
        parts.append(p)
    return "/".join(parts) or None


def resolve(root: str, rel: str, follow_last: bool = False) -> str:
    """rel's host path inside root, symlinks of its parents (and of rel itself
    with follow_last) resolved as in a chroot: nothing leads out of root."""
    todo = rel.split("/")
    stack: list[str] = []
    hops = 0
    while todo:
        p = todo.pop(0)
        if p in ("", "."):
            continue
        if p == "..":
            if stack:
                stack.pop()
            continue
        host = os.path.join(root, *stack, p)
        if (todo or follow_last) and os.path.islink(host):
            hops += 1
            if hops > 40:
                raise ImportError_(f"too many symlinks resolving {rel!r}")
            target = os.readlink(host)
            if target.startswith("/"):
                stack = []
            todo = target.split("/") + todo
            continue
        stack.append(p)
    return os.path.join(root, *stack)


def remove(path: str) -> None:
    if os.path.islink(path) or not os.path.isdir(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    else:
        shutil.rmtree(path, ignore_errors=True)


def apply_layer(dest: str, fileobj: IO[bytes], warn: Callable[[str], None]) -> int:
    count = 0
    with tarfile.open(fileobj=fileobj, mode="r|*") as tf:
        members = []
        # One pass: whiteouts first apply to lower layers, so they are done as
        # found; entries of this layer are collected and written after.
        for m in tf:
            rel = clean(m.name)
            if rel is None:
                continue
            base = posixpath.basename(rel)
            parent = posixpath.dirname(rel)
            if base == ".wh..wh..opq":
                d = resolve(dest, parent, follow_last=True) if parent else dest
                if os.path.isdir(d):
                    for x in os.listdir(d):
                        remove(os.path.join(d, x))
                continue
            if base.startswith(".wh."):
                victim = posixpath.join(parent, base[4:]) if parent else base[4:]
                remove(resolve(dest, victim))
                continue
            data = tf.extractfile(m).read() if m.isreg() else None  # type: ignore[union-attr]
            members.append((rel, m, data))
        for rel, m, data in members:
            count += 1
            path = resolve(dest, rel)
            parent = os.path.dirname(path)
            os.makedirs(parent, exist_ok=True)
            if m.isdir():
                if os.path.lexists(path) and not os.path.isdir(path):
                    remove(path)
                os.makedirs(path, exist_ok=True)
                os.chmod(path, m.mode & 0o7777)
                os.lchown(path, m.uid, m.gid)
                continue
            if os.path.lexists(path):
                remove(path)
            if m.isreg():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data or b"")
                os.lchown(path, m.uid, m.gid)
                os.chmod(path, m.mode & 0o7777)
            elif m.issym():
                os.symlink(m.linkname, path)
                os.lchown(path, m.uid, m.gid)
            elif m.islnk():
                lrel = clean(m.linkname)
                if lrel is None:
                    raise ImportError_(f"a hard link to the root: {m.name!r}")
                os.link(resolve(dest, lrel), path)
            elif m.isfifo():
                os.mkfifo(path, m.mode & 0o7777)
            else:
                warn(f"skipped device node /{rel}")
    return count


def main(argv: list[str]) -> int:
    only_digest = bool(argv) and argv[0] == "--digest"
    args = argv[1:] if only_digest else argv
    if len(args) != (1 if only_digest else 2):
        print("usage: python3 -m skiff._oci_import [--digest] SRC [DEST]", file=sys.stderr)
        return 2
    try:
        src = Source(args[0])
        digest, cfg, layers, names = read_image(src)
        if only_digest:
            print(json.dumps({"digest": digest}), flush=True)
            return 0
        dest = args[1]
        if not os.path.isdir(dest):
            raise ImportError_(f"{dest} is not a folder")
        for i, (op, name) in enumerate(zip(layers, names), 1):
            with op() as f:
                n = apply_layer(dest, f, lambda w: print(f"warning: {w}", flush=True))
            print(f"layer {i}/{len(layers)} {name[:19]}: {n} entries", flush=True)
        print(json.dumps({"digest": digest, "config": config_of(cfg)}), flush=True)
        return 0
    except ImportError_ as e:
        print(f"skiff: {e}", file=sys.stderr)
        return 1
    except (OSError, tarfile.TarError, KeyError, ValueError) as e:
        print(f"skiff: cannot import {args[0]}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
