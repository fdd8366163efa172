"""The container runtime's issue-4 parts in isolation (docs/protocol.md,
"Issue 4 additions"): several inputs at once (@concurrent), batches
(@batched), class pools (@app.cls: @enter, methods, @exit) and the `stop`
frame.  Same stand-in server as test_container.py."""

from __future__ import annotations

import base64
import json
import pickle
import signal
import time
from pathlib import Path
from typing import Any, Optional

import pytest

from test_container import Worker, records


@pytest.fixture
def worker(tmp_path: Path):
    started: list[Worker] = []

    def start(source: Optional[str], body: bytes = b"", **init: Any) -> Worker:
        w = Worker(tmp_path, source, init, body)
        started.append(w)
        return w

    yield start
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()
        for f in (w.proc.stdout, w.proc.stderr):
            if f:
                f.close()


def ready(w: Worker, n: int) -> None:
    assert w.recv()[0] == {"t": "ready"}
    assert w.recv()[0] == {"t": "want", "n": n}


def send(w: Worker, call: str, start: int, inputs: list[Any]) -> None:
    w.send({"t": "input", "call": call, "start": start, "count": len(inputs), "retry": 0},
           pickle.dumps(inputs))


def gather(w: Worker, chunks: int) -> tuple[dict[tuple[str, int], list[tuple[int, bytes]]],
                                             list[tuple[str, int, float]]]:
    """Reads frames until `chunks` chunks are done: the records by (call,
    idx) and the dones as (call, start, time)."""
    recs: dict[tuple[str, int], list[tuple[int, bytes]]] = {}
    dones: list[tuple[str, int, float]] = []
    while len(dones) < chunks:
        hdr, body = w.recv()
        if hdr["t"] == "output":
            got = records(body)
            assert len(got) == hdr["n"]
            for idx, status, payload in got:
                recs.setdefault((hdr["call"], idx), []).append((status, payload))
        elif hdr["t"] == "done":
            dones.append((hdr["call"], hdr["start"], time.monotonic()))
            assert w.recv()[0] == {"t": "want", "n": 1}
        else:
            raise AssertionError(f"unexpected frame {hdr}")
    return recs, dones


def value(recs: dict[tuple[str, int], list[tuple[int, bytes]]], call: str, idx: int) -> Any:
    (status, payload), *_ = recs[(call, idx)]
    assert status == 0, (status, payload[:300])
    return pickle.loads(payload)


def cls_init(qualname: str, **params: Any) -> dict[str, Any]:
    return {"qualname": qualname, "cls": {
        "qualname": qualname, "params": base64.b64encode(pickle.dumps(params)).decode()}}


# -- @concurrent -------------------------------------------------------------------

def test_concurrent_sync_inputs_run_at_once(worker) -> None:
    w = worker("""
        import os, threading, time, skiff
        def f(x):
            time.sleep(1)
            return x, os.getpid(), threading.get_ident(), skiff.current_input_id()
        """, max_inputs=5)
    ready(w, 5)
    t0 = time.monotonic()
    for k in range(5):
        send(w, f"fc-{k}", 10 * k, [((k,), {})])
    recs, dones = gather(w, 5)
    took = time.monotonic() - t0
    assert 0.9 < took < 1.8, took
    vals = [value(recs, f"fc-{k}", 10 * k) for k in range(5)]
    assert [v[0] for v in vals] == list(range(5))
    assert len({v[1] for v in vals}) == 1          # one process
    assert len({v[2] for v in vals}) == 5          # five threads
    assert [v[3] for v in vals] == [f"in-fc-{k}-{10 * k}" for k in range(5)]
    assert w.close() == 0


def test_concurrent_async_inputs_are_tasks_of_one_loop(worker) -> None:
    w = worker("""
        import asyncio, threading, skiff
        async def f(x):
            await asyncio.sleep(1)
            if x == 3:
                raise ValueError("three")
            return x, threading.get_ident(), skiff.current_input_id()
        """, max_inputs=4)
    ready(w, 4)
    t0 = time.monotonic()
    for k in range(4):
        send(w, "fc-a", k, [((k,), {})])
    recs, _ = gather(w, 4)
    assert time.monotonic() - t0 < 1.8
    vals = [value(recs, "fc-a", k) for k in range(3)]
    assert len({v[1] for v in vals}) == 1          # one event-loop thread
    assert [v[2] for v in vals] == [f"in-fc-a-{k}" for k in range(3)]
    (s1, p1), (s5, p5) = recs[("fc-a", 3)]
    assert (s1, s5) == (1, 5)
    assert pickle.loads(p1)["repr"] == "ValueError('three')"
    assert pickle.loads(p5) == [((3,), {})]
    assert w.close() == 0


