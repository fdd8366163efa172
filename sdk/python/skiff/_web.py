"""The container side of web endpoints (docs/protocol.md, "Web requests").

A container whose ``init`` carries ``"web"`` serves HTTP requests and
WebSocket sessions that the gateway sends as *streams* over the worker
socket, instead of input chunks.  ``serve`` is called by skiff._container
once the user's function is loaded; it returns the process's exit status.

Threads and ownership:

- The main thread reads every frame (``_Runtime.serve``) and hands each
  stream's frames to its stream object: ``_TStream`` for handlers that run on
  worker threads (sync functions, WSGI, ``web_server`` relays),
  skiff._web_async's ``AStream`` for handlers on the one asyncio loop thread
  (async functions, ASGI apps).  Writes to the socket from any thread go
  through ``_Runtime.send`` (one lock).
- Concurrency is bounded by ``max_inputs``: a pool of that many threads
  taking streams in order from one queue, or as many tasks on the loop;
  streams beyond that wait in order.
- The fast path (``function`` kind, one input at a time, a sync function, a
  complete body): the main thread calls the function itself, appends the
  one-frame response to a buffer and goes on with the next frame; the buffer
  is sent once no whole frame is left unread.  That is one ``recv`` and one
  ``send`` for a burst of requests, and no thread switch at all.

Windows: a handler that sends body bytes (``wres`` without ``end``,
``wdata``, ``wsmsg``) waits while 1 MiB is unacknowledged (``wack``); what
it reads of the request body is acknowledged with ``wrack`` in 64 KiB steps.

Kinds live in their own modules, imported only when used (cold start):
``function`` in skiff._web_fn, ``asgi`` (and FastAPI-built functions) in
skiff._web_async, ``wsgi`` in skiff._web_wsgi, ``server`` in skiff._web_proxy.
"""

from __future__ import annotations

import _thread
import json
import sys
from collections import deque
from typing import Any, Callable, Optional

from skiff import _container as C

WINDOW = 1 << 20
ACK_STEP = 1 << 16

TEXT = "text/plain; charset=utf-8"
_FRAME = C._FRAME


class Aborted(Exception):
    """The gateway gave up on the stream (``wabort``): stop producing."""


def frame(obj: "dict[str, Any]", body: "bytes | bytearray | memoryview" = b"") -> bytes:
    h = json.dumps(obj, separators=(",", ":")).encode()
    return b"".join((_FRAME.pack(len(h), len(body)), h, body))


def wres(sid: int, status: int, headers: "list[list[str]]", body: Any = b"",
         end: bool = True) -> bytes:
    return frame({"t": "wres", "id": sid, "s": status, "h": headers, "end": end}, body)


def wdata(sid: int, body: Any, end: bool) -> bytes:
    return frame_hdr_wdata(sid, end, len(body)) + bytes(body)


def frame_hdr_wdata(sid: int, end: bool, n: int) -> bytes:
    h = b'{"t":"wdata","id":%d,"end":%s}' % (sid, b"true" if end else b"false")
    return _FRAME.pack(len(h), n) + h


def wend(sid: int) -> bytes:
    h = b'{"t":"wend","id":%d}' % sid
    return _FRAME.pack(len(h), 0) + h


def wrack(sid: int, n: int) -> bytes:
    h = b'{"t":"wrack","id":%d,"n":%d}' % (sid, n)
    return _FRAME.pack(len(h), 0) + h


def text_response(sid: int, status: int, text: str) -> bytes:
    return wres(sid, status, [["content-type", TEXT]], text.encode())


def internal_error(sid: int) -> bytes:
    return text_response(sid, 500, "Internal Server Error")


def log_exception(e: BaseException, what: str) -> None:
    """The traceback goes to stderr, which becomes the app's logs."""
    try:
        sys.stderr.write(f"{what}\n{C._format_exc(e)}")
        sys.stderr.flush()
    except Exception:
        pass


def to_bytes(s: str) -> bytes:
    """A header string from the gateway as the bytes it stood for."""
    try:
        return s.encode("latin-1")
    except UnicodeEncodeError:
        return s.encode()


def from_bytes(b: Any) -> str:
    return b.decode("latin-1") if isinstance(b, (bytes, bytearray)) else str(b)


def header(hdr: "dict[str, Any]", name: str) -> Optional[str]:
    for k, v in hdr.get("h") or ():
        if k == name:
            return v
    return None


def server_addr(hdr: "dict[str, Any]") -> "tuple[str, int]":
    """(host, port) as the client addressed the server (its Host header)."""
    default = 443 if hdr.get("scheme") in ("https", "wss") else 80
    host = header(hdr, "host") or "localhost"
    if host.startswith("["):
        end = host.find("]")
        name, rest = host[1:end], host[end + 1:]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.partition(":")
    return name, int(port) if port.isdigit() else default


