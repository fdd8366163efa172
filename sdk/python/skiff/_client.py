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
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from typing import Any, Iterator, Optional

from . import exception
from .exception import ConnectionError, Error

# Seconds a plain request may take before the client gives up on the server.
DEFAULT_TIMEOUT = 120.0
# Seconds `skiff server` started in the background gets to answer /v1/health.
AUTOSTART_TIMEOUT = 10.0
# Idle keep-alive connections kept per client.
_POOL_MAX = 4

JSONBody = Optional[dict[str, Any]]


class _UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTPConnection whose transport is a unix stream socket."""

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

    def _checkout(self, timeout: Optional[float]) -> tuple[http.client.HTTPConnection, bool]:
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
        """Closes the idle connections (the client stays usable)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

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