def test_concurrent_chunks_keep_their_order_and_map_chunks(worker) -> None:
    w = worker("def f(x):\n    return x * 2\n", max_inputs=3)
    ready(w, 3)
    w.send({"t": "input", "call": "fc-m", "start": 0, "count": 4, "retry": 0},
           pickle.dumps(("skiff.args1", [1, 2, 3, 4])))
    send(w, "fc-m", 4, [((5,), {}), ((), {"x": 6})])
    recs, _ = gather(w, 2)
    assert [value(recs, "fc-m", i) for i in range(6)] == [2, 4, 6, 8, 10, 12]


def test_concurrent_timeout_answers_at_the_deadline(worker) -> None:
    w = worker("""
        import time
        def f(x):
            if x == 1:
                time.sleep(2.5)        # blocked in C: answered at 1 s, done later
            elif x == 2:
                while True:            # Python code: stopped at 1 s
                    pass
            return x
        """, max_inputs=3, timeout=1)
    ready(w, 3)
    t0 = time.monotonic()
    for k in range(3):
        send(w, "fc-t", k, [((k,), {})])
    seen: dict[int, float] = {}
    recs: dict[int, list[tuple[int, bytes]]] = {}
    dones: dict[int, float] = {}
    while len(dones) < 3:
        hdr, body = w.recv()
        now = time.monotonic() - t0
        if hdr["t"] == "output":
            for idx, status, payload in records(body):
                recs.setdefault(idx, []).append((status, payload))
                seen.setdefault(idx, now)
        elif hdr["t"] == "done":
            dones[hdr["start"]] = now
            assert w.recv()[0] == {"t": "want", "n": 1}
    assert [s for s, _ in recs[0]] == [0]
    for k in (1, 2):
        assert [s for s, _ in recs[k]] == [2, 5], recs[k]
        assert json.loads(recs[k][0][1])["kind"] == "timeout"
        assert pickle.loads(recs[k][1][1]) == [((k,), {})]
        assert 0.9 < seen[k] < 1.6, seen
    assert dones[2] < 1.8, dones          # the busy loop was interrupted
    assert 2.3 < dones[1] < 3.5, dones    # the sleep ran out, its value dropped
    # The runtime goes on serving.
    send(w, "fc-u", 0, [((0,), {})])
    recs2, _ = gather(w, 1)
    assert value(recs2, "fc-u", 0) == 0
    assert w.close() == 0


def test_stop_finishes_inputs_in_hand_then_exits(worker) -> None:
    w = worker("""
        import time
        def f(x):
            time.sleep(0.5)
            return x + 100
        """, max_inputs=3)
    ready(w, 3)
    for k in range(3):
        send(w, "fc-s", k, [((k,), {})])
    time.sleep(0.1)
    w.send({"t": "stop"})
    recs, _ = gather(w, 3)
    assert [value(recs, "fc-s", k) for k in range(3)] == [100, 101, 102]
    assert w.proc.wait(5) == 0


def test_stop_frame_ends_a_plain_container(worker) -> None:
    w = worker("def f(x):\n    return x\n")
    w.ready()
    assert [pickle.loads(p) for _, _, p in w.run(1)] == [1]
    w.send({"t": "stop"})
    assert w.proc.wait(5) == 0


# -- @batched ----------------------------------------------------------------------

BATCHED = """
    import skiff
    sizes = []
    def f(xs, k=1, *, tag="t"):
        assert isinstance(xs, list) and isinstance(k, list) and isinstance(tag, list)
        sizes.append(len(xs))
        return [(x * kk, t, len(xs), skiff.current_input_id() is not None)
                for x, kk, t in zip(xs, k, tag)]
    """