def unquote(s: str) -> str:
    if "%" not in s:
        return s
    from urllib.parse import unquote as u
    return u(s)


# --- streams run on threads ----------------------------------------------------

class _TStream:
    """One request whose handler runs on a worker thread.  The main thread
    feeds it (``feed``); the worker reads the body and sends the response.
    ``cond`` guards the fields both touch."""

    def __init__(self, rt: "_Runtime", hdr: "dict[str, Any]", body: bytes) -> None:
        import threading
        self.rt = rt
        self.id: int = hdr["id"]
        self.hdr = hdr
        self.cond = threading.Condition(_thread.allocate_lock())
        self.chunks: "deque[bytes]" = deque((body,)) if body else deque()
        self.body_end = bool(hdr.get("end", True))
        self.aborted = False
        self.acked = 0          # response bytes the gateway acknowledged
        self.sent = 0           # response bytes counted against the window
        self.unacked = 0        # request bytes read but not yet acknowledged
        self.ended = False      # an end flag or wend went out

    # main thread
    def feed(self, t: str, hdr: "dict[str, Any]", body: bytes) -> None:
        with self.cond:
            if t == "wbody":
                if body:
                    self.chunks.append(body)
                if hdr.get("end"):
                    self.body_end = True
            elif t == "wack":
                self.acked += int(hdr.get("n") or 0)
            elif t == "wabort":
                self.aborted = True
            else:
                return
            self.cond.notify_all()

    # worker thread
    def read(self) -> bytes:
        """The next piece of the request body, b"" at its end; Aborted."""
        with self.cond:
            while not self.chunks:
                if self.body_end:
                    return b""
                if self.aborted:
                    raise Aborted
                self.cond.wait()
            c = self.chunks.popleft()
        self.unacked += len(c)
        if self.unacked >= ACK_STEP:
            self.rt.send(wrack(self.id, self.unacked))
            self.unacked = 0
        return c

    def read_all(self) -> bytes:
        parts = []
        while True:
            c = self.read()
            if not c:
                return b"".join(parts)
            parts.append(c)

    def complete(self, data: bytes) -> None:
        """Send a whole response already made into one frame (end true)."""
        if not self.aborted:
            self.rt.send(data)
            self.ended = True

    def start(self, status: int, headers: "list[list[str]]", body: Any = b"",
              end: bool = True) -> None:
        if end:
            self.complete(wres(self.id, status, headers, body, True))
        else:
            self.push(body, False, (status, headers))

    def data(self, body: Any, end: bool = False) -> None:
        if body or end:
            self.push(body, end, None)

    def push(self, data: Any, end: bool, first: "Optional[tuple[int, Any]]") -> None:
        """Send `data` as the start of the response (`first`: status and
        headers) or as wdata, in pieces that fit the window; Aborted."""
        n = len(data)
        pos = 0
        while True:
            with self.cond:
                while n and not self.aborted and self.sent - self.acked >= WINDOW:
                    self.cond.wait()
                if self.aborted:
                    raise Aborted
                room = WINDOW - (self.sent - self.acked)
            piece = data if pos == 0 and n <= room else memoryview(data)[pos:pos + room]
            pos += len(piece)
            self.sent += len(piece)
            last = pos >= n
            e = end and last
            if first is not None:
                out = wres(self.id, first[0], first[1], piece, e)
                first = None
            else:
                out = frame_hdr_wdata(self.id, e, len(piece)) + bytes(piece)
            self.rt.send(out)
            if e:
                self.ended = True
            if last:
                return

    def finish(self) -> None:
        """The handler is done: the slot is free."""
        try:
            if not self.ended:
                self.ended = True
                self.rt.send(wend(self.id))
        finally:
            self.rt.streams.pop(self.id, None)


