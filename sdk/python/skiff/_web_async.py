"""Web streams on one asyncio loop: ASGI apps and async endpoint functions.

The loop runs on a thread of its own (``_Loop``); the main thread reads
frames and passes each stream's to it with ``call_soon_threadsafe``, in
order.  An ``AStream`` lives on the loop thread: ``receive``/``send`` are
the ASGI callables of its request (HTTP or WebSocket, ASGI 3, spec 2.3).
Frames the loop sends are gathered in one buffer and written once per loop
iteration, so a burst of small responses costs one ``send``.

At most ``max_inputs`` streams run at once (tasks); later ones wait in order.
Lifespan: ``lifespan.startup`` runs before ``ready`` when the app takes part
(an app that raises on the lifespan scope, or returns, does not); a
``lifespan.startup.failed`` is the endpoint's ``import_error``.
``lifespan.shutdown`` runs after ``stop``, once the last stream ended.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any, Callable, Optional

from skiff import _container as C
from skiff import _web as W

_ASGI = {"version": "3.0", "spec_version": "2.3"}
_SHUTDOWN_S = 10.0


class _Loop:
    """The loop thread, its send buffer and its task count."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.loop = asyncio.new_event_loop()
        self.out = bytearray()
        self.flushing = False
        self.running = 0
        self.pending: "deque[tuple[AStream, Callable[[AStream], Any]]]" = deque()
        threading.Thread(target=self.loop.run_forever, name="skiff-web-loop",
                         daemon=True).start()

    def send(self, data: bytes) -> None:
        """Loop thread: queue `data`; it goes out at the end of this iteration."""
        self.out += data
        if not self.flushing:
            self.flushing = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flushing = False
        data, self.out = self.out, bytearray()
        try:
            self.rt.send(data)
        except C._ServerGone:
            pass        # the main thread sees the end of the socket too

    def run(self, coro: Any, timeout: Optional[float] = None) -> Any:
        """From another thread: run `coro` on the loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def open(self, s: "AStream", handler: Callable[["AStream"], Any]) -> None:
        """Main thread: start (or queue) `handler(s)` on the loop."""
        self.rt.streams[s.id] = s
        self.loop.call_soon_threadsafe(self._open, s, handler)

    def _open(self, s: "AStream", handler: Callable[["AStream"], Any]) -> None:
        if self.running < self.rt.max_inputs:
            self.running += 1
            self.loop.create_task(self._run(s, handler))
        else:
            self.pending.append((s, handler))

    async def _run(self, s: "AStream", handler: Callable[["AStream"], Any]) -> None:
        while True:
            try:
                if not s.aborted:       # gone while it waited for a slot
                    await handler(s)
            except (W.Aborted, C._ServerGone):
                pass
            except BaseException as e:
                W.log_exception(e, f"Exception in web handler for {s.hdr.get('m')} "
                                   f"{s.hdr.get('p')}:")
            finally:
                s.finish()
            if not self.pending:
                self.running -= 1
                return
            s, handler = self.pending.popleft()


class AStream:
    """One request or WebSocket session on the loop thread.  The main thread
    only calls ``feed`` (which hops to the loop)."""

    def __init__(self, lp: _Loop, hdr: "dict[str, Any]", body: bytes,
                 extra_headers: "list[list[str]]") -> None:
        self.lp = lp
        self.id: int = hdr["id"]
        self.hdr = hdr
        self.ws = bool(hdr.get("ws"))
        self.extra = extra_headers
        self.chunks: "deque[Any]" = deque((body,)) if body else deque()
        self.body_end = bool(hdr.get("end", True))
        self.body_done = False      # the app saw the last of the body
        self.aborted = False
        self.acked = self.sent = self.unacked = 0
        self.ev: Optional[asyncio.Event] = None
        self.start_msg: "Optional[tuple[int, list[list[str]]]]" = None
        self.started = False        # wres (or wsacc) went out
        self.complete = False       # the app sent its last body bytes
        self.ended = False          # an end flag or wend went out
        self.connected = False      # websocket.connect delivered
        self.accepted = False
        self.closed_in: "Optional[tuple[int, str]]" = None
        self.closed_out = False

    # main thread
    def feed(self, t: str, hdr: "dict[str, Any]", body: bytes) -> None:
        self.lp.loop.call_soon_threadsafe(self._feed, t, hdr, body)

    # loop thread from here on
    def _feed(self, t: str, hdr: "dict[str, Any]", body: bytes) -> None:
        if t == "wbody":
            if body:
                self.chunks.append(body)
            if hdr.get("end"):
                self.body_end = True
        elif t == "wack":
            self.acked += int(hdr.get("n") or 0)
        elif t == "wabort":
            self.aborted = True
        elif t == "wsmsg":
            self.chunks.append((body, bool(hdr.get("bin"))))
        elif t == "wsclose":
            self.closed_in = (int(hdr.get("code") or 1005), str(hdr.get("reason") or ""))
        else:
            return
        if self.ev is not None:
            self.ev.set()

    async def _wait(self) -> None:
        if self.ev is None:
            self.ev = asyncio.Event()
        self.ev.clear()
        await self.ev.wait()

    def _consumed(self, n: int) -> None:
        self.unacked += n
        if self.unacked >= W.ACK_STEP:
            self.lp.send(W.wrack(self.id, self.unacked))
            self.unacked = 0

    async def read_all(self) -> bytes:
        parts = []
        while True:
            if self.chunks:
                c = self.chunks.popleft()
                self._consumed(len(c))
                parts.append(c)
            elif self.body_end:
                return b"".join(parts)
            elif self.aborted:
                raise W.Aborted
            else:
                await self._wait()

    def emit(self, data: bytes) -> None:
        """Send a whole one-frame response."""
        if not self.aborted:
            self.lp.send(data)
            self.ended = True

    async def push(self, data: Any, end: bool,
                   first: "Optional[tuple[int, Any]]" = None) -> None:
        """As _web._TStream.push: the window-bound start or rest of a body."""
        n = len(data)
        pos = 0
        while True:
            while n and not self.aborted and self.sent - self.acked >= W.WINDOW:
                await self._wait()
            if self.aborted:
                raise W.Aborted
            room = W.WINDOW - (self.sent - self.acked)
            piece = bytes(data) if pos == 0 and n <= room else bytes(data[pos:pos + room])
            pos += len(piece)
            self.sent += len(piece)
            last = pos >= n
            e = end and last
            if first is not None:
                self.lp.send(W.wres(self.id, first[0], first[1], piece, e))
                first = None
            else:
                self.lp.send(W.wdata(self.id, piece, e))
            if e:
                self.ended = True
            if last:
                return

    def finish(self) -> None:
        if not self.ended:
            self.ended = True
            self.lp.send(W.wend(self.id))
        self.lp.rt.streams.pop(self.id, None)

    # ASGI: HTTP --------------------------------------------------------------

    async def receive(self) -> "dict[str, Any]":
        if self.ws:
            return await self._ws_receive()
        while not self.body_done:
            if self.chunks:
                c = self.chunks.popleft()
                more = bool(self.chunks) or not self.body_end
                self.body_done = not more
                self._consumed(len(c))
                return {"type": "http.request", "body": c, "more_body": more}
            if self.body_end:
                self.body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.aborted:
                return {"type": "http.disconnect"}
            await self._wait()
        while not self.aborted and not self.complete:
            await self._wait()
        return {"type": "http.disconnect"}

    async def send(self, msg: "dict[str, Any]") -> None:
        t = msg["type"]
        if self.ws and not t.startswith("websocket.http."):
            return await self._ws_send(t, msg)
        if t in ("http.response.start", "websocket.http.response.start"):
            if self.start_msg is not None or self.accepted:
                raise RuntimeError(f"unexpected ASGI message {t!r}: the response already started")
            headers = [[W.from_bytes(k), W.from_bytes(v)] for k, v in msg.get("headers") or ()]
            self.start_msg = (int(msg["status"]), headers + self.extra)
        elif t in ("http.response.body", "websocket.http.response.body"):
            if self.start_msg is None:
                raise RuntimeError(f"unexpected ASGI message {t!r} before the response's start")
            if self.complete:
                raise RuntimeError(f"unexpected ASGI message {t!r} after the response completed")
            body = msg.get("body") or b""
            more = bool(msg.get("more_body"))
            if not more:
                self.complete = True
                if self.ev is not None:
                    self.ev.set()       # a receive() waiting for disconnect returns
            if self.aborted:
                return
            if not self.started:
                self.started = True
                if not more:
                    status, headers = self.start_msg
                    if self.ws:
                        self.closed_out = True
                    self.emit(W.wres(self.id, status, headers, body, True))
                    return
                first: Any = self.start_msg
            elif body or not more:
                first = None
            else:
                return
            try:
                await self.push(body, not more if first is None else False, first)
            except W.Aborted:
                pass        # ASGI 2.3: sends after a disconnect do nothing
        elif t == "http.response.trailers":
            pass
        else:
            raise RuntimeError(f"unexpected ASGI message {t!r}")

    # ASGI: WebSocket -----------------------------------------------------------

    async def _ws_receive(self) -> "dict[str, Any]":
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        while True:
            if self.chunks:
                payload, binary = self.chunks.popleft()
                self._consumed(len(payload))
                if binary:
                    return {"type": "websocket.receive", "bytes": payload}
                return {"type": "websocket.receive", "text": payload.decode("utf-8", "replace")}
            if self.closed_in is not None:
                code, reason = self.closed_in
                return {"type": "websocket.disconnect", "code": code, "reason": reason}
            if self.aborted:
                return {"type": "websocket.disconnect", "code": 1006, "reason": ""}
            await self._wait()

    async def _ws_send(self, t: str, msg: "dict[str, Any]") -> None:
        if t == "websocket.accept":
            if self.accepted or self.started:
                raise RuntimeError("websocket.accept sent twice, or after a response")
            self.accepted = self.started = True
            h = []
            if msg.get("subprotocol"):
                h.append(["sec-websocket-protocol", str(msg["subprotocol"])])
            h += [[W.from_bytes(k), W.from_bytes(v)] for k, v in msg.get("headers") or ()]
            if not self.aborted:
                self.lp.send(W.frame({"t": "wsacc", "id": self.id, "h": h}))
        elif t == "websocket.send":
            if not self.accepted:
                raise RuntimeError("websocket.send before websocket.accept")
            if self.closed_out or self.closed_in is not None or self.aborted:
                return      # the session is over; the message is dropped
            b = msg.get("bytes")
            if b is not None:
                payload, binary = bytes(b), True
            else:
                payload, binary = str(msg.get("text") or "").encode(), False
            n = len(payload)
            # A message is never split: one bigger than the window goes out
            # when nothing else is unacknowledged.
            while (not self.aborted and self.sent - self.acked > 0
                   and self.sent - self.acked + n > W.WINDOW):
                await self._wait()
            if self.aborted:
                return
            self.sent += n
            self.lp.send(W.frame({"t": "wsmsg", "id": self.id, "bin": binary}, payload))
        elif t == "websocket.close":
            if not self.accepted:
                if not self.started:
                    self.started = self.closed_out = True
                    self.emit(W.text_response(self.id, 403, "Forbidden"))
                return
            if not self.closed_out:
                self.closed_out = True
                if not self.aborted:
                    self.lp.send(W.frame({"t": "wsclose", "id": self.id,
                                          "code": int(msg.get("code") or 1000),
                                          "reason": str(msg.get("reason") or "")}))
        else:
            raise RuntimeError(f"unexpected ASGI message {t!r}")

    def ws_close(self, code: int) -> None:
        """After the app returned or failed: close a session it left open (a
        client that closed first has its close answered by the gateway)."""
        if (self.accepted and not self.closed_out and not self.aborted
                and self.closed_in is None):
            self.closed_out = True
            self.lp.send(W.frame({"t": "wsclose", "id": self.id, "code": code, "reason": ""}))


# --- ASGI apps ---------------------------------------------------------------------

def _scope(s: AStream, state: Optional["dict[str, Any]"]) -> "dict[str, Any]":
    hdr = s.hdr
    path, _, qs = (hdr.get("p") or "/").partition("?")
    scheme = hdr.get("scheme") or "http"
    client = hdr.get("client")
    scope: "dict[str, Any]" = {
        "type": "http", "asgi": _ASGI, "http_version": "1.1", "scheme": scheme,
        "path": W.unquote(path), "raw_path": path.encode(), "query_string": qs.encode(),
        "root_path": hdr.get("root") or "",
        "headers": [(W.to_bytes(k), W.to_bytes(v)) for k, v in hdr.get("h") or ()],
        "client": (client[0], int(client[1])) if client else None,
        "server": W.server_addr(hdr)}
    if s.ws:
        scope["type"] = "websocket"
        scope["scheme"] = "wss" if scheme == "https" else "ws"
        proto = W.header(hdr, "sec-websocket-protocol")
        scope["subprotocols"] = [p.strip() for p in proto.split(",") if p.strip()] if proto else []
        scope["extensions"] = {"websocket.http.response": {}}
    else:
        scope["method"] = hdr.get("m") or "GET"
    if state is not None:
        scope["state"] = dict(state)
    return scope


class _App:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.state: "Optional[dict[str, Any]]" = None
        self.life_in: "Optional[asyncio.Queue[dict[str, Any]]]" = None
        self.life_task: Any = None
        self.life_done: Any = None

    async def handle(self, s: AStream) -> None:
        try:
            await self.app(_scope(s, self.state), s.receive, s.send)
        except BaseException as e:
            if isinstance(e, (W.Aborted, C._ServerGone)):
                raise
            W.log_exception(e, f"Exception in ASGI application ({s.hdr.get('m') or 'WebSocket'} "
                               f"{s.hdr.get('root', '')}{s.hdr.get('p')}):")
            if not s.started and not s.aborted:
                s.started = True
                s.emit(W.internal_error(s.id))
            elif s.ws:
                s.ws_close(1011)
            return
        if s.ws:
            if not s.started and not s.aborted:
                s.started = True
                s.emit(W.text_response(s.id, 403, "Forbidden"))
            s.ws_close(1000)
        elif not s.started and not s.aborted:
            import sys
            sys.stderr.write("ASGI application returned without starting a response\n")
            s.started = True
            s.emit(W.internal_error(s.id))

    # lifespan
    async def startup(self) -> Optional[str]:
        loop = asyncio.get_running_loop()
        self.life_in = asyncio.Queue()
        self.life_done = loop.create_future()
        state: "dict[str, Any]" = {}
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": state}

        async def send(msg: "dict[str, Any]") -> None:
            t = msg.get("type", "")
            if t.startswith("lifespan.") and not self.life_done.done():
                self.life_done.set_result(msg)

        async def run() -> None:
            try:
                await self.app(scope, self.life_in.get, send)  # type: ignore[union-attr]
            except BaseException:
                pass        # no lifespan support (or it failed: see life_done)

        self.life_in.put_nowait({"type": "lifespan.startup"})
        self.life_task = loop.create_task(run())
        await asyncio.wait({self.life_task, self.life_done}, return_when=asyncio.FIRST_COMPLETED)
        if not self.life_done.done():
            self.life_task = None       # the app does not take part in lifespan
            return None
        msg = self.life_done.result()
        if msg["type"] == "lifespan.startup.failed":
            return f"ASGI lifespan startup failed: {msg.get('message') or ''}".rstrip(": ")
        self.state = state
        return None

    async def shutdown(self) -> None:
        if self.life_task is None or self.life_task.done():
            return
        self.life_done = asyncio.get_running_loop().create_future()
        self.life_in.put_nowait({"type": "lifespan.shutdown"})  # type: ignore[union-attr]
        await asyncio.wait({self.life_task, self.life_done}, timeout=_SHUTDOWN_S,
                           return_when=asyncio.FIRST_COMPLETED)


def setup_asgi(rt: Any, target: Any, app: Any = None, cors: bool = False) -> Optional[str]:
    """An ASGI app (target() returns it, or `app`); cors: add
    access-control-allow-origin to responses of requests with an Origin."""
    lp = _Loop(rt)
    if app is None:
        app = target()
        if asyncio.iscoroutine(app):
            app = lp.run(app)
    a = _App(app)
    msg = lp.run(a.startup())
    if msg is not None:
        return msg
    rt.ws_ok = True

    def start(hdr: "dict[str, Any]", body: bytes) -> None:
        extra = [["access-control-allow-origin", "*"]] if cors and W.header(hdr, "origin") else []
        lp.open(AStream(lp, hdr, body, extra), a.handle)

    def on_stop() -> None:
        try:
            lp.run(a.shutdown(), _SHUTDOWN_S + 1)
        except Exception as e:
            W.log_exception(e, "Exception in ASGI lifespan shutdown:")

    rt.start = start
    rt.on_stop = on_stop
    return None


# --- async endpoint functions -----------------------------------------------------

def setup_function(rt: Any, ep: Any) -> None:
    """An ``async def`` (or async generator) @fastapi_endpoint function."""
    lp = _Loop(rt)

    def start(hdr: "dict[str, Any]", body: bytes) -> None:
        lp.open(AStream(lp, hdr, body, []), lambda s: _handle_function(ep, s))

    rt.start = start


async def _handle_function(ep: Any, s: AStream) -> None:
    from skiff import _web_fn as F
    hdr = s.hdr
    body = await s.read_all()
    try:
        r = ep.call(hdr, body)
        if asyncio.iscoroutine(r):
            r = await r
        fr = ep.full_frame(s.id, hdr, r)
    except BaseException as e:
        if isinstance(e, asyncio.CancelledError):
            raise
        s.emit(ep.error(s.id, hdr, e))
        return
    if fr is not None:
        s.emit(fr)
        return
    status, headers, it, sniff = ep.stream_parts(hdr, r)
    if hasattr(it, "__anext__"):
        nxt: Any = it.__anext__
        done: Any = StopAsyncIteration
    else:
        it = iter(it)
        loop = asyncio.get_running_loop()

        def step() -> Any:
            return next(it, F._END)

        async def nxt() -> Any:     # a sync iterator's items come from a thread
            item = await loop.run_in_executor(None, step)
            if item is F._END:
                raise StopAsyncIteration
            return item
        done = StopAsyncIteration
    try:
        first = F._chunk(await nxt())
    except done:
        s.emit(W.wres(s.id, status, F._first_headers(headers, b"", sniff), b"", True))
        return
    except BaseException as e:
        if isinstance(e, asyncio.CancelledError):
            raise
        s.emit(ep.error(s.id, hdr, e))
        await _close_any(it)
        return
    try:
        await s.push(first, False, (status, F._first_headers(headers, first, sniff)))
        while True:
            try:
                item = await nxt()
            except done:
                break
            await s.push(F._chunk(item), False)
        await s.push(b"", True)
    except W.Aborted:
        pass
    except BaseException as e:
        if isinstance(e, asyncio.CancelledError):
            raise
        W.log_exception(e, f"Exception in streamed response of {hdr.get('m')} {hdr.get('p')}:")
    finally:
        await _close_any(it)


async def _close_any(it: Any) -> None:
    from skiff import _web_fn as F
    if hasattr(it, "aclose"):
        await F._aclose(it)
    else:
        F._close(it)
