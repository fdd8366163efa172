"""A running ephemeral app: what ``with app.run():`` (and ``skiff run``) holds.

Starting one: ``POST /v1/apps`` makes the app; its log stream is followed
from then on (so no line is missed); each function's image is built and the
function registered (``POST /v1/functions``), which hydrates the Function
objects (classes: see skiff.cls) -- a web endpoint's answer carries its
``web_url``, printed once all are registered; a heartbeat thread tells the server every 5 s that the client is
alive (the server stops an ephemeral app whose client goes quiet).

Stopping: ``POST /v1/apps/<id>/stop`` (unless detached), then a short wait
for the last log lines, and the functions forget their ids.  Stopping runs
on every way out of the ``with`` block: normal exit, exceptions, Ctrl-C.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, Optional, TextIO
from ._quote import quote

from . import _client, _logs, _register
from .exception import ConflictError, Error, NotFoundError

HEARTBEAT_S = 5.0
# Seconds to wait for the last log lines after the app stopped.
LOG_DRAIN_S = 3.0


def _say(msg: str) -> None:
    try:
        print(f"skiff: {msg}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


# How a run shows its web endpoints' URLs: "tty" (a person's terminal),
# "plain" (one parseable status line each), "json" (one JSON object per line
# on stdout), "none".
OUTPUTS = ("tty", "plain", "json", "none")


def default_output(show: bool = True) -> str:
    """"tty" when stderr is a terminal, else "plain"; "none" when not ``show``."""
    if not show:
        return "none"
    try:
        return "tty" if sys.stderr.isatty() else "plain"
    except (AttributeError, ValueError):
        return "plain"


def web_endpoints(app: Any) -> list[tuple[str, str]]:
    """(function name, URL) of the app's web endpoints that have their URL."""
    return [(name, fn._web_url) for name, fn in app.registered_functions.items()
            if getattr(fn, "_web_url", None)]


def format_web_endpoint(name: str, url: str, output: str) -> str:
    """The line that announces one web endpoint (without its newline)."""
    if output == "json":
        return json.dumps({"event": "web_function", "function": name, "url": url})
    if output == "tty":
        return f"\u2713 Created web function {name} => {url}"
    return f"skiff: web function {name} => {url}"


def announce_web(app: Any, output: str, out: Optional[TextIO] = None,
                 err: Optional[TextIO] = None) -> None:
    """Prints the URL of each web endpoint of the running app: JSON on
    stdout, the other forms on stderr (where status lines go)."""
    if output == "none":
        return
    f = (out or sys.stdout) if output == "json" else (err or sys.stderr)
    try:
        for name, url in web_endpoints(app):
            try:
                f.write(format_web_endpoint(name, url, output) + "\n")
            except UnicodeEncodeError:  # a terminal without UTF-8: no check mark
                f.write(format_web_endpoint(name, url, "plain") + "\n")
        f.flush()
    except (OSError, ValueError):
        pass


class RunningApp:
    """One run of an App on a server (made by ``App.run``)."""

    def __init__(self, app: Any, client: _client.Client, app_id: str, detach: bool) -> None:
        self.app = app
        self.client = client
        self.app_id = app_id
        self.detach = detach
        self.printer = _logs.LogPrinter()
        self._stop = threading.Event()
        self._logs: Optional[threading.Thread] = None
        self._heartbeat: Optional[threading.Thread] = None
        self._path = f"/v1/apps/{quote(app_id, safe='')}"

    @classmethod
    def start(cls, app: Any, client: _client.Client, name: str, detach: bool,
              show_logs: bool = True, output: Optional[str] = None) -> "RunningApp":
        resp = client.request("POST", "/v1/apps",
                              {"name": name, "ephemeral": True, "detach": bool(detach)})
        running = cls(app, client, str(resp["app_id"]), detach)
        try:
            if show_logs:
                running._logs = _logs.follow(client, running.app_id, running.printer)
            if not detach:
                running._heartbeat = threading.Thread(
                    target=running._beat, name=f"skiff-heartbeat-{running.app_id}", daemon=True)
                running._heartbeat.start()
            running._register_all()
        except BaseException:
            running.stop()
            raise
        announce_web(app, output or default_output(show_logs))
        return running

    def _register_all(self) -> None:
        for name, fn in self.app.registered_functions.items():
            if getattr(fn.spec, "schedule", None) is not None:
                _say(f"{name} has a schedule ({fn.spec.schedule!r}); schedules run only in "
                     "deployed apps: `skiff deploy` to run it on its schedule")
            body = _register.registration(self.app_id, name, fn, self.app.image,
                                          self.app._secrets, self.client)
            resp = self.client.request("POST", "/v1/functions", body)
            url = resp.get("web_url")
            fn._hydrate_with(self.client, str(resp["function_id"]), str(url) if url else None)
        # Classes with parameters register each instance's pool at its first
        # call (skiff.cls); one without has a single pool, registered now so
        # that its min_containers start with the app.
        for c in self.app.registered_classes.values():
            if not c._declared:
                c._register_with(self.app_id, self.client, {})

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.client.request("POST", self._path + "/heartbeat", timeout=30)
            except (ConflictError, NotFoundError):
                if not self._stop.is_set():
                    _say(f"the app {self.app_id} was stopped on the server "
                         "(`skiff app stop`, or it missed its heartbeats)")
                return
            except Error:
                continue  # a hiccup: the next beat may get through

    def stop(self) -> None:
        """Stops the app (unless detached) and unhydrates its functions."""
        self._stop.set()
        try:
            if not self.detach:
                try:
                    self.client.request("POST", self._path + "/stop", timeout=30)
                except Error as e:
                    _say(f"stopping the app {self.app_id} failed: {e}")
                if self._logs is not None:
                    self._logs.join(LOG_DRAIN_S)
            self.printer.enabled = False
        finally:
            for fn in self.app.registered_functions.values():
                fn._dehydrate()
            for c in self.app.registered_classes.values():
                c._dehydrate()
