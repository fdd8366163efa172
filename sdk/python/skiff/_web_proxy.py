"""``@web_server(port)``: relay requests to a server the user's function started.

The function starts the server (a subprocess, a thread) and returns; the
container polls ``127.0.0.1:port`` until it accepts a TCP connection, then
says ``ready`` (past ``startup_timeout``: ``import_error``).  Each request
is relayed with http.client on a worker thread, which keeps one keep-alive
connection to the server.  The request body streams as it arrives (chunked
when its length is unknown); the response streams back as it is read.  A
connection the server closed while idle is retried once on a fresh one.
WebSocket handshakes get 501.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable, Optional

from skiff import _web as W

_HOP = frozenset(("connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
                  "trailer", "upgrade", "expect"))
_POLL_S = 0.05
_READ = 1 << 16


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
        return True
    except OSError:
        return False


class _Relay:
    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()

    def _conn(self) -> "tuple[Any, bool]":
        import http.client
        c = getattr(self.local, "conn", None)
        if c is not None:
            return c, True
        c = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port)
        return c, False

    def _drop(self) -> None:
        c = getattr(self.local, "conn", None)
        if c is not None:
            c.close()
            self.local.conn = None

    def handle(self, s: Any) -> None:
        import http.client
        hdr = s.hdr
        method = hdr.get("m") or "GET"
        headers = [(k, v) for k, v in hdr.get("h") or () if k not in _HOP]
        complete = s.body_end
        body = s.read_all() if complete else b""
        if complete:
            headers = [(k, v) for k, v in headers if k != "content-length"]
            if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS", "TRACE"):
                headers.append(("content-length", str(len(body))))
        chunked = not complete and not any(k == "content-length" for k, _ in headers)
        for attempt in (0, 1):
            c, reused = self._conn()
            try:
                c.putrequest(method, hdr.get("p") or "/", skip_host=True,
                             skip_accept_encoding=True)
                for k, v in headers:
                    c.putheader(k, v)
                if chunked:
                    c.putheader("transfer-encoding", "chunked")
                c.endheaders()
                if complete:
                    if body:
                        c.send(body)
                else:
                    self._send_body(c, s, chunked)
                resp = c.getresponse()
                break
            except W.Aborted:
                self._drop()
                return
            except (http.client.HTTPException, OSError) as e:
                self._drop()
                if reused and complete and attempt == 0:
                    continue
                W.log_exception(e, f"web_server: no answer from 127.0.0.1:{self.port} for "
                                   f"{method} {hdr.get('p')}:")
                s.complete(W.text_response(s.id, 502, "Bad Gateway"))
                return
        self._relay_response(s, resp)

    def _send_body(self, c: Any, s: Any, chunked: bool) -> None:
        while True:
            piece = s.read()
            if not piece:
                break
            c.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            c.send(b"0\r\n\r\n")

    def _relay_response(self, s: Any, resp: Any) -> None:
        headers = [[k, v] for k, v in resp.getheaders() if k.lower() not in _HOP]
        started = False
        try:
            first = resp.read1(_READ)
            started = True
            if resp.isclosed():
                headers = [h for h in headers if h[0].lower() != "content-length"]
                s.start(resp.status, headers, first, True)
            else:
                s.start(resp.status, headers, first, False)
                while True:
                    piece = resp.read1(_READ)
                    if not piece:
                        break
                    s.data(piece)
                s.data(b"", True)
        except W.Aborted:
            self._drop()
            return
        except Exception as e:
            self._drop()
            W.log_exception(e, f"web_server: reading the response from 127.0.0.1:{self.port}:")
            if not started:
                s.complete(W.text_response(s.id, 502, "Bad Gateway"))
            return
        if resp.will_close:
            self._drop()


def setup(rt: Any, target: Callable[[], Any]) -> Optional[str]:
    web = rt.web
    port = int(web.get("port") or 8000)
    timeout = float(web.get("startup_timeout") or 5.0)
    target()
    deadline = time.monotonic() + timeout
    while not _port_open(port):
        if time.monotonic() >= deadline:
            return (f"the web server never accepted a connection on 127.0.0.1:{port} "
                    f"within startup_timeout={timeout:g} s (it must listen on port {port}, "
                    f"on 0.0.0.0 or 127.0.0.1)")
        time.sleep(_POLL_S)
    relay = _Relay(port)

    def start(hdr: "dict[str, Any]", body: bytes) -> None:
        rt.submit(relay.handle, rt.thread_stream(hdr, body))

    rt.start = start
    return None
