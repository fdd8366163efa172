"""WSGI apps (``@wsgi_app``; PEP 3333) on worker threads.

Each request runs on one of ``max_inputs`` threads (skiff._web._Pool) with a
PEP 3333 environ: ``SCRIPT_NAME`` is the endpoint's prefix, ``PATH_INFO``
the decoded path below it, ``wsgi.input`` a file whose reads block on the
request body's frames (and acknowledge them).  A list or tuple result is
one ``wres``; any other iterable streams, each chunk as it comes.  An
exception before the headers went out is a 500; after, the stream is cut.
WebSocket handshakes get 501 (the runtime refuses them).
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional

from skiff import _web as W


class _Input:
    """``wsgi.input``: the request body as it arrives."""

    def __init__(self, s: Any) -> None:
        self.s = s
        self.buf = bytearray()
        self.eof = False

    def _more(self) -> bool:
        if self.eof:
            return False
        try:
            c = self.s.read()
        except W.Aborted:
            raise OSError("the client disconnected") from None
        if not c:
            self.eof = True
            return False
        self.buf += c
        return True

    def _take(self, n: int) -> bytes:
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read(self, size: Optional[int] = -1) -> bytes:
        if size is None or size < 0:
            while self._more():
                pass
            return self._take(len(self.buf))
        while len(self.buf) < size and self._more():
            pass
        return self._take(size)

    def read1(self, size: int = -1) -> bytes:
        if not self.buf:
            self._more()
        return self._take(len(self.buf) if size is None or size < 0 else size)

    def readline(self, size: Optional[int] = -1) -> bytes:
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                n = i + 1
                break
            start = len(self.buf)
            if size is not None and 0 <= size <= len(self.buf):
                n = size
                break
            if not self._more():
                n = len(self.buf)
                break
        if size is not None and size >= 0:
            n = min(n, size)
        return self._take(n)

    def readlines(self, hint: int = -1) -> "list[bytes]":
        lines = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> "_Input":
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def environ(s: Any) -> "dict[str, Any]":
    hdr = s.hdr
    path, _, qs = (hdr.get("p") or "/").partition("?")
    name, port = W.server_addr(hdr)
    client = hdr.get("client") or ["", 0]
    scheme = hdr.get("scheme") or "http"
    if "%" in path:
        from urllib.parse import unquote_to_bytes
        path_info = unquote_to_bytes(path).decode("latin-1")
    else:
        path_info = path
    env: "dict[str, Any]" = {
        "REQUEST_METHOD": hdr.get("m") or "GET", "SCRIPT_NAME": hdr.get("root") or "",
        "PATH_INFO": path_info, "QUERY_STRING": qs, "SERVER_NAME": name,
        "SERVER_PORT": str(port), "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": str(client[0]), "REMOTE_PORT": str(client[1]),
        "wsgi.version": (1, 0), "wsgi.url_scheme": scheme, "wsgi.input": _Input(s),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
        "wsgi.run_once": False, "wsgi.input_terminated": True}
    for k, v in hdr.get("h") or ():
        v = W.to_bytes(v).decode("latin-1")
        if k == "content-type":
            env["CONTENT_TYPE"] = v
        elif k == "content-length":
            env["CONTENT_LENGTH"] = v
        else:
            key = "HTTP_" + k.upper().replace("-", "_")
            old = env.get(key)
            env[key] = v if old is None else old + ("; " if k == "cookie" else ",") + v
    return env


class _Response:
    """start_response and the sending of the body."""

    def __init__(self, s: Any) -> None:
        self.s = s
        self.status: Optional[int] = None
        self.headers: "list[list[str]]" = []
        self.sent = False

    def start_response(self, status: str, headers: "list[tuple[str, str]]",
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        self.status = int(str(status).split(" ", 1)[0])
        self.headers = [[str(k), str(v)] for k, v in headers]
        return self.write

    def write(self, data: bytes) -> None:
        self.send(data, False)

    def send(self, data: bytes, end: bool) -> None:
        if not self.sent:
            if self.status is None:
                raise AssertionError("the WSGI app sent body bytes before start_response")
            self.sent = True
            self.s.start(self.status, self.headers, data, end)
        else:
            self.s.data(data, end)


def _handle(app: Callable[..., Any], s: Any) -> None:
    r = _Response(s)
    try:
        result = app(environ(s), r.start_response)
    except W.Aborted:
        return
    except Exception as e:
        _failed(s, r, e)
        return
    try:
        if type(result) in (list, tuple) and not r.sent:
            if r.status is None:
                raise AssertionError("the WSGI app returned without calling start_response")
            r.send(b"".join(result), True)
        else:
            for chunk in result:
                if chunk:
                    r.send(chunk, False)
            r.send(b"", True)
    except W.Aborted:
        pass
    except Exception as e:
        _failed(s, r, e)
    finally:
        close = getattr(result, "close", None)
        if callable(close):
            try:
                close()
            except Exception as e:
                W.log_exception(e, "Exception closing a WSGI response:")


def _failed(s: Any, r: _Response, e: BaseException) -> None:
    if s.aborted:
        return      # the client went away (wsgi.input raised OSError)
    W.log_exception(e, f"Exception in WSGI application ({s.hdr.get('m')} "
                       f"{s.hdr.get('root', '')}{s.hdr.get('p')}):")
    if not r.sent:
        s.complete(W.internal_error(s.id))


def setup(rt: Any, target: Callable[[], Any]) -> Optional[str]:
    app = target()
    if not callable(app):
        raise TypeError(f"the @wsgi_app function returned {type(app).__name__}, "
                        "not a WSGI application")

    def start(hdr: "dict[str, Any]", body: bytes) -> None:
        rt.submit(lambda s: _handle(app, s), rt.thread_stream(hdr, body))

    rt.start = start
    return None
