"""A running ephemeral app: what ``with app.run():`` (and ``skiff run``) holds.

Starting one: ``POST /v1/apps`` makes the app; its log stream is followed
from then on (so no line is missed); each function's image is built and the
function registered (``POST /v1/functions``), which hydrates the Function
objects (classes: see skiff.cls); a heartbeat thread tells the server every 5 s that the client is
alive (the server stops an ephemeral app whose client goes quiet).

Stopping: ``POST /v1/apps/<id>/stop`` (unless detached), then a short wait
for the last log lines, and the functions forget their ids.  Stopping runs
on every way out of the ``with`` block: normal exit, exceptions, Ctrl-C.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Optional
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
              show_logs: bool = True) -> "RunningApp":
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
        return running

    def _register_all(self) -> None:
        for name, fn in self.app.registered_functions.items():
            body = _register.registration(self.app_id, name, fn, self.app.image,
                                          self.app._secrets, self.client)
            resp = self.client.request("POST", "/v1/functions", body)
            fn._hydrate_with(self.client, str(resp["function_id"]))
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
