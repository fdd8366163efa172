"""Map calls on the wire: a function call with many inputs (docs/api.md,
``POST /v1/functions/<fid>/map``, ``/v1/calls/<fc>/inputs`` and ``/outputs``).

A ``MapCall`` has two sides that run at once:

- the feeder (a background thread) reads the user's iterator, pickles inputs
  into chunks and posts them in frames, several frames per request when they
  are ready together.  Until the server has measured the function (an
  output came back, or its ``chunk_hint`` left its default), chunks are
  single inputs and at most PROBE_INFLIGHT are out, so that a slow
  function's first inputs spread over containers instead of queueing in one
  chunk; then each chunk follows the server's ``chunk_hint``, growing at most
  twofold per chunk, and stays under a few MiB.  It keeps at most
  ``max_inflight`` inputs without an output, so a lazy or endless iterator is
  read only as fast as the function keeps up;
- the consumer (the caller's thread) long-polls for outputs and hands them
  out in batches, reordered by input index when asked.

When the consumer stops early (an exception, ``break``, Ctrl-C), the call is
cancelled on the server and the feeder stops.  An error of the feeder (the
iterator raised, an input can't be pickled) cancels the call and is raised
to the consumer in place of the outputs.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any, Iterator, Optional, Sequence
from ._quote import quote

from . import _client
from . import _payload as P
from .exception import ServerError

# Long-poll length of one /outputs request (the server's default is 30).
POLL_S = 25.0
# A chunk's pickled size stays under this (more inputs per chunk as they shrink).
CHUNK_BYTES = 4 << 20
# One inputs request carries at most this many bytes and frames.
POST_BYTES = 8 << 20
POST_FRAMES = 256
# Inputs in flight (sent, no output yet): at most this many, and at most
# INFLIGHT_BYTES of pickled inputs, but never fewer than MIN_INFLIGHT.
MAX_INFLIGHT = 100_000
INFLIGHT_BYTES = 256 << 20
MIN_INFLIGHT = 8
# Before the first output arrives: single-input chunks, at most this many in flight.
PROBE_INFLIGHT = 8
# A post carries the frames made within this long of its first one.
POST_S = 0.0005
# A chunk is sent once its first input has waited this long for more.
FLUSH_S = 0.02
# The server's hint before it has measured anything.
DEFAULT_HINT = 16


def next_chunk_size(prev: int, hint: int, avg_bytes: float, measured: bool) -> int:
    """How many inputs the next chunk takes (see the module comment)."""
    if not measured:
        return 1
    # The first chunk of a measured function starts at an eighth of the hint
    # (the hint is ~20 ms of work), then chunks double up to it.
    size = max(1, hint // 8) if prev <= 0 else max(1, min(hint, 2 * prev))
    if avg_bytes > 0:
        size = min(size, max(1, int(CHUNK_BYTES // avg_bytes)))
    return size


def inflight_limit(avg_bytes: float, measured: bool) -> int:
    if not measured:
        return PROBE_INFLIGHT
    if avg_bytes <= 0:
        return MAX_INFLIGHT
    return max(MIN_INFLIGHT, min(MAX_INFLIGHT, int(INFLIGHT_BYTES // avg_bytes)))


def take(it: Iterator[Any], size: int) -> tuple[list[Any], bool, bool]:
    """Up to ``size`` items of ``it``: (items, it is exhausted, flushed early).

    Items are pulled in runs that double while the iterator keeps up (so a
    fast one is read at C speed, by islice) and shrink back to one at a time
    when it is slow; once the first item has waited FLUSH_S, the chunk is
    sent as it is, so that a slow producer's inputs start running."""
    items: list[Any] = []
    run = 1
    t0 = time.monotonic()
    while len(items) < size:
        want = min(run, size - len(items))
        got = list(itertools.islice(it, want))
        items += got
        if len(got) < want:
            return items, True, False
        now = time.monotonic()
        if now - t0 > FLUSH_S:
            return items, False, True
        run = min(run * 2, 1024) if now - t0 < FLUSH_S / 20 else 1
    return items, False, False