class _Pool:
    """``n`` worker threads at most, started as needed, taking (job, stream)
    pairs in order."""

    def __init__(self, n: int) -> None:
        import queue
        self.q: Any = queue.SimpleQueue()
        self.n = n
        self.threads = 0
        self.idle = 0
        self.waiting = 0
        self.lock = _thread.allocate_lock()

    def submit(self, job: Callable[[Any], None], s: Any) -> None:
        with self.lock:
            self.waiting += 1
            spawn = self.waiting > self.idle and self.threads < self.n
            if spawn:
                self.threads += 1
        self.q.put((job, s))
        if spawn:
            import threading
            threading.Thread(target=self._work, name="skiff-web", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self.lock:
                self.idle += 1
            job, s = self.q.get()
            with self.lock:
                self.idle -= 1
                self.waiting -= 1
            run_job(job, s)


def run_job(job: Callable[[Any], None], s: Any) -> None:
    try:
        if not s.aborted:       # gone while it waited for a thread
            job(s)
    except (Aborted, C._ServerGone):
        pass
    except BaseException as e:
        log_exception(e, f"Exception in web handler for {s.hdr.get('m')} {s.hdr.get('p')}:")
        if not s.ended and not s.aborted:
            try:
                s.complete(internal_error(s.id))
            except C._ServerGone:
                pass
    finally:
        try:
            s.finish()
        except C._ServerGone:
            pass


# --- the frame loop --------------------------------------------------------------

class _Runtime:
    """Reads frames on the main thread and routes them to streams.

    A kind sets ``start(hdr, body)`` (open a stream for a request), and maybe
    ``inline(hdr, body, out)`` (the fast path), ``ws_ok`` (WebSocket
    handshakes go to ``start`` rather than a 501) and ``on_stop`` (run after
    the last stream ended, before ``serve`` returns)."""

    def __init__(self, conn: Any, init: "dict[str, Any]") -> None:
        self.conn = conn
        self.init = init
        self.web: "dict[str, Any]" = init.get("web") or {}
        self.max_inputs = max(1, int(init.get("max_inputs") or 1))
        self.lock = _thread.allocate_lock()
        # id -> stream, for streams handed to threads or the loop; the main
        # thread adds, the stream's finish() removes.
        self.streams: "dict[int, Any]" = {}
        self.stopping = False
        self.inline: Optional[Callable[[Any, bytes, bytearray], None]] = None
        self.start: Callable[[Any, bytes], None] = self._refuse
        self.ws_ok = False
        self.on_stop: Optional[Callable[[], None]] = None
        self.pool: Optional[_Pool] = None

    def send(self, data: Any) -> None:
        with self.lock:
            self.conn.send(data)

    def submit(self, job: Callable[[Any], None], s: Any) -> None:
        if self.pool is None:
            self.pool = _Pool(self.max_inputs)
        self.pool.submit(job, s)

    def thread_stream(self, hdr: "dict[str, Any]", body: bytes) -> _TStream:
        s = _TStream(self, hdr, body)
        self.streams[s.id] = s
        return s

    def _refuse(self, hdr: "dict[str, Any]", body: bytes) -> None:
        self.send(text_response(hdr["id"], 501, "Not Implemented"))

    def serve(self) -> None:
        conn = self.conn
        streams = self.streams
        self.send(C._frame(b'{"t":"ready"}') + C._frame(b'{"t":"want","n":%d}' % self.max_inputs))
        out = bytearray()
        while True:
            if out and not _frame_buffered(conn):
                self.send(out)
                out = bytearray()
            if self.stopping and not streams:
                break
            try:
                hdr, body = conn.recv()
            except TimeoutError:
                continue        # polling for the last streams after stop
            t = hdr.get("t")
            if t == "wreq":
                inline = self.inline
                if self.stopping:
                    out += text_response(hdr["id"], 503, "Service Unavailable")
                elif hdr.get("ws") and not self.ws_ok:
                    out += text_response(hdr["id"], 501, "Not Implemented")
                elif inline is not None and not streams and hdr.get("end", True):
                    inline(hdr, body, out)
                else:
                    self.start(hdr, body)
            elif t == "stop":
                self.stopping = True
                conn.sock.settimeout(0.05)
            else:
                s = streams.get(hdr.get("id"))      # type: ignore[arg-type]
                if s is not None:
                    s.feed(t, hdr, body)
        if out:
            self.send(out)
        if self.on_stop is not None:
            self.on_stop()


def _frame_buffered(conn: Any) -> bool:
    """Whether a whole frame is already in the connection's buffer."""
    avail = conn.hi - conn.lo
    if avail < 8:
        return False
    h, b = _FRAME.unpack_from(conn.buf, conn.lo)
    return avail >= 8 + h + b


def startup_failed(conn: Any, message: str) -> int:
    """Report an endpoint that cannot serve as ``import_error``; exit status 1."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    try:
        conn.send(C._json_frame({"t": "import_error", "message": message}))
    except C._ServerGone:
        pass
    return 1


def serve(conn: Any, target: Any, init: "dict[str, Any]") -> int:
    """Serve the endpoint until ``stop`` (0) or a failed start (1)."""
    rt = _Runtime(conn, init)
    kind = rt.web.get("kind")
    msg: Optional[str] = None
    try:
        if kind == "function":
            from skiff import _web_fn
            msg = _web_fn.setup(rt, target)
        elif kind == "asgi":
            from skiff import _web_async
            msg = _web_async.setup_asgi(rt, target)
        elif kind == "wsgi":
            from skiff import _web_wsgi
            msg = _web_wsgi.setup(rt, target)
        elif kind == "server":
            from skiff import _web_proxy
            msg = _web_proxy.setup(rt, target)
        else:
            raise ValueError(f"unknown web endpoint kind {kind!r}")
    except C._Terminate:
        raise
    except BaseException as e:
        C._import_failed(conn, e)
        return 1
    if msg is not None:
        return startup_failed(conn, msg)
    rt.serve()
    return 0
