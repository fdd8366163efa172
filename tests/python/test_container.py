"""The container runtime (`python3 -m skiff._container`) in isolation.

Each test starts the runtime as a subprocess against a small stand-in for the
server's worker socket (docs/protocol.md): it accepts the connection, checks
`hello`, answers with `init` for a user module written to a temp folder, and
then plays chunks and reads output records (docs/api.md, "Payloads").
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Optional

import pytest

SDK_DIR = Path(__file__).resolve().parents[2] / "sdk" / "python"
TOKEN = "tok-secret"
CONTAINER_ID = "ct-0123456789abcdef"
WAIT = 10.0     # seconds any single expected frame may take


def records(body: bytes) -> list[tuple[int, int, bytes]]:
    """Split an output body into (idx, status, payload) records."""
    out = []
    pos = 0
    while pos < len(body):
        idx, status, n = struct.unpack_from("<IBI", body, pos)
        pos += 9
        out.append((idx, status, body[pos:pos + n]))
        pos += n
    assert pos == len(body)
    return out


class Worker:
    """One runtime process and the server end of its socket."""

    def __init__(self, tmp: Path, source: Optional[str], init: dict[str, Any],
                 body: bytes = b"") -> None:
        self.tmp = tmp
        if source is not None:
            (tmp / "usermod.py").write_text(textwrap.dedent(source))
        sock_path = str(tmp / "worker.sock")
        if os.path.exists(sock_path):
            os.unlink(sock_path)    # a second worker in the same test
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(sock_path)
        self.listener.listen(1)
        self.listener.settimeout(WAIT)
        env = dict(os.environ)
        env.update(SKIFF_WORKER_SOCKET=sock_path, SKIFF_CONTAINER_ID=CONTAINER_ID,
                   SKIFF_CONTAINER_TOKEN=TOKEN, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join([str(SDK_DIR), str(tmp)]))
        self.proc = subprocess.Popen([sys.executable, "-m", "skiff._container"], env=env,
                                     cwd=str(tmp), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(WAIT)
        self.buf = b""
        hello, _ = self.recv()
        assert hello == {"t": "hello", "container_id": CONTAINER_ID, "token": TOKEN}
        full = {"t": "init", "module": "usermod", "file": str(tmp / "usermod.py"),
                "qualname": "f", "serialized": False, "is_generator": False,
                "timeout": 60, "function_name": "f", "app_name": "test"}
        full.update(init)
        self.send(full, body)

    def send(self, hdr: dict[str, Any], body: bytes = b"") -> None:
        h = json.dumps(hdr).encode()
        self.conn.sendall(struct.pack("<II", len(h), len(body)) + h + body)

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            got = self.conn.recv(1 << 16)
            if not got:
                raise EOFError("the runtime closed the socket")
            self.buf += got
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def recv(self) -> tuple[dict[str, Any], bytes]:
        while True:
            hl, bl = struct.unpack("<II", self._read(8))
            hdr = json.loads(self._read(hl))
            body = self._read(bl)
            if hdr.get("t") != "startup":
                return hdr, body
            self.startup = hdr  # the cold start's parts, before ready (kept for tests)

    def ready(self) -> None:
        assert self.recv()[0] == {"t": "ready"}
        assert self.recv()[0] == {"t": "want", "n": 1}

    def chunk(self, inputs: list[tuple[tuple[Any, ...], dict[str, Any]]],
              call: str = "fc-1", start: int = 0) -> None:
        self.send({"t": "input", "call": call, "start": start, "count": len(inputs),
                   "retry": 0}, pickle.dumps(inputs))

    def collect(self, call: str = "fc-1", start: int = 0) -> list[tuple[int, int, bytes]]:
        """Every record up to the chunk's `done`, then its `want`."""
        got: list[tuple[int, int, bytes]] = []
        while True:
            hdr, body = self.recv()
            if hdr["t"] == "done":
                busy = hdr.pop("busy")
                assert isinstance(busy, float) and busy >= 0
                assert hdr == {"t": "done", "call": call, "start": start}
                assert self.recv()[0] == {"t": "want", "n": 1}
                return got
            assert hdr["t"] == "output" and hdr["call"] == call
            recs = records(body)
            assert len(recs) == hdr["n"]
            got += recs

    def run(self, *inputs: Any, **kw: Any) -> list[tuple[int, int, bytes]]:
        self.chunk([((x,), {}) for x in inputs], **kw)
        return self.collect(kw.get("call", "fc-1"), kw.get("start", 0))

    def close(self) -> int:
        self.conn.close()
        self.listener.close()
        try:
            return self.proc.wait(WAIT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def output(self) -> tuple[str, str]:
        assert self.proc.stdout and self.proc.stderr
        return self.proc.stdout.read().decode(), self.proc.stderr.read().decode()


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


def test_ready_plain_values_and_clean_exit(worker) -> None:
    w = worker("def f(x):\n    return x * x\n")
    w.ready()
    recs = w.run(*range(7), start=100)
    assert [(i, s) for i, s, _ in recs] == [(100 + k, 0) for k in range(7)]
    assert [pickle.loads(p) for _, _, p in recs] == [k * k for k in range(7)]
    # A second chunk of the same call, kwargs and a one-input chunk.
    w.chunk([((3,), {}), ((), {"x": 4})], start=7)
    assert [pickle.loads(p) for _, _, p in w.collect(start=7)] == [9, 16]
    assert w.close() == 0


def test_startup_frame_breaks_the_cold_start_down(worker) -> None:
    import time
    before = time.time()
    w = worker("import time\ntime.sleep(0.2)\ndef f(x):\n    return x\n")
    w.ready()
    s = w.startup
    # Our first line ran after the process began and before the import.
    assert before - 1 < s["t0"] < time.time()
    assert s["import_ms"] >= 200, s
    assert s["enter_ms"] >= 0
    assert w.close() == 0


def test_mixed_success_and_exceptions_carry_retry_args(worker) -> None:
    w = worker("""
        def f(x):
            if x % 3 == 0:
                raise ValueError(f"bad {x}")
            return -x
        """)
    w.ready()
    recs = w.run(*range(1, 8), start=10)
    by_status = [(i, s) for i, s, _ in recs]
    # inputs 1..7 at idx 10..16; 3 and 6 (idx 12, 15) fail.
    assert by_status == [(10, 0), (11, 0), (12, 1), (12, 5), (13, 0), (14, 0),
                         (15, 1), (15, 5), (16, 0)]
    err = pickle.loads(recs[2][2])
    assert isinstance(err["exc"], ValueError) and str(err["exc"]) == "bad 3"
    assert err["type"] == "ValueError" and err["module"] == "builtins"
    assert err["repr"] == "ValueError('bad 3')"
    assert err["traceback"].startswith("Traceback (most recent call last):")
    assert 'raise ValueError(f"bad {x}")' in err["traceback"]
    assert "_container.py" not in err["traceback"]
    assert pickle.loads(recs[3][2]) == [((3,), {})]
    assert pickle.loads(recs[7][2]) == [((6,), {})]
    assert w.close() == 0


def test_exception_that_does_not_unpickle_is_described(worker) -> None:
    w = worker("""
        class Odd(Exception):
            def __init__(self, a, b):
                super().__init__(f"{a}/{b}")
        def f(x):
            raise Odd(x, 2)
        """)
    w.ready()
    (i, s, p), (_, s5, _) = w.run(1)
    err = pickle.loads(p)
    assert (s, s5) == (1, 5)
    assert err["exc"] is None
    assert err["type"] == "Odd" and err["module"] == "usermod"
    assert err["repr"] == "Odd('1/2')"
    assert "raise Odd(x, 2)" in err["traceback"]


def test_timeout_then_next_input_runs(worker) -> None:
    w = worker("""
        import time
        def f(x):
            if x:
                time.sleep(5)
            return x
        """, timeout=1)
    w.ready()
    t0 = time.monotonic()
    recs = w.run(1)
    took = time.monotonic() - t0
    assert took < 1.8, took
    assert [(i, s) for i, s, _ in recs] == [(0, 2), (0, 5)]
    assert json.loads(recs[0][2]) == {"kind": "timeout",
                                      "message": "Function timed out after 1 s"}
    assert pickle.loads(recs[1][2]) == [((1,), {})]
    # The runtime survives, and a chunk running longer than the timeout in
    # total does not time out any of its inputs.
    w.send({"t": "input", "call": "fc-2", "start": 0, "count": 1, "retry": 1},
           pickle.dumps([((0,), {})]))
    assert [pickle.loads(p) for _, _, p in w.collect("fc-2")] == [0]
    assert w.close() == 0


def test_chunk_longer_than_timeout(worker) -> None:
    w = worker("""
        import time
        def f(x):
            time.sleep(0.3)
            return x
        """, timeout=1)
    w.ready()
    recs = w.run(*range(6))
    assert [(i, s) for i, s, _ in recs] == [(k, 0) for k in range(6)]


def test_slow_inputs_flush_each_record(worker) -> None:
    w = worker("""
        import time
        def f(x):
            time.sleep(0.2)
            return x
        """)
    w.ready()
    w.chunk([((k,), {}) for k in range(4)])
    t0 = time.monotonic()
    hdr, body = w.recv()
    assert hdr["t"] == "output"
    # The first record arrives after about one input, not the whole chunk.
    assert time.monotonic() - t0 < 0.6
    assert records(body)[0][:2] == (0, 0)


def test_generator_items_arrive_before_it_finishes(worker, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    w = worker(f"""
        import os, time
        def f(n):
            yield "first"
            while not os.path.exists({str(gate)!r}):
                time.sleep(0.01)
            for i in range(n):
                yield i
        """, is_generator=True)
    w.ready()
    w.chunk([((2,), {})], start=0)
    hdr, body = w.recv()
    # The generator is blocked until the gate exists, so this item was sent
    # while it was still running.
    assert hdr == {"t": "output", "call": "fc-1", "n": 1}
    assert [(i, s, pickle.loads(p)) for i, s, p in records(body)] == [(0, 3, "first")]
    gate.write_text("")
    recs = w.collect()
    assert [(i, s) for i, s, _ in recs] == [(1, 3), (2, 3), (0, 4)]
    assert [pickle.loads(p) for _, _, p in recs[:2]] == [0, 1]
    assert recs[2][2] == b""


def test_generator_error_after_items_has_no_retry_record(worker) -> None:
    w = worker("""
        def f(fail_at_once):
            if fail_at_once:
                raise KeyError("early")
            yield 1
            raise KeyError("late")
        """, is_generator=True)
    w.ready()
    recs = w.run(False)
    assert [(i, s) for i, s, _ in recs] == [(0, 3), (0, 1)]
    assert pickle.loads(recs[1][2])["repr"] == "KeyError('late')"
    recs = w.run(True, call="fc-2")
    assert [(i, s) for i, s, _ in recs] == [(0, 1), (0, 5)]


def test_generator_timeout(worker) -> None:
    w = worker("""
        import time
        def f(x):
            yield 1
            time.sleep(5)
            yield 2
        """, is_generator=True, timeout=1)
    w.ready()
    t0 = time.monotonic()
    recs = w.run(0)
    assert time.monotonic() - t0 < 1.8
    assert [(i, s) for i, s, _ in recs] == [(0, 3), (0, 2)]
    assert json.loads(recs[1][2])["kind"] == "timeout"


def test_import_error_reports_traceback(worker) -> None:
    w = worker("""
        import os
        def helper():
            return 1 / 0
        helper()
        def f(x):
            return x
        """)
    hdr, _ = w.recv()
    assert hdr["t"] == "import_error"
    msg = hdr["message"]
    assert msg.startswith("Traceback (most recent call last):")
    assert "usermod.py" in msg and "return 1 / 0" in msg
    assert msg.rstrip().endswith("ZeroDivisionError: division by zero")
    assert "_container.py" not in msg and "importlib" not in msg
    assert w.close() == 1
    _, err = w.output()
    assert err.count("ZeroDivisionError: division by zero") == 1


@pytest.mark.parametrize("source, qualname, expect", [
    ("import sys\nsys.exit(3)\n", "f", "SystemExit: 3"),
    ("def g(x):\n    return x\n", "f", "AttributeError"),
    ("import no_such_module_here\n", "f", "ModuleNotFoundError"),
    ("def outer():\n    def f(): pass\n    return f\n", "outer.<locals>.f", "serialized=True"),
])
def test_import_errors(worker, source: str, qualname: str, expect: str) -> None:
    w = worker(source, qualname=qualname)
    hdr, _ = w.recv()
    assert hdr["t"] == "import_error" and expect in hdr["message"]
    assert w.close() == 1


def test_serialized_function(worker) -> None:
    cloudpickle = pytest.importorskip("cloudpickle")
    offset = 1000

    def add(x: int, *, scale: int = 1) -> int:
        return (x + offset) * scale

    def make(x: int) -> Any:
        if x < 0:
            return lambda: x + offset       # plain pickle refuses; cloudpickle takes it
        return add(x, scale=1)

    w = worker(None, body=cloudpickle.dumps(make), serialized=True, module="test_x",
               file=None, qualname="make")
    w.ready()
    recs = w.run(1, -5)
    assert [(i, s) for i, s, _ in recs] == [(0, 0), (1, 0)]
    assert pickle.loads(recs[0][2]) == 1001
    assert pickle.loads(recs[1][2])() == 995


@pytest.mark.parametrize("accessor", [
    "self.raw_f = f",
    "self._raw_f = f\n    def get_raw_f(self):\n        return self._raw_f",
])
def test_function_wrapper_objects_are_unwrapped(worker, accessor: str) -> None:
    w = worker(f"""
class Function:
    def __init__(self, f):
        {accessor}
    def __call__(self, *a, **k):
        raise AssertionError("the wrapper must not be called")
def _f(x):
    return x + 1
f = Function(_f)
""")
    w.ready()
    assert [pickle.loads(p) for _, _, p in w.run(1)] == [2]


def test_async_function_and_async_generator(worker) -> None:
    w = worker("""
        import asyncio
        async def f(x):
            await asyncio.sleep(0.01)
            if x < 0:
                raise ValueError(x)
            return x * 2
        async def g(n):
            for i in range(n):
                await asyncio.sleep(0)
                yield i
        """)
    w.ready()
    recs = w.run(1, -1, 3)
    assert [(i, s) for i, s, _ in recs] == [(0, 0), (1, 1), (1, 5), (2, 0)]
    assert pickle.loads(recs[0][2]) == 2 and pickle.loads(recs[3][2]) == 6
    assert "raise ValueError(x)" in pickle.loads(recs[1][2])["traceback"]
    assert "base_events.py" not in pickle.loads(recs[1][2])["traceback"]
    assert w.close() == 0

    w = worker(None, qualname="g", is_generator=True)
    w.ready()
    recs = w.run(3)
    assert [(i, s) for i, s, _ in recs] == [(0, 3), (1, 3), (2, 3), (0, 4)]


def test_async_timeout(worker) -> None:
    w = worker("""
        import asyncio
        async def f(x):
            await asyncio.sleep(x)
            return x
        """, timeout=1)
    w.ready()
    t0 = time.monotonic()
    recs = w.run(5)
    assert time.monotonic() - t0 < 2.5
    assert [(i, s) for i, s, _ in recs] == [(0, 2), (0, 5)]
    # The event loop is still usable afterwards.
    assert [pickle.loads(p) for _, _, p in w.run(0, call="fc-2")] == [0]


def test_current_input_id(worker) -> None:
    w = worker("""
        import skiff
        def f(x):
            if hasattr(skiff, "current_input_id"):
                return skiff.current_input_id(), skiff.current_function_call_id()
            from skiff import _context
            return _context.input_id.get(), _context.function_call_id.get()
        """)
    w.ready()
    recs = w.run(0, 0, call="fc-abc", start=41)
    vals = [pickle.loads(p) if s == 0 else pickle.loads(p)["repr"] for _, s, p in recs]
    if any(s != 0 for _, s, _ in recs):
        pytest.skip(f"skiff._context is not available yet: {vals[0]}")
    assert vals == [("in-fc-abc-41", "fc-abc"), ("in-fc-abc-42", "fc-abc")]


def test_unpicklable_result(worker) -> None:
    w = worker("""
        import threading
        def f(x):
            return threading.Lock()
        """)
    w.ready()
    recs = w.run(7)
    # Running it again would fail the same way: no arguments for a retry.
    assert [(i, s) for i, s, _ in recs] == [(0, 1)]
    err = pickle.loads(recs[0][2])
    assert err["type"] == "TypeError"
    assert "the return value could not be pickled" in err["repr"]
    assert "lock" in err["repr"]


def test_unreadable_chunk_fails_each_input(worker) -> None:
    w = worker("def f(x):\n    return x\n")
    w.ready()
    w.send({"t": "input", "call": "fc-1", "start": 3, "count": 2, "retry": 0},
           b"\x80\x04cno_such_mod\nThing\n.")
    recs = w.collect(start=3)
    assert [(i, s) for i, s, _ in recs] == [(3, 2), (4, 2)]
    assert json.loads(recs[0][2])["kind"] == "unpicklable"


def test_main_module_stands_in_for_main(worker) -> None:
    w = worker("""
        import dataclasses
        @dataclasses.dataclass
        class Point:
            x: int
        def f(x):
            if isinstance(x, Point):
                return "arg", type(x).__module__, x.x
            return Point(x)
        if __name__ == "__main__":
            raise SystemExit("the script's main block must not run")
        """, module="__main__")
    w.ready()
    (_, s, p), = w.run(5)
    assert s == 0
    assert b"__main__" in p and b"__skiff_main__" not in p
    # Arguments the client pickled by reference to __main__ find the class.

    class Point:        # stands in for the client's own __main__.Point
        def __init__(self, x: int) -> None:
            self.x = x
    Point.__module__ = "__main__"
    Point.__qualname__ = "Point"
    main = sys.modules["__main__"]
    had = getattr(main, "Point", None)
    main.Point = Point  # type: ignore[attr-defined]
    try:
        assert pickle.loads(p).x == 5
        arg = pickle.dumps([((Point(9),), {})])
    finally:
        if had is None:
            del main.Point  # type: ignore[attr-defined]
        else:
            main.Point = had  # type: ignore[attr-defined]
    w.send({"t": "input", "call": "fc-2", "start": 0, "count": 1, "retry": 0}, arg)
    (_, s, p), = w.collect("fc-2")
    assert (s, pickle.loads(p)) == (0, ("arg", "__main__", 9))


def test_prints_go_to_stdout_not_the_socket(worker) -> None:
    w = worker("""
        import sys
        def f(x):
            print("hello from", x)
            print("to stderr", file=sys.stderr)
            return x
        """)
    w.ready()
    assert [pickle.loads(p) for _, _, p in w.run(1, 2)] == [1, 2]
    assert w.close() == 0
    out, err = w.output()
    assert out == "hello from 1\nhello from 2\n"
    assert err == "to stderr\nto stderr\n"


def test_sigterm_exits_promptly(worker) -> None:
    w = worker("""
        import time
        def f(x):
            time.sleep(30)
        """)
    w.ready()
    w.chunk([((1,), {})])
    time.sleep(0.3)
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(5) == 0


def test_big_results_keep_their_order(worker) -> None:
    w = worker("def f(n):\n    return b'x' * n\n")
    w.ready()
    sizes = [1, 3 << 20, 2, 5 << 20, 3]
    recs = w.run(*sizes)
    assert [(i, s) for i, s, _ in recs] == [(k, 0) for k in range(len(sizes))]
    assert [len(pickle.loads(p)) for _, _, p in recs] == sizes


def test_sigterm_while_idle(worker) -> None:
    w = worker("def f(x):\n    return x\n")
    w.ready()
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(5) == 0


def test_args1_batch_successes_failure_and_timeout(worker) -> None:
    """The batch path: one-argument inputs come back as status-6 runs, with a
    failure and a timeout each in its own record and the loop going on."""
    w = worker("""
        import time
        def f(x):
            if x == 3:
                raise ValueError("three")
            if x == 5:
                time.sleep(10)
            return x * 10
        """, timeout=1)
    w.ready()
    t0 = time.monotonic()
    w.send({"t": "input", "call": "fc-1", "start": 100, "count": 8, "retry": 0},
           pickle.dumps(("skiff.args1", list(range(8)))))
    recs = w.collect(start=100)
    took = time.monotonic() - t0
    assert 0.9 < took < 2.0, took
    got = {}
    for idx, status, payload in recs:
        if status == 6:
            n = int.from_bytes(payload[:4], "little")
            values = pickle.loads(payload[4:])
            assert len(values) == n
            for k, v in enumerate(values):
                got[idx + k] = v
        else:
            got.setdefault((idx, status), payload)
    assert [got[100 + i] for i in (0, 1, 2, 4, 6, 7)] == [0, 10, 20, 40, 60, 70]
    assert pickle.loads(got[(103, 1)])["type"] == "ValueError"
    assert json.loads(got[(105, 2)])["kind"] == "timeout"
    assert pickle.loads(got[(105, 5)]) == [((5,), {})]
    assert w.close() == 0


def test_args1_batch_knows_the_current_input(worker) -> None:
    w = worker("""
        import skiff
        def f(x):
            return skiff.current_input_id()
        """)
    w.ready()
    w.send({"t": "input", "call": "fc-9", "start": 40, "count": 3, "retry": 0},
           pickle.dumps(("skiff.args1", ["a", "b", "c"])))
    recs = w.collect(call="fc-9", start=40)
    assert [(i, s) for i, s, _ in recs] == [(40, 6)]
    assert pickle.loads(recs[0][2][4:]) == ["in-fc-9-40", "in-fc-9-41", "in-fc-9-42"]
    assert w.close() == 0
