"""The app's container output on the local terminal, as ``skiff run`` shows it.

``GET /v1/apps/<id>/logs?follow=1`` streams one JSON object per line of
container output; each is printed as ``[function] text`` on stdout or stderr
(the stream the container wrote to).  While only one container of a function
has printed, its lines carry the function's name alone; once a second one
prints, lines also carry a short container id (``[square ct-1a2b]``) so that
the two can be told apart.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable, Optional, TextIO

from . import _client


def short_container_id(container_id: str) -> str:
    """``ct-1a2b`` for ``ct-1a2b3c4d...``."""
    if container_id.startswith("ct-"):
        return container_id[:7]
    return container_id[:8]


class LogPrinter:
    """Formats and prints log records; remembers which containers printed."""

    def __init__(self, out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> None:
        self._out = out
        self._err = err
        self._containers: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self.enabled = True

    def label(self, function: str, container: str) -> str:
        seen = self._containers.setdefault(function, [])
        if container and container not in seen:
            seen.append(container)
        if len(seen) > 1 and container:
            return f"{function} {short_container_id(container)}"
        return function

    def format(self, rec: dict[str, Any]) -> tuple[str, str]:
        """(stream, text to print) for one record: stream is "stdout" or "stderr"."""
        function = str(rec.get("function") or "app")
        container = str(rec.get("container") or "")
        stream = "stderr" if rec.get("stream") == "stderr" else "stdout"
        text = str(rec.get("text", ""))
        prefix = f"[{self.label(function, container)}] "
        lines = text.splitlines() or [""]
        return stream, "".join(prefix + line + "\n" for line in lines)

    def write(self, rec: dict[str, Any]) -> None:
        with self._lock:
            if not self.enabled:
                return
            stream, text = self.format(rec)
            f = (self._err or sys.stderr) if stream == "stderr" else (self._out or sys.stdout)
            try:
                f.write(text)
                f.flush()
            except (OSError, ValueError):  # a closed terminal or pipe
                self.enabled = False


def follow(client: _client.Client, app_id: str, printer: LogPrinter,
           on_error: Optional[Callable[[BaseException], None]] = None) -> threading.Thread:
    """Starts a daemon thread printing the app's logs until the app stops."""

    def run() -> None:
        try:
            for rec in client.stream_ndjson("GET", f"/v1/apps/{app_id}/logs?follow=1"):
                if isinstance(rec, dict):
                    printer.write(rec)
        except Exception as e:
            if on_error is not None:
                on_error(e)

    t = threading.Thread(target=run, name=f"skiff-logs-{app_id}", daemon=True)
    t.start()
    return t
