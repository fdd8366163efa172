"""Container images, as in Modal: lazy specs, built on the server when first needed.

``Image.debian_slim()`` describes Debian bookworm with python3.  Nothing is
built when the object is made; the first call that needs the image (e.g.
``Sandbox.create``) asks the server (``POST /v1/images``), which answers from
its cache or builds it, streaming the build's output.  While it builds, the
output is shown on stderr: one updating line on a terminal, otherwise plain
lines prefixed ``skiff: image build: ``.  A cached image prints nothing.
"""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from typing import Any, Optional, Sequence, TextIO, Union

from . import _client
from .exception import Error, InvalidError, from_code

_PREFIX = "skiff: image build: "
# Debian policy 5.6.7; the server checks the same (and at most 256 names).
_APT_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_APT_NAME_MAX = 128


class _Progress:
    """Shows build output on a stream: compact on a terminal, plain lines otherwise."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        try:
            self._tty = out.isatty()
        except (AttributeError, ValueError):
            self._tty = False
        self._shown = False

    def line(self, text: str) -> None:
        text = text.rstrip("\n")
        if self._tty:
            width = shutil.get_terminal_size((80, 24)).columns
            shown = (_PREFIX + " ".join(text.split()))[: max(width - 1, 10)]
            self._out.write("\r\x1b[K" + shown)
        else:
            for part in text.splitlines() or [""]:
                self._out.write(_PREFIX + part + "\n")
        self._out.flush()
        self._shown = True

    def done(self, text: Optional[str]) -> None:
        if self._tty and self._shown:
            self._out.write("\r\x1b[K")
            self._shown = False
        if text is not None:
            self._out.write(_PREFIX + text + "\n")
        self._out.flush()


class Image:
    """A container image spec.  Build it explicitly with ``hydrate()``, or let
    the first use build it; the resulting id is kept on the object."""

    def __init__(self, spec: dict[str, Any]) -> None:
        # Users make images with the constructors (Image.debian_slim()).
        self._spec = dict(spec)
        self._image_id: Optional[str] = None
        self._lock = threading.Lock()

    @staticmethod
    def debian_slim(python_version: Optional[str] = None) -> "Image":
        """Debian bookworm with python3 (the server says which versions it has;
        bookworm's is 3.11)."""
        if python_version is not None and not isinstance(python_version, str):
            raise InvalidError(
                f"python_version must be a str like \"3.11\", got {type(python_version).__name__}")
        return Image({"base": "debian_slim", "python_version": python_version})

    def apt_install(self, *packages: Union[str, Sequence[str]]) -> "Image":
        """A new image: this one with Debian packages installed, as in Modal.

        Takes names and lists of names (``apt_install("jq", ["curl", "git"])``).
        The packages are added to the image's base build, so the set of
        packages (sorted, without duplicates) is part of the image's identity;
        a name Debian bookworm does not have fails the build with apt's message.
        """
        names = list(self._spec.get("apt_packages") or [])
        for p in packages:
            for name in ([p] if isinstance(p, str) else _name_list(p)):
                if len(name) > _APT_NAME_MAX or not _APT_NAME.fullmatch(name):
                    raise InvalidError(
                        f"invalid Debian package name {name!r} in apt_install: names are "
                        f"2-{_APT_NAME_MAX} characters of a-z, 0-9, '+', '-' and '.', "
                        "starting with a letter or digit")
                names.append(name)
        spec = dict(self._spec)
        if names:
            spec["apt_packages"] = sorted(set(names))
        return Image(spec)

    @property
    def object_id(self) -> Optional[str]:
        """The image id (``im-...``) once built, else None."""
        return self._image_id

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._spec.items()
                         if k != "base" and v is not None)
        built = f" {self._image_id}" if self._image_id else ""
        return f"<Image {self._spec.get('base')}({args}){built}>"

    def hydrate(self, client: Optional[_client.Client] = None) -> "Image":
        """Builds the image on the server (or finds it cached) and returns self."""
        self._build(client or _client.get_client())
        return self

    def _build(self, client: _client.Client, out: Optional[TextIO] = None) -> str:
        with self._lock:
            if self._image_id is None:
                self._image_id = _build_spec(client, self._spec, out or sys.stderr)
            return self._image_id


def _name_list(p: Any) -> list[str]:
    if not isinstance(p, (list, tuple)):
        raise InvalidError("apt_install takes package names (str) or lists of them, "
                           f"not {type(p).__name__}")
    for x in p:
        if not isinstance(x, str):
            raise InvalidError(f"apt_install: {x!r} in {p!r} is not a package name (str)")
    return list(p)


def _build_spec(client: _client.Client, spec: dict[str, Any], out: TextIO) -> str:
    progress = _Progress(out)
    started = time.monotonic()
    try:
        for msg in client.stream_ndjson("POST", "/v1/images", spec):
            if "progress" in msg:
                progress.line(str(msg["progress"]))
            elif "error" in msg:
                err = msg["error"]
                raise from_code(str(err.get("code", "internal")), str(err.get("message", "")))
            elif "image_id" in msg:
                image_id = str(msg["image_id"])
                if msg.get("cached"):
                    progress.done(None)
                else:
                    progress.done(f"built {image_id} in {time.monotonic() - started:.1f} s")
                return image_id
    except BaseException:
        progress.done(None)
        raise
    raise Error("the server's image build stream ended without a result; "
                "see the server's log (SKIFF_HOME/server.log)")
