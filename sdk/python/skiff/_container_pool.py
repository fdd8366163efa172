"""Several inputs at once in one container (docs/protocol.md, "Issue 4
additions"): ``@concurrent(max_inputs=N)`` and ``@batched(...)``.

skiff._container's own loop runs one chunk at a time on the main thread,
which its signal handlers interrupt for timeouts and SIGTERM.  Here the main
thread only reads frames, and

- with ``max_inputs`` > 1, each input chunk runs on a worker thread of its
  own, through the same per-chunk loops (``_run_plain``,
  ``_run_generators``); an async function's coroutines run as tasks of one
  event loop on a thread of its own, the worker waiting for each.  The
  container asks for ``max_inputs`` chunks after ``ready``, and one more
  after each ``done``;
- with ``batch``, one batcher thread takes inputs from every chunk in hand
  in order, up to ``max_batch_size`` of them or what came within ``wait_ms``
  of the first, calls the function once with a list per parameter, and
  answers each input with its element of the returned list.  ``done`` goes
  out for a chunk once all its inputs are answered.

Writes to the socket are serialized by a lock around ``conn.send``; each
chunk's output frames name its call, which the worker keeps in a context
variable (``call_q``) rather than the runtime's one attribute.

Timeouts cannot be raised into a thread by a signal.  A watchdog thread
keeps the deadline of each sync call running on a worker: once past it, the
watchdog sends the input's timeout record (and its retry record) at once,
and raises ``_Timeout`` into the thread (PyThreadState_SetAsyncExc), which
stops Python code at its next instruction; code blocked in C (a sleep, a
read) finishes first, and whatever it returns is dropped (``_Answered``).
Async calls time out by cancelling their task.

The ``stop`` frame ends reading: the chunks in hand finish, then ``serve``
returns (skiff._container runs the ``@exit`` hooks and exits 0).
"""

from __future__ import annotations

import contextvars
import ctypes
import inspect
import json
import pickle
import sys
import threading
import time
from collections import deque
from time import monotonic
from typing import Any, Callable, Optional

from skiff import _container as C

_call_q: "contextvars.ContextVar[bytes]" = contextvars.ContextVar("skiff_call_q", default=b'""')

# The watchdog wakes at most this long after a deadline.
_WATCH_S = 0.02