def test_batched_gets_lists_and_answers_each_input(worker) -> None:
    w = worker(BATCHED, batch={"max_batch_size": 4, "wait_ms": 300}, max_inputs=4)
    ready(w, 4)
    t0 = time.monotonic()
    send(w, "fc-b", 0, [((1,), {}), ((2,), {"k": 10}), ((), {"xs": 3, "tag": "u"})])
    send(w, "fc-c", 0, [((4, 2), {}), ((5,), {})])
    send(w, "fc-b", 3, [((6,), {})])
    recs, dones = gather(w, 3)
    got_b = [value(recs, "fc-b", i) for i in range(4)]
    got_c = [value(recs, "fc-c", i) for i in range(2)]
    assert [(v[0], v[1]) for v in got_b] == [(1, "t"), (20, "t"), (3, "u"), (6, "t")]
    assert [(v[0], v[1]) for v in got_c] == [(8, "t"), (5, "t")]
    # Six inputs: a full batch of four at once, then two after wait_ms.
    assert sorted(v[2] for v in got_b + got_c) == [2, 2, 4, 4, 4, 4]
    assert all(v[3] for v in got_b + got_c)
    assert time.monotonic() - t0 < 2.0
    assert w.close() == 0


def test_batched_wrong_length_and_bad_arguments_fail_clearly(worker) -> None:
    w = worker("""
        def f(xs):
            if 99 in xs:
                raise KeyError("ninety-nine")
            return xs[:-1]
        """, batch={"max_batch_size": 8, "wait_ms": 50}, max_inputs=8)
    ready(w, 8)
    send(w, "fc-w", 0, [((1,), {}), ((2,), {}), ((1, 2), {})])
    recs, _ = gather(w, 1)
    for i in (0, 1):
        (status, payload), = recs[("fc-w", i)]
        err = pickle.loads(payload)
        assert status == 1 and err["type"] == "ValueError"
        assert "returned 1 results for a batch of 2 inputs" in err["message"]
    (status, payload), = recs[("fc-w", 2)]
    assert status == 1 and pickle.loads(payload)["type"] == "TypeError"
    send(w, "fc-x", 0, [((99,), {})])
    recs, _ = gather(w, 1)
    assert [s for s, _ in recs[("fc-x", 0)]] == [1, 5]
    assert w.close() == 0


# -- classes -------------------------------------------------------------------------

MODEL = """
    import asyncio, os, sys, skiff

    LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lifecycle.log")

    def note(line):
        with open(LOG, "a") as f:
            f.write(line + "\\n")

    app = skiff.App("t")

    @app.cls()
    class Model:
        name: str = skiff.parameter()
        scale: int = skiff.parameter(default=2)

        @skiff.enter()
        def load(self):
            note(f"enter {self.name}")
            self.weights = len(self.name)

        @skiff.enter(snap=True)
        def early(self):
            note("snap")

        @skiff.method()
        def predict(self, x):
            return (x * self.weights * self.scale, open(LOG).read().count("enter"))

        @skiff.method()
        async def apredict(self, x):
            await asyncio.sleep(0)
            return x + self.weights

        @skiff.method()
        def count(self, n):
            for i in range(n):
                yield i * self.scale

        @skiff.method()
        def fail(self, x):
            raise RuntimeError(f"bad {x}")

        @skiff.exit()
        def bye(self):
            print("exit hook ran", flush=True)
            note("exit")
    """


def test_class_lifecycle_methods_and_exit_on_stop(worker, tmp_path: Path) -> None:
    w = worker(MODEL, **cls_init("Model", name="abc", scale=3))
    ready(w, 1)
    assert (tmp_path / "lifecycle.log").read_text() == "snap\nenter abc\n"
    w.chunk([("predict", (2,), {}), ("predict", (), {"x": 1})])
    assert [pickle.loads(p) for _, _, p in w.collect()] == [(18, 1), (9, 1)]
    w.chunk([("apredict", (5,), {})], call="fc-2")
    assert [pickle.loads(p) for _, _, p in w.collect("fc-2")] == [8]
    w.chunk([("count", (3,), {})], call="fc-3")
    recs = w.collect("fc-3")
    assert [(i, s) for i, s, _ in recs] == [(0, 3), (1, 3), (2, 3), (0, 4)]
    assert [pickle.loads(p) for _, _, p in recs[:3]] == [0, 3, 6]
    w.chunk([("fail", (7,), {}), ("nope", (1,), {})], call="fc-4")
    recs = w.collect("fc-4")
    assert [(i, s) for i, s, _ in recs] == [(0, 1), (0, 5), (1, 1), (1, 5)]
    assert pickle.loads(recs[0][2])["repr"] == "RuntimeError('bad 7')"
    assert "raise RuntimeError" in pickle.loads(recs[0][2])["traceback"]
    assert "_container.py" not in pickle.loads(recs[0][2])["traceback"]
    # The retry record names the method again.
    assert pickle.loads(recs[1][2]) == [("fail", (7,), {})]
    assert "no method 'nope'" in pickle.loads(recs[2][2])["message"]
    w.send({"t": "stop"})
    assert w.proc.wait(5) == 0
    assert (tmp_path / "lifecycle.log").read_text() == "snap\nenter abc\nexit\n"
    out, _ = w.output()
    assert "exit hook ran" in out