class _Failed:
    """An output that is an exception (to raise, or return with
    return_exceptions), told apart from a function that returns one."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class MapCall:
    """One map (or generator) call of function ``function_id``."""

    def __init__(self, client: _client.Client, function_id: str, where: str,
                 param_names: Sequence[str] = (), generator: bool = False,
                 method: Optional[str] = None) -> None:
        self._client = client
        self._method = method   # a class pool's method: chunks of (method, args, kwargs)
        self._where = where
        self._param_names = param_names
        body = json.dumps({"generator": generator}).encode()
        resp = client.request_raw("POST", f"/v1/functions/{quote(function_id, safe='')}/map", body)
        created = json.loads(resp.body)
        self.call_id = str(created["function_call_id"])
        # The server's chunk size for this function, if it has measured it.
        self._hint = int(created.get("chunk_hint") or DEFAULT_HINT)
        self._base = f"/v1/calls/{quote(self.call_id, safe='')}"
        self._cond = threading.Condition()
        self._sent = 0          # inputs posted
        self._received = 0      # final outputs received
        self._fed_all = False   # last=1 was posted
        self._stopped = False   # the consumer is gone: stop feeding
        self._feed_error: Optional[BaseException] = None
        self._done = False
        self._feeder: Optional[threading.Thread] = None

    # -- feeding -------------------------------------------------------------

    def _post(self, frames: list[bytes], last: bool) -> int:
        path = self._base + ("/inputs?last=1" if last else "/inputs")
        resp = self._client.request_raw("POST", path, b"".join(frames))
        try:
            return int(json.loads(resp.body).get("chunk_hint") or DEFAULT_HINT)
        except (ValueError, AttributeError):
            return DEFAULT_HINT

    def _wait_room(self, limit: int, bounded: bool) -> int:
        with self._cond:
            while bounded and not self._stopped and self._sent - self._received >= limit:
                self._cond.wait(1.0)
            if self._stopped:
                return 0
            return limit - (self._sent - self._received) if bounded else limit

    def feed(self, inputs: Iterator[tuple[tuple[Any, ...], dict[str, Any]]],
             bounded: bool = True) -> None:
        """Posts every input of the iterator, then ``last=1``.  ``bounded``
        keeps the number in flight in check (needs a consumer)."""
        args1 = type(inputs).__name__ == "_Args1"   # raw single arguments
        it = iter(inputs)
        start = 0
        hint, prev, avg_bytes = self._hint, 0, 0.0
        exhausted = False
        len_first = -1
        while not exhausted:
            # Measured: an output came back, or the server's hint is no longer
            # its default.  Without a consumer, just follow the hint.
            measured = self._received > 0 or hint != DEFAULT_HINT or not bounded
            room = self._wait_room(inflight_limit(avg_bytes, measured), bounded)
            if room <= 0:
                return
            frames: list[bytes] = []
            post_bytes = 0
            flushed = False
            t_post = time.monotonic()
            # The first frame goes at once, so that containers start while the
            # rest is pickled; later posts carry what is ready within POST_S.
            while (room > 0 and post_bytes < POST_BYTES and len(frames) < POST_FRAMES
                   and not (frames and (start == len_first or
                                        time.monotonic() - t_post > POST_S))):
                measured = measured or self._received > 0
                size = min(next_chunk_size(prev, hint, avg_bytes, measured), room)
                items, exhausted, flushed = take(it, size)
                if not items:
                    break
                if self._method is not None:
                    chunk = P.method_chunk(self._method, items, start, self._where,
                                           self._param_names)
                elif args1:
                    chunk = P.args1_chunk(items, start, self._where, self._param_names)
                else:
                    chunk = P.inputs_chunk(items, start, self._where, self._param_names)
                frames.append(P.frame(start, len(items), chunk))
                n = len(items)
                avg_bytes = len(chunk) / n if avg_bytes == 0 else 0.8 * avg_bytes + 0.2 * len(chunk) / n
                if len_first < 0:
                    len_first = n
                start += n
                room -= n
                prev = n
                post_bytes += len(chunk)
                if exhausted or flushed or self._stopped:
                    break
            if self._stopped:
                return
            with self._cond:
                self._sent = start
            hint = self._post(frames, last=exhausted)
        with self._cond:
            self._fed_all = True
            self._cond.notify_all()

    def _feed_thread(self, inputs: Iterator[tuple[tuple[Any, ...], dict[str, Any]]]) -> None:
        try:
            self.feed(inputs)
        except BaseException as e:  # noqa: B902 - handed to the consumer
            with self._cond:
                if self._stopped:
                    return
                self._feed_error = e
            self._abort()

    def start_feeding(self, inputs: Iterator[tuple[tuple[Any, ...], dict[str, Any]]]) -> None:
        self._feeder = threading.Thread(target=self._feed_thread, args=(inputs,),
                                        name=f"skiff-map-feed-{self.call_id}", daemon=True)
        self._feeder.start()

    def _abort(self) -> None:
        """Ends the call on the server: no more inputs, the rest cancelled."""
        try:
            if not self._fed_all:
                self._client.request_raw("POST", self._base + "/inputs?last=1", b"")
                self._fed_all = True
        except Exception:
            pass
        try:
            self._client.request("POST", self._base + "/cancel", timeout=10)
        except Exception:
            pass

    # -- consuming -----------------------------------------------------------

    def poll(self) -> list[tuple[int, int, bytes]]:
        """One long poll: the records that arrived (maybe none)."""
        resp = self._client.request_raw(
            "GET", f"{self._base}/outputs?timeout={POLL_S:g}", timeout=POLL_S + 60)
        if resp.headers.get("skiff-call-done") == "1":
            self._done = True
        return P.parse_records(resp.body) if resp.body else []

    def outputs(self, order: bool) -> Iterator[tuple[list[Any], bool]]:
        """Batches of outputs as (values, any failed), in input order when
        ``order``; a failed input's value is a ``_Failed``.  A run of
        successes in order (status 6) is handed on as the list it came in.
        Ends when the server says the call is done."""
        nxt = 0
        held: dict[int, Any] = {}
        loads = P.loads
        ok = P.STATUS_OK
        batch_ok = P.STATUS_BATCH_OK
        while not self._done:
            records = self.poll()
            if self._feed_error is not None:
                raise self._feed_error
            if not records:
                continue
            got = 0
            for _, status, payload in records:
                got += int.from_bytes(payload[:4], "little") if status == batch_ok else 1
            with self._cond:
                self._received += got
                self._cond.notify_all()
            batch: list[Any] = []
            failed = False
            for idx, status, payload in records:
                if status == batch_ok:
                    n = int.from_bytes(payload[:4], "little")
                    try:
                        values = loads(payload[4:])
                    except Exception as e:
                        values = [_Failed(P.DeserializationError(
                            f"the results of inputs {idx}..{idx + n - 1} could not be "
                            f"unpickled here: {type(e).__name__}: {e}"))] * n
                        failed = True
                elif status == ok:
                    n = 1
                    try:
                        values = [loads(payload)]
                    except Exception as e:
                        values = [_Failed(P.DeserializationError(
                            f"the result of input {idx} could not be unpickled here: "
                            f"{type(e).__name__}: {e}"))]
                        failed = True
                else:
                    n = 1
                    values = [_Failed(P.output_exception(status, payload))]
                    failed = True
                if not order:
                    batch += values
                elif idx == nxt and not held:
                    batch += values
                    nxt += n
                else:
                    for k, v in enumerate(values):
                        held[idx + k] = v
                    while nxt in held:
                        v = held.pop(nxt)
                        failed = failed or type(v) is _Failed
                        batch.append(v)
                        nxt += 1
            if batch:
                yield batch, failed
        if self._feed_error is not None:
            raise self._feed_error
        if held:
            raise ServerError(
                f"the server ended {self.call_id} without the outputs of "
                f"{nxt}..{min(held) - 1}")
        if self._received < self._sent:
            raise ServerError(
                f"the server ended {self.call_id} after {self._received} of "
                f"{self._sent} outputs")

    def generator_items(self) -> Iterator[list[Any]]:
        """Batches of a generator call's items, in order; raises the
        generator's error where it comes."""
        nxt = 0
        held: dict[int, Any] = {}
        finished = False
        while not finished:
            if self._done:
                raise ServerError(f"the server ended {self.call_id} without its done record")
            records = self.poll()
            batch = []
            for idx, status, payload in records:
                if status == P.STATUS_GEN_ITEM:
                    held[idx] = P.decode(status, payload)
                elif status == P.STATUS_GEN_DONE:
                    finished = True
                else:
                    while nxt in held:
                        batch.append(held.pop(nxt))
                        nxt += 1
                    if batch:
                        yield batch
                    raise P.output_exception(status, payload)
            while nxt in held:
                batch.append(held.pop(nxt))
                nxt += 1
            if batch:
                yield batch
        self._done = True

    def close(self) -> None:
        """Stops feeding and cancels the call unless it is done."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if not self._done:
            self._done = True
            self._abort()
