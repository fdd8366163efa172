"""The connection to a Skiff server (docs/api.md), and the one module-level client.

``SKIFF_SERVER`` says where the server is: ``unix:/path/to/skiff.sock`` or
``http://HOST:PORT`` (then every request carries ``Authorization: Bearer
$SKIFF_TOKEN``).  Unset, it is ``unix:$SKIFF_HOME/skiff.sock`` with SKIFF_HOME
defaulting to ``~/.skiff``; in that case, when nothing answers on the socket,
the client starts ``skiff server`` in the background (the embedded default)
and says so once on stderr.

Plain requests share a small pool of keep-alive connections (safe to use from
several threads).  Streams (NDJSON and byte streams) each get a connection of
their own, closed when the stream ends or its iterator is dropped, so a slow
stream never holds up other calls.

Binary requests (``request_raw``: function calls, input chunks, outputs) take
a leaner path, since ``.remote()`` round trips are measured in microseconds:
each thread keeps one keep-alive socket of its own and speaks the little
HTTP/1.1 it needs directly, without http.client and without JSON.  After a
fork the child opens new connections instead of sharing its parent's.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from typing import Any, Iterator, NamedTuple, Optional, Union

from . import exception
from .exception import ConnectionError, Error


class _Lazy:
    """http.client (with email.*), urllib.parse, shutil and subprocess cost
    tens of milliseconds to import, and a function container importing skiff
    needs none of them to start: they are imported on first use."""

    @property
    def client(self) -> Any:
        import http.client
        return http.client

    @property
    def parse(self) -> Any:
        import urllib.parse
        return urllib.parse


http = _Lazy()
urllib = _Lazy()

# Seconds a plain request may take before the client gives up on the server.
DEFAULT_TIMEOUT = 120.0
# Seconds `skiff server` started in the background gets to answer /v1/health.
AUTOSTART_TIMEOUT = 10.0
# Idle keep-alive connections kept per client.
_POOL_MAX = 4

JSONBody = Optional[dict[str, Any]]

# Bumped in a forked child: connections made before the fork belong to the parent.
_fork_gen = 0


def _after_fork() -> None:
    global _fork_gen
    _fork_gen += 1


os.register_at_fork(after_in_child=_after_fork)

# Bodies up to this size are sent in one write together with the head.
_COALESCE_MAX = 65536
_HEAD_MAX = 65536


class RawResponse(NamedTuple):
    """An answer to ``request_raw``: header names are lower case; ``body`` is
    bytes-like (bytes, or a bytearray for large bodies)."""

    status: int
    headers: dict[str, str]
    body: Union[bytes, bytearray]


class _Closed(Exception):
    """The server closed the connection; ``idle`` when it sent no byte of an
    answer (then the request was never read and may be sent again)."""

    def __init__(self, idle: bool) -> None:
        super().__init__("connection closed")
        self.idle = idle


class _RawConn:
    """One keep-alive connection for binary requests, owned by one thread."""

    __slots__ = ("sock", "buf", "timeout", "gen")

    def __init__(self, sock: socket.socket, timeout: Optional[float]) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.timeout = timeout
        self.gen = _fork_gen

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def set_timeout(self, timeout: Optional[float]) -> None:
        if timeout != self.timeout:
            self.sock.settimeout(timeout)
            self.timeout = timeout

    def _fill(self, got_any: bool) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise _Closed(idle=not got_any and not self.buf)
        self.buf += chunk

    def _take(self, n: int) -> Union[bytes, bytearray]:
        buf = self.buf
        if len(buf) >= n:
            out = bytes(buf[:n])
            del buf[:n]
            return out
        body = bytearray(n)
        have = len(buf)
        body[:have] = buf
        buf.clear()
        view = memoryview(body)
        while have < n:
            k = self.sock.recv_into(view[have:])
            if not k:
                raise _Closed(idle=False)
            have += k
        return body

    def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > _HEAD_MAX:
                raise http.client.HTTPException("a chunk-size line is too long")
            self._fill(True)

    def _chunked(self) -> bytes:
        parts = []
        while True:
            size_line = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise http.client.HTTPException(f"bad chunk size {size_line[:20]!r}") from None
            if size == 0:
                while self._line():  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            parts.append(self._take(size))
            if self._line():
                raise http.client.HTTPException("a chunk is not followed by CRLF")

    def read_response(self, method: str) -> tuple[RawResponse, bool]:
        """The next answer, and whether the connection may carry another."""
        buf = self.buf
        while True:
            i = buf.find(b"\r\n\r\n")
            if i >= 0:
                break
            if len(buf) > _HEAD_MAX:
                raise http.client.HTTPException("the answer's header is too long")
            self._fill(False)
        lines = bytes(buf[:i]).split(b"\r\n")
        del buf[:i + 4]
        try:
            status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError):
            raise http.client.HTTPException(f"bad status line {lines[0][:80]!r}") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
        keep = headers.get("connection", "").lower() != "close"
        body: Union[bytes, bytearray]
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._chunked()
        elif "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        else:  # delimited by the end of the connection
            while True:
                try:
                    self._fill(True)
                except _Closed:
                    break
            body = bytes(buf)
            buf.clear()
            keep = False
        return RawResponse(status, headers, body), keep


_unix_conn_class: Any = None


def _UnixHTTPConnection(path: str, timeout: Optional[float] = None) -> Any:
    """An HTTPConnection whose transport is a unix stream socket (the class
    is made on first use, with http.client)."""
    global _unix_conn_class
    if _unix_conn_class is None:
        class UnixHTTPConnection(http.client.HTTPConnection):
            def __init__(self, path: str, timeout: Optional[float] = None) -> None:
                super().__init__("localhost", timeout=timeout)
                self.unix_path = path

            def connect(self) -> None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(self.timeout)
                    sock.connect(self.unix_path)
                except BaseException:
                    sock.close()
                    raise
                self.sock = sock

        _unix_conn_class = UnixHTTPConnection
    return _unix_conn_class(path, timeout=timeout)


def default_home() -> str:
    """``$SKIFF_HOME``, else ``~/.skiff``."""
    return os.environ.get("SKIFF_HOME") or os.path.join(os.path.expanduser("~"), ".skiff")


def _error_from_body(status: int, raw: bytes) -> Error:
    try:
        err = json.loads(raw)["error"]
        return exception.from_code(str(err["code"]), str(err["message"]), status)
    except (ValueError, KeyError, TypeError):
        text = raw.decode("utf-8", "replace").strip()[:500]
        return exception.ServerError(f"the server answered HTTP {status}: {text}", status=status)


class Client:
    """One Skiff server's API.  ``server`` is a ``SKIFF_SERVER`` value."""

    def __init__(self, server: str, *, token: Optional[str] = None,
                 autostart_home: Optional[str] = None) -> None:
        """``autostart_home``: when set (and server is a unix socket), start
        ``skiff server --home autostart_home`` if nothing answers."""
        self.server = server
        self._token = token
        self._autostart_home = autostart_home
        self._unix_path: Optional[str] = None
        self._host = ""
        self._port: Optional[int] = None
        self._https = False
        if server.startswith("unix:"):
            self._unix_path = server[len("unix:"):]
            if not self._unix_path:
                raise exception.InvalidError(f"SKIFF_SERVER={server!r} names no socket path")
        elif server.startswith(("http://", "https://")):
            url = urllib.parse.urlsplit(server)
            if not url.hostname:
                raise exception.InvalidError(f"SKIFF_SERVER={server!r} names no host")
            self._host = url.hostname
            self._port = url.port
            self._https = url.scheme == "https"
        else:
            raise exception.InvalidError(
                f"SKIFF_SERVER={server!r}: expected unix:/path/to/skiff.sock or http://HOST:PORT")
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._started_server = False
        self._gen = _fork_gen
        self._tls = threading.local()
        auth = ""
        if self._unix_path is None and self._token:
            auth = f"Authorization: Bearer {self._token}\r\n"
        host = "localhost" if self._unix_path is not None else (
            self._host if self._port is None else f"{self._host}:{self._port}")
        self._raw_tail = (f"Host: {host}\r\nContent-Type: application/octet-stream\r\n"
                          f"{auth}\r\n").encode("latin-1")

    @classmethod
    def from_env(cls) -> "Client":
        """The client that ``SKIFF_SERVER``, ``SKIFF_TOKEN`` and ``SKIFF_HOME`` describe."""
        home = default_home()
        default = "unix:" + os.path.join(home, "skiff.sock")
        server = os.environ.get("SKIFF_SERVER") or default
        autostart = home if server == default else None
        return cls(server, token=os.environ.get("SKIFF_TOKEN"), autostart_home=autostart)

    def __repr__(self) -> str:
        return f"Client({self.server!r})"

    # -- connections ---------------------------------------------------------

    def _new_conn(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        if self._unix_path is not None:
            return _UnixHTTPConnection(self._unix_path, timeout=timeout)
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _connect(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        """A new, connected connection; starts a server first where that is ours to do."""
        conn = self._new_conn(timeout)
        try:
            conn.connect()
            return conn
        except (FileNotFoundError, ConnectionRefusedError) as e:
            conn.close()
            if self._autostart_home is None:
                raise ConnectionError(f"no Skiff server answers at {self.server}: {e}") from None
        except OSError as e:
            conn.close()
            raise ConnectionError(f"cannot reach the Skiff server at {self.server}: {e}") from None
        self._start_server()
        conn = self._new_conn(timeout)
        try:
            conn.connect()
        except OSError as e:
            conn.close()
            raise ConnectionError(f"cannot reach the Skiff server at {self.server}: {e}") from None
        return conn

    def _forked(self) -> None:
        """Forgets (without closing) the parent's connections in a forked child."""
        with self._lock:
            self._idle = []
        self._tls = threading.local()
        self._gen = _fork_gen

    def _checkout(self, timeout: Optional[float]) -> tuple[http.client.HTTPConnection, bool]:
        if self._gen != _fork_gen:
            self._forked()
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            return self._connect(timeout), False
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn, True

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < _POOL_MAX:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Closes the idle connections and this thread's binary connection
        (the client stays usable)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        raw = getattr(self._tls, "raw", None)
        self._tls.raw = None
        if raw is not None:
            raw.close()

    def _headers(self, ctype: Optional[str]) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if ctype:
            headers["Content-Type"] = ctype
        if self._unix_path is None and self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    # -- requests ------------------------------------------------------------

    def request(self, method: str, path: str, body: JSONBody = None, *,
                data: Optional[bytes] = None,
                timeout: Optional[float] = DEFAULT_TIMEOUT) -> Any:
        """Sends one request and returns the decoded JSON answer.

        ``body`` is sent as JSON; ``data`` as raw bytes (for stdin).  An error
        answer raises the ``skiff.exception`` class its ``code`` maps to.
        """
        if data is not None:
            payload: Optional[bytes] = data
            ctype: Optional[str] = "application/octet-stream"
        elif body is not None:
            payload = json.dumps(body).encode()
            ctype = "application/json"
        else:
            payload = b"" if method in ("POST", "PUT", "PATCH") else None
            ctype = None
        headers = self._headers(ctype)
        for attempt in (0, 1):
            conn, reused = self._checkout(timeout)
            try:
                conn.request(method, path, body=payload, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                # The server closed an idle keep-alive connection under us:
                # nothing was processed, so sending again is safe.
                if reused and attempt == 0:
                    continue
                raise ConnectionError(
                    f"the Skiff server at {self.server} closed the connection "
                    f"during {method} {path}") from None
            except socket.timeout:
                conn.close()
                raise ConnectionError(
                    f"the Skiff server at {self.server} did not answer {method} {path} "
                    f"within {timeout:g} s") from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise ConnectionError(
                    f"talking to the Skiff server at {self.server} failed: {e}") from None
            if resp.will_close:
                conn.close()
            else:
                self._checkin(conn)
            if resp.status >= 400:
                raise _error_from_body(resp.status, raw)
            if not raw.strip():
                return {}
            try:
                return json.loads(raw)
            except ValueError:
                raise exception.ServerError(
                    f"the server's answer to {method} {path} is not JSON: {raw[:200]!r}") from None
        raise AssertionError("unreachable")

    def _raw_connect(self, timeout: Optional[float]) -> _RawConn:
        conn = self._connect(timeout)
        sock = conn.sock
        conn.sock = None  # the socket is ours now; conn must not close it
        assert sock is not None
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        return _RawConn(sock, timeout)

    def request_raw(self, method: str, path: str, data: bytes = b"", *,
                    timeout: Optional[float] = DEFAULT_TIMEOUT) -> RawResponse:
        """Sends ``data`` (octet-stream) and returns the whole answer.

        Uses this thread's keep-alive connection (made on first use).  A 4xx
        or 5xx answer raises like ``request``; a timeout or a broken
        connection raises ConnectionError.  When the wait is interrupted
        (KeyboardInterrupt) the connection is closed, which tells the server
        that nobody waits for the answer any more.
        """
        tls = self._tls
        if self._gen != _fork_gen:
            self._forked()
            tls = self._tls
        head = (f"{method} {path} HTTP/1.1\r\nContent-Length: {len(data)}\r\n"
                .encode("latin-1") + self._raw_tail)
        for attempt in (0, 1):
            conn: Optional[_RawConn] = getattr(tls, "raw", None)
            reused = conn is not None
            tls.raw = None
            if conn is None:
                conn = self._raw_connect(timeout)
            try:
                conn.set_timeout(timeout)
                if len(data) <= _COALESCE_MAX:
                    conn.sock.sendall(head + data)
                else:
                    conn.sock.sendall(head)
                    conn.sock.sendall(data)
                resp, keep = conn.read_response(method)
            except (_Closed, BrokenPipeError, ConnectionResetError) as e:
                conn.close()
                idle = e.idle if isinstance(e, _Closed) else not conn.buf
                # A reused keep-alive connection the server closed while it was
                # idle: nothing was read, so sending again is safe.
                if reused and attempt == 0 and idle:
                    continue
                raise ConnectionError(
                    f"the Skiff server at {self.server} closed the connection "
                    f"during {method} {path}") from None
            except socket.timeout:
                conn.close()
                raise ConnectionError(
                    f"the Skiff server at {self.server} did not answer {method} {path} "
                    f"within {timeout:g} s") from None
            except (OSError, http.client.HTTPException, ValueError) as e:
                conn.close()
                raise ConnectionError(
                    f"talking to the Skiff server at {self.server} failed: {e}") from None
            except BaseException:
                conn.close()
                raise
            if keep:
                tls.raw = conn
            else:
                conn.close()
            if resp.status >= 400:
                raise _error_from_body(resp.status, bytes(resp.body))
            return resp
        raise AssertionError("unreachable")

    def _open_stream(self, method: str, path: str,
                     body: JSONBody) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        payload = json.dumps(body).encode() if body is not None else (
            b"" if method == "POST" else None)
        conn = self._connect(None)
        try:
            conn.request(method, path, body=payload,
                         headers=self._headers("application/json" if body is not None else None))
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise ConnectionError(
                f"talking to the Skiff server at {self.server} failed: {e}") from None
        if resp.status >= 400:
            raw = resp.read()
            conn.close()
            raise _error_from_body(resp.status, raw)
        return conn, resp

    def stream_ndjson(self, method: str, path: str, body: JSONBody = None) -> Iterator[Any]:
        """Iterates over the JSON objects of an NDJSON stream, one per line, as they come."""
        conn, resp = self._open_stream(method, path, body)
        try:
            while True:
                try:
                    line = resp.readline()
                except (OSError, http.client.HTTPException) as e:
                    raise ConnectionError(f"the stream {method} {path} broke: {e}") from None
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except ValueError:
                    raise exception.ServerError(
                        f"bad NDJSON line in {method} {path}: {line[:200]!r}") from None
        finally:
            conn.close()

    def stream_bytes(self, method: str, path: str, body: JSONBody = None) -> Iterator[bytes]:
        """Iterates over a byte stream's chunks as they arrive, until EOF."""
        conn, resp = self._open_stream(method, path, body)
        try:
            while True:
                try:
                    chunk = resp.read1(65536)
                except (OSError, http.client.HTTPException) as e:
                    raise ConnectionError(f"the stream {method} {path} broke: {e}") from None
                if not chunk:
                    return
                yield chunk
        finally:
            conn.close()

    def health(self) -> dict[str, Any]:
        """``GET /v1/health``."""
        result: dict[str, Any] = self.request("GET", "/v1/health")
        return result

    # -- starting a server ---------------------------------------------------

    def _answers(self) -> bool:
        conn = self._new_conn(1.0)
        try:
            conn.request("GET", "/v1/health", headers=self._headers(None))
            resp = conn.getresponse()
            resp.read()
            return resp.status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def _start_server(self) -> None:
        """Starts ``skiff server`` detached and waits for it to answer.

        A lock file in SKIFF_HOME keeps two processes that find no server at
        the same moment from starting two.
        """
        home = self._autostart_home
        assert home is not None
        with self._start_lock:
            os.makedirs(home, mode=0o700, exist_ok=True)
            lock_fd = os.open(os.path.join(home, "server-start.lock"),
                              os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                if self._answers():
                    return
                self._spawn_server(home)
            finally:
                os.close(lock_fd)

    def _spawn_server(self, home: str) -> None:
        import shutil
        import subprocess
        binary = os.environ.get("SKIFF_BIN") or shutil.which("skiff")
        if not binary:
            raise ConnectionError(
                f"no Skiff server answers at {self.server}, and no `skiff` binary was found "
                "to start one: put skiff on PATH (make install) or set SKIFF_BIN")
        log_path = os.path.join(home, "server.log")
        env = dict(os.environ, SKIFF_HOME=home)
        try:
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    [binary, "server", "--home", home], stdin=subprocess.DEVNULL,
                    stdout=log, stderr=log, start_new_session=True, close_fds=True, env=env)
        except OSError as e:
            raise ConnectionError(
                f"no Skiff server answers at {self.server}, and starting `{binary} server` "
                f"failed: {e}") from None
        deadline = time.monotonic() + AUTOSTART_TIMEOUT
        while not self._answers():
            rc = proc.poll()
            if rc is not None:
                raise ConnectionError(
                    f"`{binary} server` exited with status {rc} before answering; "
                    f"its log is {log_path}:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                raise ConnectionError(
                    f"`{binary} server` (pid {proc.pid}) did not answer on {self.server} "
                    f"within {AUTOSTART_TIMEOUT:g} s; its log is {log_path}:\n{_tail(log_path)}")
            time.sleep(0.05)
        # The server outlives us on purpose: forget the child without a warning.
        proc.returncode = 0
        if not self._started_server:
            self._started_server = True
            print(f"skiff: started a server in the background (SKIFF_HOME={home}, "
                  f"log: {log_path})", file=sys.stderr, flush=True)


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


_client: Optional[Client] = None
_client_lock = threading.Lock()


def get_client() -> Client:
    """The module-level client, made from the environment on first use."""
    global _client
    with _client_lock:
        if _client is None:
            _client = Client.from_env()
        return _client


def set_client(client: Optional[Client]) -> None:
    """Replaces the module-level client (None: make a new one from the
    environment on next use).  For tests and for programs that switch servers."""
    global _client
    with _client_lock:
        old, _client = _client, client
    if old is not None and old is not client:
        old.close()