def _raise_in(tid: int, exc: Any) -> None:
    """Raises ``exc`` (a class, or None to take back a pending one) in thread ``tid``."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid),
                                               ctypes.py_object(exc) if exc else None)


class _Slot:
    """A sync call running on a worker: the inputs it answers, as
    (call_q, idx, args, kwargs), and its deadline."""

    __slots__ = ("inputs", "deadline", "done", "answered")

    def __init__(self, inputs: "list[tuple[bytes, int, Any, Any]]", deadline: float) -> None:
        self.inputs = inputs
        self.deadline = deadline
        self.done = False
        self.answered = False


class _Chunk:
    """A chunk in hand in batch mode: done once ``left`` inputs are answered."""

    __slots__ = ("call", "call_q", "start", "left", "t0")

    def __init__(self, call: str, call_q: bytes, start: int, left: int, t0: float) -> None:
        self.call = call
        self.call_q = call_q
        self.start = start
        self.left = left
        self.t0 = t0


class PoolRuntime(C._Runtime):
    """skiff._container's runtime, with the loop of this module."""

    def __init__(self, conn: Any, f: Callable[..., Any], init: "dict[str, Any]") -> None:
        super().__init__(conn, f, init)
        self.max_inputs = max(1, int(init.get("max_inputs") or 1))
        batch = init.get("batch") or None
        self.batch_size = int(batch["max_batch_size"]) if batch else 0
        self.batch_wait = float(batch["wait_ms"]) / 1000 if batch else 0.0
        self._send_lock = threading.Lock()
        raw_send = conn.send

        def send(data: bytes) -> None:
            with self._send_lock:
                raw_send(data)
        conn.send = send
        self._cond = threading.Condition()
        self._in_hand = 0           # chunks leased to this container, not done
        self._jobs: "deque[Callable[[], None]]" = deque()
        self._idle = 0              # workers waiting for a job
        self._slots: "dict[int, _Slot]" = {}
        self._slot_lock = threading.Lock()
        self._watchdog: Optional[threading.Thread] = None
        self._aloop: Any = None
        self._aloop_lock = threading.Lock()
        self._pending: "deque[tuple[_Chunk, int, Any, Any, float]]" = deque()
        self._params: Optional["list[inspect.Parameter]"] = None

    # The call of the chunk this thread (or task) runs.
    @property  # type: ignore[override]
    def call_q(self) -> bytes:
        return _call_q.get()

    @call_q.setter
    def call_q(self, value: bytes) -> None:
        _call_q.set(value)

    # Serving ------------------------------------------------------------------

    def serve(self) -> None:
        if self.batch_size:
            threading.Thread(target=self._batcher, name="skiff-batcher", daemon=True).start()
            credit = self.batch_size
        else:
            if not self.is_async and not self.is_generator:
                self.f = self._guarded(self.f)
            credit = self.max_inputs
        if self.timeout > 0:
            self._watchdog = threading.Thread(target=self._watch, name="skiff-watchdog",
                                              daemon=True)
            self._watchdog.start()
        conn = self.conn
        conn.send(C._frame(b'{"t":"ready"}') + C._frame(b'{"t":"want","n":%d}' % credit))
        try:
            while True:
                hdr, body = conn.recv()
                t = hdr.get("t")
                if t == "input":
                    with self._cond:
                        self._in_hand += 1
                    self._take(hdr, body)
                elif t == "stop":
                    break
        except C._ServerGone:
            return
        with self._cond:
            while self._in_hand:
                self._cond.wait()

    def _take(self, hdr: "dict[str, Any]", body: bytes) -> None:
        """Hands an input frame's chunk to a worker or the batcher."""
        call = str(hdr["call"])
        start = int(hdr["start"])
        t0 = monotonic()
        call_q = json.dumps(call).encode()
        try:
            inputs = pickle.loads(body)
            if type(inputs) is tuple and len(inputs) == 2 and inputs[0] == "skiff.args1":
                inputs = [((x,), {}) for x in inputs[1]]
            elif self.cls_mode:
                inputs = C._method_inputs(inputs)
        except Exception as e:
            _call_q.set(call_q)
            self._finish(call_q, start, t0, self._unreadable(start, int(hdr.get("count", 0)), e))
            return
        skip = hdr.get("skip")
        if skip:
            done = set(skip)
            inputs = [x if start + k not in done else None for k, x in enumerate(inputs)]
        if self.batch_size:
            self._queue_batch(call, call_q, start, inputs, t0)
        else:
            self._submit(lambda: self._run_one_chunk(call, call_q, start, inputs, t0))

    def _finish(self, call_q: bytes, start: int, t0: float, tail: bytes = b"") -> None:
        """Sends a chunk's last outputs, its ``done`` and a ``want``."""
        self.conn.send(b"".join((tail, C._frame(
            b'{"t":"done","call":%s,"start":%d,"busy":%.9f}'
            % (call_q, start, monotonic() - t0)), C._WANT)))
        with self._cond:
            self._in_hand -= 1
            self._cond.notify_all()

    # Workers ------------------------------------------------------------------

    def _submit(self, job: Callable[[], None]) -> None:
        with self._cond:
            self._jobs.append(job)
            if self._idle >= len(self._jobs):
                self._cond.notify_all()
                return
        threading.Thread(target=self._worker, name="skiff-input", daemon=True).start()

    def _worker(self) -> None:
        while True:
            with self._cond:
                while not self._jobs:
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
                job = self._jobs.popleft()
            job()

    def _run_one_chunk(self, call: str, call_q: bytes, start: int,
                       inputs: "list[Any]", t0: float) -> None:
        _call_q.set(call_q)
        self.call_var.set(call)
        tail = b""
        try:
            if self.is_generator or (self.cls_mode and
                                     C._first_method(inputs) in self.gen_methods):
                out, n = self._run_generators(call, start, inputs)
            else:
                out, n = self._run_plain(call, start, inputs)
            tail = self._output(out, n) if n else b""
        except C._ServerGone:
            return
        except BaseException as e:  # a fault of this runtime: say so, keep serving
            sys.stderr.write(f"skiff: chunk {start} of {call} failed in the runtime:\n"
                             f"{C._format_exc(e)}")
        finally:
            self.input_var.set(None)
            self.call_var.set(None)
        try:
            self._finish(call_q, start, t0, tail)
        except C._ServerGone:
            pass

    # Timeouts -----------------------------------------------------------------

    def _guard(self, slot: _Slot, f: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        """``f(*args, **kwargs)`` under the watchdog's eye; _Answered when the
        watchdog answered for it."""
        tid = threading.get_ident()
        with self._slot_lock:
            self._slots[tid] = slot
        try:
            try:
                r = f(*args, **kwargs)
            finally:
                with self._slot_lock:
                    slot.done = True
                    if self._slots.get(tid) is slot:
                        del self._slots[tid]
                    if slot.answered:
                        _raise_in(tid, None)    # not delivered yet: take it back
        except BaseException:
            if slot.answered:
                raise C._Answered from None
            raise
        if slot.answered:
            raise C._Answered
        return r

    def _guarded(self, f: Callable[..., Any]) -> Callable[..., Any]:
        """``f`` for _run_plain on a worker: each call watched by the watchdog."""
        if self.timeout <= 0:
            return f
        timeout = self.timeout
        input_var = self.input_var

        def call(*args: Any, **kwargs: Any) -> Any:
            idx = int(str(input_var.get()).rsplit("-", 1)[1])
            slot = _Slot([(_call_q.get(), idx, args, kwargs)], monotonic() + timeout)
            return self._guard(slot, f, args, kwargs)
        return call

    def _watch(self) -> None:
        # A call that starts while the watchdog sleeps has a whole timeout to
        # go, so sleeping up to half of one never misses a deadline by more
        # than _WATCH_S.
        longest = max(_WATCH_S, min(0.5, self.timeout / 2))
        nap = longest
        while True:
            time.sleep(nap)
            now = monotonic()
            due = []
            nap = longest
            with self._slot_lock:
                for tid, slot in self._slots.items():
                    if slot.done or slot.answered:
                        continue
                    if now >= slot.deadline:
                        slot.answered = True
                        due.append((tid, slot))
                    else:
                        nap = max(_WATCH_S, min(nap, slot.deadline - now))
            for tid, slot in due:
                try:
                    self.conn.send(self._records(slot.inputs, C._Timeout()))
                except C._ServerGone:
                    return
                with self._slot_lock:
                    if not slot.done:
                        _raise_in(tid, C._Timeout)

    def _records(self, inputs: "list[tuple[bytes, int, Any, Any]]",
                 e: BaseException) -> bytes:
        """Output frames failing these inputs with ``e``, one per call."""
        by_call: "dict[bytes, tuple[bytearray, list[int]]]" = {}
        for call_q, idx, args, kwargs in inputs:
            out, n = by_call.setdefault(call_q, (bytearray(), [0]))
            n[0] += self._failure(out, idx, e, args, kwargs)
        return b"".join(C._frame(b'{"t":"output","call":%s,"n":%d}' % (q, n[0]), out)
                        for q, (out, n) in by_call.items() if n[0])

    # asyncio ------------------------------------------------------------------

    def _loop(self) -> Any:
        with self._aloop_lock:
            if self._aloop is None:
                import asyncio
                loop = asyncio.new_event_loop()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.run_forever()
                threading.Thread(target=run, name="skiff-asyncio", daemon=True).start()
                self._aloop = loop
            return self._aloop

    def _run_async(self, coro: Any) -> Any:
        """Runs a coroutine as a task of the one event loop and waits for it,
        at most the function's timeout (then the task is cancelled)."""
        import asyncio
        ctx = (self.input_var.get(), self.call_var.get(), _call_q.get())
        fut = asyncio.run_coroutine_threadsafe(_in_context(self, ctx, coro), self._loop())
        try:
            return fut.result(self.timeout if self.timeout > 0 else None)
        except BaseException:
            if fut.done():
                raise           # the coroutine's own exception
            fut.cancel()
            raise C._Timeout from None

    # Batches ------------------------------------------------------------------

    def _queue_batch(self, call: str, call_q: bytes, start: int, inputs: "list[Any]",
                     t0: float) -> None:
        todo = [(idx, item) for idx, item in enumerate(inputs, start) if item is not None]
        if self.cls_mode:
            todo = [(idx, (a[1:], k)) if a and a[0] == self.batch_method
                    else (idx, _WrongMethod(a[0] if a else None, self.batch_method))
                    for idx, (a, k) in todo]
        chunk = _Chunk(call, call_q, start, len(todo), t0)
        if not todo:
            self._finish(call_q, start, t0)
            return
        with self._cond:
            for idx, item in todo:
                if isinstance(item, _WrongMethod):
                    self._pending.append((chunk, idx, item, None, t0))
                else:
                    self._pending.append((chunk, idx, item[0], item[1], t0))
            self._cond.notify_all()

    def _batcher(self) -> None:
        size, wait = self.batch_size, self.batch_wait
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                until = self._pending[0][4] + wait
                while len(self._pending) < size:
                    left = until - monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch = [self._pending.popleft() for _ in range(min(size, len(self._pending)))]
            try:
                self._run_batch(batch)
            except C._ServerGone:
                return

    def _bind(self, args: Any, kwargs: Any) -> "tuple[list[Any], dict[str, Any]]":
        """One input's arguments as (positional values, keyword values) in
        the order of the function's parameters, defaults filled in."""
        if self._params is None:
            self._sig = inspect.signature(self.f)
            self._params = list(self._sig.parameters.values())
        ba = self._sig.bind(*args, **kwargs)
        ba.apply_defaults()
        pos = [ba.arguments[p.name] for p in self._params if p.kind != p.KEYWORD_ONLY]
        kw = {p.name: ba.arguments[p.name] for p in self._params if p.kind == p.KEYWORD_ONLY}
        return pos, kw

    def _run_batch(self, batch: "list[tuple[_Chunk, int, Any, Any, float]]") -> None:
        outs: "dict[bytes, tuple[bytearray, list[int]]]" = {}

        def out_of(chunk: _Chunk) -> "tuple[bytearray, list[int]]":
            return outs.setdefault(chunk.call_q, (bytearray(), [0]))

        ready: "list[tuple[_Chunk, int, Any, Any, list[Any], dict[str, Any]]]" = []
        for chunk, idx, args, kwargs, _ in batch:
            if isinstance(args, _WrongMethod):
                out, n = out_of(chunk)
                n[0] += self._failure(out, idx, AttributeError(str(args)), (), {}, retry=False)
                continue
            try:
                pos, kw = self._bind(args, kwargs)
            except TypeError as e:
                out, n = out_of(chunk)
                n[0] += self._failure(out, idx, TypeError(
                    f"{getattr(self.f, '__name__', 'the function')}() {e}"), args, kwargs,
                    retry=False)
                continue
            ready.append((chunk, idx, args, kwargs, pos, kw))
        if ready:
            self._call_batch(ready, out_of)
        frames = [C._frame(b'{"t":"output","call":%s,"n":%d}' % (q, n[0]), out)
                  for q, (out, n) in outs.items() if n[0]]
        finished = []
        for chunk, *_ in batch:
            chunk.left -= 1
            if chunk.left == 0:
                finished.append(chunk)
        if frames:
            self.conn.send(b"".join(frames))
        for chunk in finished:
            self._finish(chunk.call_q, chunk.start, chunk.t0)

    def _call_batch(self, ready: "list[Any]", out_of: Callable[[Any], Any]) -> None:
        """Calls the function once for the inputs ``ready`` and appends each
        one's record."""
        first = ready[0]
        cols = [list(c) for c in zip(*(r[4] for r in ready))]
        kwcols = {k: [r[5][k] for r in ready] for k in first[5]}
        _call_q.set(first[0].call_q)
        self.call_var.set(first[0].call)
        self.input_var.set(f"in-{first[0].call}-{first[1]}")
        slot = _Slot([(c.call_q, idx, a, k) for c, idx, a, k, _, _ in ready],
                     monotonic() + self.timeout if self.timeout > 0 else float("inf"))
        f = self._call_async if self.is_async else self.f
        try:
            results = self._guard(slot, f, cols, kwcols)
            failed: Optional[BaseException] = None
            if not isinstance(results, (list, tuple)):
                failed = TypeError(f"the batched function returned {type(results).__name__}; "
                                   f"it must return a list with one result per input "
                                   f"({len(ready)} here)")
            elif len(results) != len(ready):
                failed = ValueError(f"the batched function returned {len(results)} results "
                                    f"for a batch of {len(ready)} inputs; it must return one "
                                    "per input, in order")
        except C._Answered:
            return
        except BaseException as e:
            for chunk, idx, args, kwargs, _, _ in ready:
                out, n = out_of(chunk)
                n[0] += self._failure(out, idx, e, args, kwargs)
            return
        finally:
            self.input_var.set(None)
            self.call_var.set(None)
        for k, (chunk, idx, args, kwargs, _, _) in enumerate(ready):
            out, n = out_of(chunk)
            if failed is not None:
                n[0] += self._failure(out, idx, failed, args, kwargs, retry=False)
            else:
                self._one_result(out, idx, results[k], args, kwargs)
                n[0] += 1


class _WrongMethod:
    """An input of a batched class pool that names another method."""

    def __init__(self, got: Any, want: Optional[str]) -> None:
        self.got = got
        self.want = want

    def __str__(self) -> str:
        return f"this class pool serves its batched method {self.want!r}, not {self.got!r}"


async def _in_context(rt: PoolRuntime, ctx: "tuple[Any, Any, bytes]", coro: Any) -> Any:
    """Awaits ``coro`` in a task that sees the worker's input and call."""
    rt.input_var.set(ctx[0])
    rt.call_var.set(ctx[1])
    _call_q.set(ctx[2])
    return await coro
