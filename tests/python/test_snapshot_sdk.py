"""SDK side of memory snapshots (issue 8): the option reaches the
registration, snap and non-snap @enter hooks are told apart, and the
template's check of what a fork cannot inherit (threads, sockets) speaks up.
The forks themselves are tested end to end (tests/e2e/test_snapshot.py)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import skiff
from skiff import _container_cls
from skiff import _snapshot
from skiff import partial_function as pf
from skiff._options import function_spec, with_overrides

app = skiff.App("t-snap-sdk")


@app.cls(enable_memory_snapshot=True)
class Snappy:
    @skiff.enter()
    def late(self) -> None:
        self.order = getattr(self, "order", []) + ["late"]

    @skiff.enter(snap=True)
    def early(self) -> None:
        self.order = getattr(self, "order", []) + ["early"]

    @skiff.method()
    def get(self) -> list[str]:
        return self.order


@app.function(enable_memory_snapshot=True)
def snapped_fn() -> int:
    return 1


@app.function()
def plain_fn() -> int:
    return 1


def test_option_reaches_the_registration(fake: Any) -> None:
    with app.run(show_logs=False):
        pass
    regs = {r["name"]: r for r in fake.registrations}
    assert regs["snapped_fn"]["enable_memory_snapshot"] is True
    assert regs["Snappy"]["enable_memory_snapshot"] is True
    assert regs["plain_fn"]["enable_memory_snapshot"] is False


def test_option_is_kept_by_with_overrides() -> None:
    spec = function_spec(enable_memory_snapshot=True)
    assert with_overrides(spec, memory=256).enable_memory_snapshot is True
    assert function_spec().enable_memory_snapshot is False


def test_hooks_split_by_snap() -> None:
    assert pf.hooks(Snappy._skiff_user_cls, "enter") == ["early", "late"]
    assert pf.hooks(Snappy._skiff_user_cls, "enter", snap=True) == ["early"]
    assert pf.hooks(Snappy._skiff_user_cls, "enter", snap=False) == ["late"]


def test_template_runs_snap_hooks_and_the_fork_the_others() -> None:
    """What a template does (instance + snap hooks), then what a fork does
    with that instance (only the snap=False hooks)."""
    user_cls = Snappy._skiff_user_cls
    init = {"cls": {"qualname": "Snappy"}, "timeout": 10}
    obj = _container_cls.instance(user_cls, init)
    _container_cls.snap_enter(obj, init)
    assert obj.order == ["early"]

    class FakeConn:
        pass

    from skiff import _container as C
    rt, same = _container_cls.make(C._Runtime, FakeConn(), user_cls, init, obj)
    assert same is obj and obj.order == ["early", "late"]
    # Without a snapshot every hook runs, snap ones first.
    rt, fresh = _container_cls.make(C._Runtime, FakeConn(), user_cls, init)
    assert fresh.order == ["early", "late"]


def test_unsafe_state_names_threads_and_sockets() -> None:
    a, b = socket.socketpair()
    before = " ".join(_snapshot.unsafe_state(a.fileno()))
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="left-behind", daemon=True)
    t.start()
    c, d = socket.socketpair()
    try:
        text = " ".join(_snapshot.unsafe_state(a.fileno()))

        def count(words: str, what: str) -> int:
            return int(words.split(what)[0].split()[-1]) if what in words else 0

        # One thread more (named when it is among the first five), and two
        # sockets more: c and d (a is the one kept, the worker socket).
        assert count(text, " thread(s)") == count(before, " thread(s)") + 1, (before, text)
        assert "left-behind" in text or count(before, " thread(s)") >= 5, text
        assert count(text, " open socket") == count(before, " open socket") + 2, (before, text)
    finally:
        stop.set()
        t.join()
        for s in (a, b, c, d):
            s.close()
