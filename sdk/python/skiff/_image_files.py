"""Local files for image steps: content hashes, ignore patterns, staging.

The server caches a layer by the hash of its parent and the step's JSON
(docs/api.md, "Image build steps and the layer cache"), and never looks into
the host paths a step names to decide whether the layer is current.  So the
SDK puts ``content_hash`` into every step that reads local files: a sha256
over the sorted (relative path, kind and mode bits, contents) of what the
step would see -- a symlink contributes its target's text, not what it
points at.  A changed byte or mode is a new hash, hence a new layer; a
touched-but-unchanged file is not.

Ignore patterns follow Modal's (which follow ``.dockerignore``): each pattern
is matched against the path relative to the copied directory, ``*`` and
``?`` stay within one path segment, ``**`` spans any number of segments, a
pattern that names a directory ignores everything under it, a leading ``!``
takes a path back in, and the last pattern that matches wins.  So ``*.pyc``
ignores only top-level files; ``**/*.pyc`` ignores them at any depth.  A
callable instead of a list is asked about each relative ``Path``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

from .exception import InvalidError

IgnoreSpec = Union[Sequence[str], Callable[[Path], bool], None]


class Ignore:
    """A compiled ignore spec; ``Ignore(None)`` ignores nothing."""

    def __init__(self, spec: IgnoreSpec, what: str = "ignore") -> None:
        self._fn: Optional[Callable[[Path], bool]] = None
        self._rules: list[tuple[bool, re.Pattern[str]]] = []
        if spec is None:
            return
        if callable(spec):
            self._fn = spec
            return
        if isinstance(spec, (str, bytes)) or not isinstance(spec, (list, tuple)):
            raise InvalidError(f"{what} must be a list of glob patterns (str) or a callable "
                               f"taking a Path, got {type(spec).__name__}")
        for pat in spec:
            if not isinstance(pat, str):
                raise InvalidError(f"{what}: {pat!r} is not a pattern (str)")
            pat = pat.strip()
            if not pat or pat.startswith("#"):
                continue
            negate = pat.startswith("!")
            body = pat[1:].strip() if negate else pat
            body = os.path.normpath(body).replace(os.sep, "/").lstrip("/")
            if body in ("", "."):
                continue
            self._rules.append((negate, re.compile(_glob_regex(body))))

    def __bool__(self) -> bool:
        return self._fn is not None or bool(self._rules)

    @property
    def has_negation(self) -> bool:
        return any(neg for neg, _ in self._rules)

    def ignored(self, rel: str) -> bool:
        """Whether the relative path ``rel`` (``/``-separated) is left out."""
        if self._fn is not None:
            return bool(self._fn(Path(rel)))
        out = False
        parts = rel.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        for negate, rx in self._rules:
            if any(rx.fullmatch(p) for p in prefixes):
                out = not negate
        return out


def _glob_regex(pat: str) -> str:
    out, i, n = [], 0, len(pat)
    while i < n:
        c = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pat.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
                i += 1
            else:
                cls = pat[i + 1:j].replace("\\", "\\\\")
                if cls.startswith("!"):
                    cls = "^" + cls[1:]
                out.append(f"[{cls}]")
                i = j + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(pat[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def walk(root: str, ignore: Optional[Ignore] = None) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything under directory ``root`` that
    ``ignore`` keeps, sorted by path; directories come before their contents."""
    ig = ignore if ignore else None
    prune = ig is not None and not ig.has_negation
    entries: list[tuple[str, os.stat_result]] = []

    def visit(abs_dir: str, rel_dir: str) -> None:
        try:
            names = sorted(os.listdir(abs_dir))
        except OSError as e:
            raise InvalidError(f"cannot read directory {abs_dir}: {e.strerror}") from None
        for name in names:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            st = os.lstat(os.path.join(abs_dir, name))
            skip = ig is not None and ig.ignored(rel)
            if stat.S_ISDIR(st.st_mode):
                if skip and prune:
                    continue
                if not skip:
                    entries.append((rel, st))
                visit(os.path.join(abs_dir, name), rel)
            elif not skip:
                entries.append((rel, st))

    visit(root, "")
    entries.sort(key=lambda e: e[0])
    return iter(entries)


def _hash_entry(h: Any, rel: str, path: str, st: os.stat_result) -> None:
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        kind, data = "l", os.readlink(path).encode("utf-8", "surrogateescape")
    elif stat.S_ISDIR(st.st_mode):
        kind, data = "d", b""
    elif stat.S_ISREG(st.st_mode):
        kind, data = "f", b""
    else:
        return  # sockets, fifos, devices: not copied, not hashed
    h.update(f"{rel}\0{kind}{mode:o}\0".encode("utf-8", "surrogateescape"))
    if kind == "f":
        h.update(f"{st.st_size}\0".encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    else:
        h.update(f"{len(data)}\0".encode() + data)


def content_hash(path: str, ignore: Optional[Ignore] = None) -> str:
    """The sha256 hex of a file or directory tree (docs/api.md's content_hash)."""
    h = hashlib.sha256()
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        h.update(b"dir\0")
        for rel, est in walk(path, ignore):
            _hash_entry(h, rel, os.path.join(path, rel), est)
    else:
        h.update(b"file\0")
        _hash_entry(h, "", path, os.stat(path))
    return h.hexdigest()


def hash_many(paths: Sequence[str]) -> str:
    """One hash over several trees (a run step's mounts), in the order given."""
    h = hashlib.sha256()
    for p in paths:
        h.update(content_hash(p).encode() + b"\n")
    return h.hexdigest()


def ignores_something(root: str, ignore: Ignore) -> bool:
    """Whether ``ignore`` leaves anything under ``root`` out."""
    if not ignore:
        return False
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        for name in dirnames + filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if ignore.ignored(rel):
                return True
    return False


def staging_dir(digest: str) -> str:
    """Where a filtered copy of a directory (``copy=True`` with ``ignore``)
    waits for the server while an image builds.  The path depends only on the
    content hash, because the server's layer id covers the step's ``source``."""
    base = os.path.join(tempfile.gettempdir(), f"skiff-build-{os.getuid()}")
    return os.path.join(base, digest)


def stage(root: str, ignore: Ignore, dest: str) -> None:
    """Fills ``dest`` with the files of ``root`` that ``ignore`` keeps
    (hard links where it can, else copies; modes kept)."""
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    os.makedirs(dest, mode=0o700)
    os.chmod(os.path.dirname(dest), 0o711)
    for rel, st in walk(root, ignore):
        src, dst = os.path.join(root, rel), os.path.join(dest, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if stat.S_ISDIR(st.st_mode):
            os.makedirs(dst, exist_ok=True)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISREG(st.st_mode):
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
    for rel, st in walk(root, ignore):
        if stat.S_ISDIR(st.st_mode):
            os.chmod(os.path.join(dest, rel), stat.S_IMODE(st.st_mode))
    os.chmod(dest, stat.S_IMODE(os.stat(root).st_mode))