def test_class_exit_hooks_run_on_sigterm(worker, tmp_path: Path) -> None:
    w = worker(MODEL, **cls_init("Model", name="x"))
    ready(w, 1)
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(5) == 0
    assert (tmp_path / "lifecycle.log").read_text() == "snap\nenter x\nexit\n"


def test_class_enter_failure_is_an_import_error(worker) -> None:
    w = worker("""
        import skiff
        app = skiff.App("t")
        @app.cls()
        class Broken:
            @skiff.enter()
            def load(self):
                raise OSError("no weights")
            @skiff.method()
            def f(self):
                return 1
        """, **cls_init("Broken"))
    hdr, _ = w.recv()
    assert hdr["t"] == "import_error"
    assert "OSError: no weights" in hdr["message"] and "raise OSError" in hdr["message"]
    assert w.close() == 1


def test_class_enter_timeout(worker) -> None:
    w = worker("""
        import time, skiff
        app = skiff.App("t")
        @app.cls()
        class Slow:
            @skiff.enter()
            def load(self):
                time.sleep(10)
            @skiff.method()
            def f(self):
                return 1
        """, enter_timeout=1, **cls_init("Slow"))
    t0 = time.monotonic()
    hdr, _ = w.recv()
    assert time.monotonic() - t0 < 3
    assert hdr["t"] == "import_error" and "did not finish within 1 s" in hdr["message"]


def test_concurrent_class(worker) -> None:
    w = worker("""
        import threading, time, skiff
        app = skiff.App("t")
        @app.cls()
        @skiff.concurrent(max_inputs=3)
        class Svc:
            @skiff.enter()
            def up(self):
                self.lock = threading.Lock()
                self.entered = getattr(self, "entered", 0) + 1
            @skiff.method()
            def work(self, x):
                time.sleep(0.6)
                return x, self.entered
        """, max_inputs=3, **cls_init("Svc"))
    ready(w, 3)
    t0 = time.monotonic()
    for k in range(3):
        send(w, f"fc-{k}", 0, [("work", (k,), {})])
    recs, _ = gather(w, 3)
    assert time.monotonic() - t0 < 1.1
    assert [value(recs, f"fc-{k}", 0) for k in range(3)] == [(0, 1), (1, 1), (2, 1)]
    assert w.close() == 0


def test_batched_class_method(worker) -> None:
    w = worker("""
        import skiff
        app = skiff.App("t")
        @app.cls()
        class Emb:
            factor: int = skiff.parameter(default=3)
            @skiff.batched(max_batch_size=3, wait_ms=100)
            def embed(self, xs):
                return [(x * self.factor, len(xs)) for x in xs]
        """, batch={"max_batch_size": 3, "wait_ms": 100}, max_inputs=3,
        **cls_init("Emb", factor=5))
    ready(w, 3)
    send(w, "fc-e", 0, [("embed", (k,), {}) for k in range(4)])
    recs, _ = gather(w, 1)
    assert [value(recs, "fc-e", k) for k in range(4)] == [(0, 3), (5, 3), (10, 3), (15, 1)]
    send(w, "fc-f", 0, [("other", (1,), {})])
    recs, _ = gather(w, 1)
    (status, payload), = recs[("fc-f", 0)]
    assert status == 1 and "batched method 'embed'" in pickle.loads(payload)["message"]
    assert w.close() == 0
