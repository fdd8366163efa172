"""Showing an image build's progress, and the ``POST /v1/images`` call itself.

The server streams ``{"progress": "=> [i/n] label", "step": i, "cached": b}``
when step i starts (or is found cached), then the step's output lines as
``{"progress": "...", "step": i}``; output of the base build comes without
``step``.  The last line is ``{"image_id", "cached"}`` or ``{"error"}``.

On a terminal the view is compact: each finished step stays as one line
(``CACHED`` or the seconds it took) and the running step shows as its header
plus its latest output line, redrawn in place.  Elsewhere (a pipe, a log
file, ``plain=True``) every message is one plain line prefixed
``skiff: image build: ``, so logs keep the whole output.
"""

from __future__ import annotations

import shutil
import time
from typing import Any, Optional, TextIO

from . import _client
from .exception import Error, from_code

PREFIX = "skiff: image build: "
_REDRAW_S = 0.05


class Progress:
    """Renders the build stream's messages on ``out``."""

    def __init__(self, out: TextIO, plain: Optional[bool] = None) -> None:
        self._out = out
        if plain is None:
            try:
                plain = not out.isatty()
            except (AttributeError, ValueError):
                plain = True
        self._tty = not plain
        self._live = 0              # lines of the live area now on screen
        self._step: Optional[str] = None
        self._t0 = 0.0
        self._last = ""
        self._drawn = 0.0
        self._held: list[str] = []  # cached steps, shown only once a step builds
        self.shown = False

    # -- messages ------------------------------------------------------------

    def message(self, msg: dict[str, Any]) -> None:
        text = str(msg.get("progress", "")).rstrip("\n")
        if "cached" in msg and msg.get("step") is not None:
            self._header(text, bool(msg["cached"]))
        else:
            self._output(text)

    def done(self, text: Optional[str]) -> None:
        """The build ended: settle the screen, then print ``text`` if any."""
        self._end_step()
        if text is not None:
            self._write(PREFIX + text + "\n")
        self._flush()

    # -- steps ---------------------------------------------------------------

    def _header(self, text: str, cached: bool) -> None:
        self._end_step()
        if cached:
            # A wholly cached image prints nothing (a second `skiff run` is quiet);
            # otherwise the cached steps show above the first one that builds.
            self._held.append(text)
            return
        for held in self._held:
            self._write((PREFIX if not self._tty else "") + f"{held} CACHED\n")
        self._held = []
        self._step, self._t0, self._last = text, time.monotonic(), ""
        if self._tty:
            self._redraw(force=True)
        else:
            self._write(PREFIX + text + "\n")
            self._flush()

    def _end_step(self) -> None:
        if self._tty:
            self._erase()
        if self._step is not None:
            took = time.monotonic() - self._t0
            if self._tty:
                self._write(f"{self._step} {took:.1f}s\n")
            else:
                self._write(PREFIX + f"{self._step} done in {took:.1f} s\n")
            self._step = None
        self._last = ""

    def _output(self, text: str) -> None:
        if not self._tty:
            for part in text.splitlines() or [""]:
                self._write(PREFIX + part + "\n")
            self._flush()
            return
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if lines:
            self._last = lines[-1]
        self._redraw()

    # -- the terminal --------------------------------------------------------

    def _redraw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < _REDRAW_S:
            return
        self._drawn = now
        width = max(shutil.get_terminal_size((80, 24)).columns - 1, 10)
        lines = []
        if self._step is not None:
            lines.append(f"{self._step} {now - self._t0:.1f}s"[:width])
        if self._last:
            shown = " ".join(self._last.split())
            lines.append(("    " if self._step is not None else PREFIX) + shown)
        lines = [ln[:width] for ln in lines]
        self._erase()
        if lines:
            self._write("\n".join(lines))
            self._live = len(lines)
        self._flush()

    def _erase(self) -> None:
        if self._live > 1:
            self._write(f"\x1b[{self._live - 1}A")
        if self._live:
            self._write("\r\x1b[J")
        self._live = 0

    def _write(self, s: str) -> None:
        self._out.write(s)
        self.shown = True

    def _flush(self) -> None:
        try:
            self._out.flush()
        except (OSError, ValueError):
            pass


def build_spec(client: _client.Client, spec: dict[str, Any], out: TextIO,
               plain: Optional[bool] = None) -> str:
    """Asks the server for the image of ``spec`` and shows the build; returns
    the image id.  A failed build raises the server's error (its message
    names the step, the command and the output's last lines)."""
    progress = Progress(out, plain)
    started = time.monotonic()
    try:
        for msg in client.stream_ndjson("POST", "/v1/images", spec):
            if "progress" in msg:
                progress.message(msg)
            elif "error" in msg:
                err = msg["error"]
                progress.done(None)
                text = str(err.get("message", ""))
                if not text.startswith("image build failed"):
                    text = "image build failed: " + text
                raise from_code(str(err.get("code", "internal")), text)
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
