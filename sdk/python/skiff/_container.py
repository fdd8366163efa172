"""The function container's runtime: ``python3 -m skiff._container``.

It speaks docs/protocol.md over ``$SKIFF_WORKER_SOCKET``: ``hello``, then the
server's ``init`` names the user's function; the runtime imports it (or
unpickles it), says ``ready`` and asks for input chunks one at a time with
``want``.  Each chunk's inputs run in order on the main thread; their output
records (docs/api.md, "Payloads") are buffered and sent in ``output`` frames,
then ``done``.  The server's ``stop`` frame, server EOF or SIGTERM end the
process with status 0; an import failure is reported as ``import_error`` and
ends it with status 1.

A class pool (``init["cls"]``, from ``@app.cls``; see skiff._container_cls)
makes one instance of the user's class and runs its ``@enter`` hooks before
``ready`` (a failure there is an ``import_error``); its inputs ``(method,
args, kwargs)`` become calls of one dispatcher, ``dispatch(method, *args,
**kwargs)``, so that the loops below serve classes unchanged.  Its ``@exit``
hooks run when the process ends by ``stop``, EOF or SIGTERM.

With ``max_inputs`` > 1 (``@concurrent``) or ``batch`` (``@batched``) the
loop is skiff._container_pool's instead: it reads frames on the main thread
and runs chunks on threads (or asyncio tasks), or in batches.

A web endpoint (``init["web"]``, docs/protocol.md "Web requests") is served
by skiff._web instead: the gateway's HTTP and WebSocket streams rather than
input chunks.

Cold start and the per-input path are what this module is measured on, so it
imports only small stdlib modules at start (asyncio, traceback and
cloudpickle only when needed) and the loop in ``_Runtime._run_plain`` keeps
its work per input to one clock read, one context-variable set, the call,
one ``pickle.dumps`` and two appends to a bytearray.

Timeouts use one ITIMER_REAL per chunk rather than one per input (two
syscalls an input would be most of a no-op's cost): the SIGALRM handler
compares the clock with ``_deadline``, the running input's deadline, and
either re-arms for the time left or raises ``_Timeout`` into the user's code.
``_deadline`` is 0.0 while the runtime's own code runs, so the exception only
ever lands inside the ``try`` around a user call.

stdout and stderr stay the process's own: the server turns them into log
lines.  Nothing of the protocol is ever written to them.
"""

from time import time as _wall

# When this runtime's first line ran (the interpreter has started): the
# server's cold-start breakdown splits there (docs/api.md, "Cold starts").
_T0 = _wall()

import contextvars  # noqa: E402
import json
import os
import pickle
import signal
import socket
import struct
import sys
from time import monotonic
from types import FunctionType
from typing import Any, Callable, Optional

_FRAME = struct.Struct("<II")      # hdr_len, body_len
_RECORD = struct.Struct("<IBI")    # idx, status, payload len
_OK, _USER_ERROR, _SYSTEM_ERROR, _GEN_ITEM, _GEN_DONE, _RETRY_ARGS, _BATCH_OK = range(7)
_U32 = struct.Struct("<I")

# Buffered records go out once the first of them is this old, once they pass
# _FLUSH_BYTES, or as soon as an input took longer than _SLOW_INPUT (then a
# record per frame costs little, and holding one back would delay it by a
# whole input's run time).
_FLUSH_AGE = 0.010
_FLUSH_BYTES = 1 << 20
_SLOW_INPUT = 0.001
# The server refuses frames with bodies past 2 GiB; one record must fit with
# room to spare for a retry-args record's header.
_MAX_PAYLOAD = (2 << 30) - (1 << 16)

# Extra module roots inside the container (docs/api.md, POST /v1/functions);
# /root holds Image.add_local_python_source's modules, as in Modal.
_PATH_DIRS = ("/skiff/app", "/skiff/extra", "/root")
# The name a user module the client ran as a script is imported under, so its
# `if __name__ == "__main__":` block does not run in the container.
_MAIN_ALIAS = "__skiff_main__"

_CO_GENERATOR = 0x20
_CO_COROUTINE = 0x80
_CO_ASYNC_GENERATOR = 0x200

_HERE = os.path.abspath(__file__)
# The runtime's other modules (their frames are left out of tracebacks too).
_RUNTIME_FILES = frozenset(os.path.join(os.path.dirname(_HERE), n)
                           for n in ("_container_pool.py", "_container_cls.py", "_web.py",
                                     "_build_fn.py",
                                     "_web_fn.py", "_web_async.py", "_web_wsgi.py",
                                     "_web_proxy.py"))


class _Timeout(BaseException):
    """Raised by the SIGALRM handler into a user call past its deadline."""


class _Terminate(BaseException):
    """Raised by the SIGTERM handler: finish nothing, exit 0."""


class _ServerGone(Exception):
    """The worker socket reached EOF or broke."""


class _Answered(BaseException):
    """The input already has its answer (skiff._container_pool's watchdog
    answered it with a timeout while it ran): record nothing more."""


# Absolute monotonic deadline of the user call running now; 0.0 when the
# runtime's own code runs.  _hold is set while a generator's item is being
# sent: the deadline still counts but the handler must not raise.
_deadline = 0.0
_hold = False
_timeout = 0.0


# The batch loop (_run_args1) does not set a deadline per input: the alarm
# ticks every timeout/8 and raises once the same input has been running for
# 8 ticks, so a timeout fires between timeout and 1.125 x timeout.
_FAST_TICKS = 8
_fast_ref: Any = None
_fast_seen = -1
_fast_count = 0


def _on_alarm(signum: int, frame: Any) -> None:
    global _fast_seen, _fast_count
    ref = _fast_ref
    if ref is not None:
        pos = ref.position()
        if pos != _fast_seen:
            _fast_seen, _fast_count = pos, 0
        else:
            _fast_count += 1
            if _fast_count >= _FAST_TICKS:
                _fast_count = 0
                signal.setitimer(signal.ITIMER_REAL, _timeout / _FAST_TICKS)
                raise _Timeout
        signal.setitimer(signal.ITIMER_REAL, _timeout / _FAST_TICKS)
        return
    d = _deadline
    if not d:
        # Between inputs of a chunk: check again a full timeout from now,
        # which is before the next input's deadline can pass.
        signal.setitimer(signal.ITIMER_REAL, _timeout)
        return
    left = d - monotonic()
    if left > 0.0:
        signal.setitimer(signal.ITIMER_REAL, left + 0.0005)
        return
    if _hold:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        return
    # Should the user's code swallow the exception, raise it again later.
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    raise _Timeout


def _on_term(signum: int, frame: Any) -> None:
    raise _Terminate


# --- frames over the worker socket -------------------------------------------

class _Conn:
    """The worker socket: length-prefixed frames both ways.  Reads go through
    one growing bytearray filled with recv_into, so a frame that arrives in
    pieces, or several frames in one read, cost no extra copies."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.connect(path)
        self.buf = bytearray(1 << 16)
        self.lo = 0
        self.hi = 0

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise _ServerGone from e

    def recv(self) -> "tuple[dict[str, Any], bytes]":
        """The next frame's header and body; _ServerGone at EOF."""
        while True:
            avail = self.hi - self.lo
            if avail >= 8:
                hdr_len, body_len = _FRAME.unpack_from(self.buf, self.lo)
                need = 8 + hdr_len + body_len
                if avail >= need:
                    return self._take(hdr_len, body_len)
            else:
                need = 8
            self._fill(need)

    def _take(self, hdr_len: int, body_len: int) -> "tuple[dict[str, Any], bytes]":
        a = self.lo + 8
        b = a + hdr_len
        mv = memoryview(self.buf)
        hdr = json.loads(mv[a:b].tobytes())
        body = mv[b:b + body_len].tobytes()
        mv.release()
        self.lo = b + body_len
        if self.lo == self.hi:
            self.lo = self.hi = 0
            if len(self.buf) > (4 << 20):
                self.buf = bytearray(1 << 16)   # give back a big frame's room
        return hdr, body

    def _fill(self, need: int) -> None:
        """Read until `need` bytes from `lo` are buffered."""
        buf = self.buf
        if len(buf) - self.lo < need:
            avail = self.hi - self.lo
            buf[:avail] = buf[self.lo:self.hi]
            self.lo, self.hi = 0, avail
            if len(buf) < need:
                buf.extend(bytes(need - len(buf)))
        while self.hi - self.lo < need:
            mv = memoryview(buf)
            try:
                got = self.sock.recv_into(mv[self.hi:])
            except ConnectionResetError as e:
                raise _ServerGone from e
            finally:
                mv.release()
            if not got:
                raise _ServerGone
            self.hi += got


def _frame(hdr: bytes, body: "bytes | bytearray" = b"") -> bytes:
    return b"".join((_FRAME.pack(len(hdr), len(body)), hdr, body))


def _json_frame(obj: "dict[str, Any]") -> bytes:
    return _frame(json.dumps(obj, separators=(",", ":")).encode())


_WANT = _frame(b'{"t":"want","n":1}')


# --- pickling ----------------------------------------------------------------

_cloudpickle_mod: Any = None


def _cloudpickle() -> Any:
    """cloudpickle when importable (from /skiff/extra), else None."""
    global _cloudpickle_mod
    if _cloudpickle_mod is None:
        try:
            import cloudpickle
            _cloudpickle_mod = cloudpickle
        except ImportError:
            _cloudpickle_mod = False
    return _cloudpickle_mod or None


def _dump(obj: Any) -> bytes:
    """pickle, or cloudpickle for what pickle refuses (lambdas, classes that
    came by value); raises what pickle raised when neither can."""
    try:
        return pickle.dumps(obj, 5)
    except Exception:
        cp = _cloudpickle()
        if cp is None:
            raise
        return cp.dumps(obj, protocol=5)


def _internal_file(name: str) -> bool:
    return (name == _HERE or name in _RUNTIME_FILES or name.startswith("<frozen importlib")
            or os.sep + "importlib" + os.sep in name or os.sep + "asyncio" + os.sep in name)


def _format_exc(e: BaseException) -> str:
    """The traceback as Python prints it, less the runtime's leading frames."""
    import traceback
    tb = e.__traceback__
    while tb is not None and _internal_file(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(e), e, tb))


def _safe_repr(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception:
        return f"<unprintable {type(obj).__name__} object>"


def _safe_str(obj: Any) -> str:
    try:
        return str(obj)
    except Exception:
        return _safe_repr(obj)


def _error_payload(e: BaseException, tb_text: Optional[str] = None) -> bytes:
    """A status-1 payload: the exception itself when it survives a round trip
    through pickle, else None beside its type, repr and traceback."""
    t = type(e)
    d = {"exc": e, "type": t.__qualname__, "module": t.__module__,
         "repr": _safe_repr(e), "message": _safe_str(e),
         "traceback": tb_text if tb_text is not None else _format_exc(e)}
    try:
        p = _dump(d)
        pickle.loads(p)     # exceptions whose __init__ wants other args fail here
        return p
    except Exception:
        d["exc"] = None
        return pickle.dumps(d, 5)


def _unpicklable(err: Exception, what: str) -> Exception:
    """The error to report for a value that could not be pickled."""
    msg = f"{what} could not be pickled: {type(err).__name__}: {err}"
    try:
        return type(err)(msg)
    except Exception:
        return TypeError(msg)


# --- loading the user's function -------------------------------------------

def _extend_path() -> None:
    for d in _PATH_DIRS:
        if d not in sys.path and os.path.isdir(d):
            sys.path.append(d)


def _path_first(d: str) -> None:
    if d not in sys.path:
        sys.path.insert(0, d)


def _module_root(module: str, file: str) -> Optional[str]:
    """The sys.path entry `module` is importable from when `file` is where
    that name leads, else None."""
    file = os.path.abspath(file)
    rel = module.replace(".", os.sep)
    for tail in (rel + ".py", os.path.join(rel, "__init__.py")):
        if file.endswith(os.sep + tail):
            return file[:-len(tail) - 1]
    return None


def _load_by_path(name: str, file: str) -> Any:
    """Import `file` as module `name`, its folder first on sys.path as when
    Python runs a script."""
    import importlib.util
    _path_first(os.path.dirname(os.path.abspath(file)))
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {file!r}: not a Python source file")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod       # dataclasses and pickle look the module up
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return mod


def _adopt_as_main(mod: Any) -> None:
    """Make the user's script stand in for ``__main__``, as it is on the client:
    its top-level classes and functions say ``__module__ == "__main__"`` and
    ``sys.modules["__main__"]`` is the script, so results pickled here name
    ``__main__.Point`` (the client's own class) and arguments the client
    pickled by reference find their classes here."""
    def fix(ns: "dict[str, Any]", depth: int) -> None:
        for v in list(ns.values()):
            if getattr(v, "__module__", None) != _MAIN_ALIAS:
                continue
            if isinstance(v, (type, FunctionType)):
                try:
                    v.__module__ = "__main__"
                except (AttributeError, TypeError):
                    continue
                if isinstance(v, type) and depth < 2:
                    fix(dict(vars(v)), depth + 1)
    fix(vars(mod), 0)
    sys.modules["__main__"] = mod


def _alias_modal_if_used(file: Optional[str]) -> None:
    """`import modal` gives Skiff in the container too, as under `skiff run`;
    only set up when the module mentions modal (it costs an import of skiff)."""
    if not file:
        return
    try:
        with open(file, "rb") as f:
            if b"modal" not in f.read():
                return
    except OSError:
        return
    from skiff import _modal_alias
    _modal_alias.install()


def _import_module(module: str, file: Optional[str]) -> Any:
    _extend_path()
    _alias_modal_if_used(file)
    if module == "__main__":
        if not file:
            raise ImportError("the function's module is __main__ but no file was given")
        mod = _load_by_path(_MAIN_ALIAS, file)
        _adopt_as_main(mod)
        return mod
    import importlib
    root = _module_root(module, file) if file else None
    if file is None or root is not None:
        if root is not None:
            _path_first(root)
        return importlib.import_module(module)
    return _load_by_path(module, file)


def _resolve(obj: Any, qualname: str) -> Any:
    for part in qualname.split("."):
        if part == "<locals>":
            raise AttributeError(f"{qualname!r} is defined inside a function; such "
                                 "functions must be registered with serialized=True")
        obj = getattr(obj, part)
    return obj


def _unwrap(obj: Any) -> Callable[..., Any]:
    """The raw callable behind what `@app.function` returned."""
    raw = getattr(obj, "raw_f", None)
    if raw is not None:
        return raw
    get = getattr(obj, "get_raw_f", None)
    if callable(get):
        return get()
    if callable(obj):
        return obj
    raise TypeError(f"{_safe_repr(obj)} is not callable")


def _code_flags(f: Any) -> int:
    for cand in (f, getattr(f, "func", None), getattr(type(f), "__call__", None)):
        code = getattr(cand, "__code__", None)
        if code is not None:
            return code.co_flags
    return 0


def _load_function(init: "dict[str, Any]", body: bytes) -> Any:
    """The user's function -- or for a class pool, the user's class."""
    if init.get("serialized"):
        _extend_path()
        obj = pickle.loads(body)    # imports cloudpickle itself when the pickle needs it
    else:
        mod = _import_module(str(init["module"]), init.get("file"))
        obj = _resolve(mod, str(init["qualname"]))
    if init.get("cls"):
        # What @app.cls returned (a skiff.Cls) or the class itself.
        obj = getattr(obj, "_skiff_user_cls", obj)
        if not isinstance(obj, type):
            raise TypeError(f"{_safe_repr(obj)} is not a class")
        return obj
    return _unwrap(obj)


# --- running inputs ------------------------------------------------------------

_CtxVar = contextvars.ContextVar  # Optional[str] values


def _context_vars() -> "tuple[_CtxVar[Optional[str]], _CtxVar[Optional[str]]]":
    """skiff._context's variables, or stand-ins when that module is absent.

    The runtime sets the input id before each input and clears both after the
    chunk rather than resetting around every input: only the main thread runs
    inputs, and threads started by user code begin with an empty context, so
    nothing could see the difference but the per-input cost."""
    try:
        from skiff import _context
        return _context.input_id, _context.function_call_id
    except (ImportError, AttributeError):
        return (contextvars.ContextVar("skiff_input_id", default=None),
                contextvars.ContextVar("skiff_function_call_id", default=None))


class _InputRefFallback:
    __slots__ = ("prefix", "idx", "base", "results")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.idx = 0
        self.base = 0
        self.results: "Optional[list[Any]]" = None

    def position(self) -> int:
        r = self.results
        return self.idx if r is None else self.base + len(r)

    def __str__(self) -> str:
        return f"{self.prefix}{self.position()}"


def _context_mod() -> Any:
    try:
        from skiff import _context
        if hasattr(_context, "InputRef"):
            return _context
    except ImportError:
        pass
    return type("_Ctx", (), {"InputRef": _InputRefFallback})


def _method_inputs(inputs: Any) -> "list[Any]":
    """A class pool's chunk ``[(method, args, kwargs), ...]`` as the
    dispatcher's inputs ``[((method, *args), kwargs), ...]``."""
    try:
        return [((m,) + tuple(a), k) for m, a, k in inputs]
    except (TypeError, ValueError):
        raise ValueError("a class pool's input chunk must be a list of "
                         "(method_name, args, kwargs)") from None


def _first_method(inputs: "list[Any]") -> Any:
    for item in inputs:
        if item is not None:
            return item[0][0]
    return None


class _Runtime:
    """The loop after init.  Everything runs on the main thread, which the
    SIGALRM and SIGTERM handlers interrupt."""

    def __init__(self, conn: _Conn, f: Callable[..., Any], init: "dict[str, Any]") -> None:
        self.conn = conn
        self.f = f
        self.is_generator = bool(init.get("is_generator"))
        flags = _code_flags(f)
        self.is_async = bool(flags & _CO_COROUTINE)
        self.timeout = float(init.get("timeout") or 0)
        self.timeout_payload = json.dumps({
            "kind": "timeout",
            "message": f"Function timed out after {self.timeout:g} s"}).encode()
        self.input_var, self.call_var = _context_vars()
        self.loop: Any = None
        self.call_q = b'""'
        # A class pool: its methods that are generators, and the method name
        # of a retried input (None: the first argument is the method name).
        self.cls_mode = False
        self.gen_methods: "frozenset[str]" = frozenset()
        self.batch_method: Optional[str] = None

    # Output -------------------------------------------------------------------

    def _output(self, out: "bytes | bytearray", n: int) -> bytes:
        return _frame(b'{"t":"output","call":%s,"n":%d}' % (self.call_q, n), out)

    def _failure(self, out: bytearray, idx: int, e: BaseException,
                 args: Any, kwargs: Any, retry: bool = True) -> int:
        """Append a failed input's records; how many."""
        if isinstance(e, _Terminate):
            raise e
        if isinstance(e, _Answered):
            return 0
        if isinstance(e, _Timeout):
            status, payload = _SYSTEM_ERROR, self.timeout_payload
        else:
            status, payload = _USER_ERROR, _error_payload(e)
            if len(payload) > _MAX_PAYLOAD // 2:
                payload = _error_payload(ValueError(
                    f"the function raised {type(e).__name__}, which pickles to "
                    f"{len(payload)} bytes, too big to send"), "")
        out += _RECORD.pack(idx, status, len(payload))
        out += payload
        if not retry:
            return 1
        try:
            if not self.cls_mode:
                a = _dump([(args, kwargs)])
            elif self.batch_method is not None:
                a = _dump([(self.batch_method, args, kwargs)])
            else:
                a = _dump([(args[0], args[1:], kwargs)])
        except Exception:
            return 1        # without its arguments the server cannot retry it
        if len(a) > _MAX_PAYLOAD // 2:
            return 1
        out += _RECORD.pack(idx, _RETRY_ARGS, len(a))
        out += a
        return 2

    # Chunks -------------------------------------------------------------------

    def serve(self) -> None:
        """Runs chunks until the server says ``stop`` (returns) or goes away
        (_ServerGone)."""
        conn = self.conn
        conn.send(_frame(b'{"t":"ready"}') + _WANT)
        while True:
            hdr, body = conn.recv()
            if hdr.get("t") != "input":
                if hdr.get("t") == "stop":
                    return      # nothing is in hand between chunks
                continue        # frames this runtime does not know are ignored
            call = str(hdr["call"])
            start = int(hdr["start"])
            t0 = monotonic()
            self.call_q = json.dumps(call).encode()
            self.call_var.set(call)
            try:
                inputs = pickle.loads(body)
                if self.cls_mode:
                    inputs = _method_inputs(inputs)
            except Exception as e:
                tail = self._unreadable(start, int(hdr.get("count", 0)), e)
            else:
                if (not self.cls_mode and type(inputs) is tuple and len(inputs) == 2
                        and inputs[0] == "skiff.args1"):
                    # One positional argument per input (docs/api.md).
                    xs = inputs[1]
                    if (not self.is_generator and not self.is_async and not hdr.get("skip")
                            and len(xs) > 1):
                        self.call_var.set(call)
                        tail = self._run_chunk_args1(call, start, xs)
                        self.input_var.set(None)
                        self.call_var.set(None)
                        conn.send(b"".join((tail, _frame(
                            b'{"t":"done","call":%s,"start":%d,"busy":%.9f}'
                            % (self.call_q, start, monotonic() - t0)), _WANT)))
                        continue
                    inputs = [((x,), {}) for x in xs]
                skip = hdr.get("skip")
                if skip:
                    # A chunk run again after its container died: inputs that
                    # already have their answer are not run twice.
                    done = set(skip)
                    inputs = [x if start + k not in done else None
                              for k, x in enumerate(inputs)]
                tail = self._run_chunk(call, start, inputs)
            self.input_var.set(None)
            self.call_var.set(None)
            conn.send(b"".join((tail, _frame(b'{"t":"done","call":%s,"start":%d,"busy":%.9f}'
                                             % (self.call_q, start, monotonic() - t0)), _WANT)))

    def _unreadable(self, start: int, count: int, e: Exception) -> bytes:
        payload = json.dumps({"kind": "unpicklable", "message":
                              f"the input arguments could not be unpickled: "
                              f"{type(e).__name__}: {e}"}).encode()
        out = bytearray()
        for idx in range(start, start + count):
            out += _RECORD.pack(idx, _SYSTEM_ERROR, len(payload))
            out += payload
        return self._output(out, count) if count else b""

    def _run_chunk(self, call: str, start: int, inputs: "list[tuple[Any, Any]]") -> bytes:
        """Run one chunk; return its last output frame (maybe empty bytes), for
        the caller to send together with `done`."""
        global _timeout
        if self.timeout > 0:
            _timeout = self.timeout
            signal.setitimer(signal.ITIMER_REAL, self.timeout)
        try:
            if self.is_generator or (self.cls_mode and _first_method(inputs) in self.gen_methods):
                out, n = self._run_generators(call, start, inputs)
            else:
                out, n = self._run_plain(call, start, inputs)
        finally:
            if self.timeout > 0:
                signal.setitimer(signal.ITIMER_REAL, 0)
        return self._output(out, n) if n else b""

    def _run_chunk_args1(self, call: str, start: int, xs: "list[Any]") -> bytes:
        global _timeout, _fast_ref, _fast_seen, _fast_count
        ref = _context_mod().InputRef(f"in-{call}-")
        ref.idx = start
        if self.timeout > 0:
            _timeout = self.timeout
            _fast_ref, _fast_seen, _fast_count = ref, -1, 0
            signal.setitimer(signal.ITIMER_REAL, self.timeout / _FAST_TICKS)
        try:
            out, n = self._run_args1(call, start, xs, ref)
        finally:
            if self.timeout > 0:
                signal.setitimer(signal.ITIMER_REAL, 0)
                _fast_ref = None
        return self._output(out, n) if n else b""

    def _run_args1(self, call: str, start: int, xs: "list[Any]",
                   ref: Any) -> "tuple[bytearray, int]":
        """The batch fast path: successes are collected in a list and sent as
        status-6 records (one pickle per run of successes); a failure ends the
        run, is sent as its own record, and the loop goes on after it."""
        f = self.f
        self.input_var.set(ref)
        out = bytearray()
        n = 0
        i = 0
        count = len(xs)
        while i < count:
            results: "list[Any]" = []
            run_start = i
            ref.base, ref.results = start + i, results
            try:
                # As multiprocessing.Pool does: map at C speed.  On an exception
                # extend keeps what came before, so len(results) is the input
                # that failed.
                results.extend(map(f, xs[i:] if i else xs))
                failed = None
            except BaseException as e:
                failed = e
            i = run_start + len(results)
            ref.results = None
            ref.idx = start + i
            if results:
                try:
                    p = pickle.dumps(results, 5)
                except Exception:
                    p = b""
                if p and len(p) < _MAX_PAYLOAD:
                    out += _RECORD.pack(start + run_start, _BATCH_OK, len(p) + 4)
                    out += _U32.pack(len(results))
                    out += p
                    n += 1          # records, not inputs
                else:
                    # Some value does not pickle (or is huge): one record each.
                    for k, r in enumerate(results):
                        self._one_result(out, start + run_start + k, r, (xs[run_start + k],), {})
                        n += 1
            if failed is not None:
                if isinstance(failed, _ServerGone):
                    raise failed
                n += self._failure(out, start + i, failed, (xs[i],), {})
                i += 1
            if len(out) >= _FLUSH_BYTES and i < count:
                self.conn.send(self._output(out, n))
                out = bytearray()
                n = 0
        return out, n

    def _one_result(self, out: bytearray, idx: int, r: Any, args: Any, kwargs: Any) -> None:
        try:
            p = pickle.dumps(r, 5)
        except Exception as e:
            try:
                p = _dump(r)
            except Exception:
                self._failure(out, idx, _unpicklable(e, "the return value"), args, kwargs,
                              retry=False)
                return
        if len(p) > _MAX_PAYLOAD:
            self._failure(out, idx, ValueError(
                f"the return value pickles to {len(p)} bytes; an output may have at most "
                f"{_MAX_PAYLOAD}"), args, kwargs, retry=False)
            return
        out += _RECORD.pack(idx, _OK, len(p))
        out += p

    def _run_plain(self, call: str, start: int,
                   inputs: "list[tuple[Any, Any]]") -> "tuple[bytearray, int]":
        global _deadline
        f = self._call_async if self.is_async else self.f
        send = self.conn.send
        dumps = pickle.dumps
        record = _RECORD.pack
        set_input = self.input_var.set
        timeout = self.timeout
        prefix = f"in-{call}-"
        out = bytearray()
        n = 0
        first = last = 0.0
        for idx, item in enumerate(inputs, start):
            if item is None:
                continue        # already answered (see "skip")
            args, kwargs = item
            now = monotonic()
            if n:
                if now - last >= _SLOW_INPUT or now - first >= _FLUSH_AGE or len(out) >= _FLUSH_BYTES:
                    send(self._output(out, n))
                    out = bytearray()
                    n = 0
                    first = now
            else:
                first = now
            last = now
            set_input(prefix + str(idx))
            _deadline = now + timeout
            try:
                r = f(*args, **kwargs)
                _deadline = 0.0
            except BaseException as e:
                _deadline = 0.0
                n += self._failure(out, idx, e, args, kwargs)
                continue
            try:
                p = dumps(r, 5)
            except Exception as e:
                try:
                    p = _dump(r)
                except Exception:
                    # Running it again would fail the same way: no retry.
                    n += self._failure(out, idx, _unpicklable(e, "the return value"), args, kwargs,
                                       retry=False)
                    continue
            if len(p) >= _FLUSH_BYTES:
                if n:
                    send(self._output(out, n))
                    out = bytearray()
                    n = 0
                if len(p) > _MAX_PAYLOAD:
                    n += self._failure(out, idx, ValueError(
                        f"the return value pickles to {len(p)} bytes; an output may "
                        f"have at most {_MAX_PAYLOAD}"), args, kwargs, retry=False)
                    continue
            out += record(idx, _OK, len(p))
            out += p
            n += 1
        return out, n

    def _run_generators(self, call: str, start: int,
                        inputs: "list[tuple[Any, Any]]") -> "tuple[bytearray, int]":
        """Generator inputs: every item goes out in a frame of its own at once;
        the done (or error) record waits for the chunk's last frame."""
        global _deadline, _hold
        out = bytearray()
        n = 0
        for idx, item in enumerate(inputs, start):
            if item is None:
                continue
            args, kwargs = item
            if n:
                self.conn.send(self._output(out, n))
                out = bytearray()
                n = 0
            self.input_var.set(f"in-{call}-{idx}")
            seq = [0]
            d = monotonic() + self.timeout if self.timeout > 0 else float("inf")

            def emit(item: Any) -> None:
                global _hold
                _hold = True
                try:
                    try:
                        p = _dump(item)
                    except Exception as e:
                        raise _unpicklable(e, f"generator item {seq[0]}") from None
                    if len(p) > _MAX_PAYLOAD:
                        raise ValueError(f"generator item {seq[0]} pickles to {len(p)} bytes; "
                                         f"an output may have at most {_MAX_PAYLOAD}")
                    self.conn.send(self._output(_RECORD.pack(seq[0], _GEN_ITEM, len(p)) + p, 1))
                    seq[0] += 1
                finally:
                    _hold = False
                if monotonic() >= d:
                    raise _Timeout

            _deadline = d if self.timeout > 0 else 0.0
            try:
                it = self.f(*args, **kwargs)
                if hasattr(it, "__anext__"):
                    self._run_async(_drain(it, emit))
                else:
                    for item in it:
                        emit(item)
                _deadline = 0.0
            except BaseException as e:
                _deadline = 0.0
                _hold = False
                if isinstance(e, _ServerGone):
                    raise
                n += self._failure(out, idx, e, args, kwargs, retry=seq[0] == 0)
                continue
            out += _RECORD.pack(idx, _GEN_DONE, 0)
            n += 1
        return out, n

    # asyncio ------------------------------------------------------------------

    def _call_async(self, *args: Any, **kwargs: Any) -> Any:
        return self._run_async(self.f(*args, **kwargs))

    def _run_async(self, coro: Any) -> Any:
        """Run a coroutine on the one event loop this runtime keeps."""
        global _deadline
        loop = self.loop
        if loop is None:
            import asyncio
            loop = self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
        task = loop.create_task(coro)
        try:
            return loop.run_until_complete(task)
        except _Terminate:
            raise
        except BaseException:
            if not task.done():
                # A timeout raised inside the loop's own code: cancel the task,
                # give it a second, and start over with a fresh loop if it
                # will not finish.
                saved, _deadline = _deadline, 0.0
                self._abandon(task)
                _deadline = saved
            raise

    def _abandon(self, task: Any) -> None:
        import asyncio
        task.cancel()
        try:
            self.loop.run_until_complete(asyncio.wait({task}, timeout=1.0))
        except BaseException:
            pass
        if not task.done():
            self.loop = None


async def _drain(agen: Any, emit: Callable[[Any], None]) -> None:
    async for item in agen:
        emit(item)


# --- start -----------------------------------------------------------------------

def _import_failed(conn: _Conn, e: BaseException) -> None:
    text = _format_exc(e)
    sys.stderr.write(text)
    sys.stderr.flush()
    try:
        conn.send(_json_frame({"t": "import_error", "message": text}))
    except _ServerGone:
        pass


def _startup(conn: _Conn, import_ms: float, enter_ms: float,
             setup_ms: Optional[float] = None) -> None:
    """Tells the server how this container's start went (before ``ready``);
    ``setup_ms``: a snapshot's fork, its namespaces and root."""
    frame: "dict[str, Any]" = {"t": "startup", "t0": _T0, "import_ms": round(import_ms, 3),
                               "enter_ms": round(enter_ms, 3)}
    if setup_ms is not None:
        frame["setup_ms"] = round(setup_ms, 3)
    conn.send(_json_frame(frame))


def _make_runtime(conn: _Conn, target: Any, init: "dict[str, Any]",
                  obj: Any = None) -> "tuple[_Runtime, Any]":
    """The runtime for this container, and the class pool's instance (made
    and entered, see skiff._container_cls) or None.  ``obj``: the instance a
    snapshot's template made (its snap=True hooks have run)."""
    pooled = int(init.get("max_inputs") or 1) > 1 or bool(init.get("batch"))
    kind: Any = _Runtime
    if pooled:
        from skiff import _container_pool
        kind = _container_pool.PoolRuntime
    if not init.get("cls"):
        return kind(conn, target, init), None
    from skiff import _container_cls
    return _container_cls.make(kind, conn, target, init, obj)


def _hello(path: str) -> "tuple[_Conn, dict[str, Any], bytes]":
    """Connects as this container (its id and token from the env) and waits
    for the init frame."""
    conn = _Conn(path)
    conn.send(_json_frame({"t": "hello",
                           "container_id": os.environ.get("SKIFF_CONTAINER_ID", ""),
                           "token": os.environ.get("SKIFF_CONTAINER_TOKEN", "")}))
    init, body = conn.recv()
    while init.get("t") != "init":
        init, body = conn.recv()
    return conn, init, body


def main() -> int:
    sys.modules.setdefault("skiff._container", sys.modules[__name__])
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGALRM, _on_alarm)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass
    path = os.environ.get("SKIFF_WORKER_SOCKET", "/skiff/run/worker.sock")
    global _T0
    if os.environ.get("SKIFF_WARM"):
        # A warm container (the server's pool): the SDK is loaded while it
        # waits to become some function's.
        import skiff  # noqa: F401
    try:
        conn, init, body = _hello(path)
        snapped: Any = None
        if init.get("template"):
            # A memory snapshot's template (skiff._snapshot): returns only in
            # a fork, as a container of its own that says hello again.
            from skiff import _snapshot
            snapped = _snapshot.template(conn, init, body)
            if snapped is None:
                return 0
            _T0 = snapped[2]
            conn, init, body = _hello(path)
        warm = init.get("warm")
        if isinstance(warm, dict):
            # Taken from the pool: the function's environment and folder now,
            # before its module is imported (its code was just mounted).
            import importlib
            _T0 = _wall()
            for kv in warm.get("env") or ():
                k, _, v = str(kv).partition("=")
                if k and k not in ("SKIFF_CONTAINER_ID", "SKIFF_CONTAINER_TOKEN"):
                    os.environ[k] = v
            os.environ.pop("SKIFF_WARM", None)
            try:
                os.chdir(str(warm.get("workdir") or "/skiff/app"))
            except OSError:
                os.chdir("/")
            importlib.invalidate_caches()
        if init.get("web"):
            # A web endpoint (docs/protocol.md, "Web requests"): skiff._web
            # serves the gateway's streams instead of input chunks.
            try:
                t1 = monotonic()
                if snapped:
                    target = snapped[0]
                    _startup(conn, 0.0, 0.0, snapped[3])
                else:
                    target = _load_function(init, body)
                    _startup(conn, (monotonic() - t1) * 1000, 0.0)
            except _Terminate:
                raise
            except BaseException as e:
                _import_failed(conn, e)
                return 1
            from skiff import _web
            return _web.serve(conn, target, init)
        try:
            t1 = monotonic()
            target = snapped[0] if snapped else _load_function(init, body)
            t2 = monotonic()
            rt, obj = _make_runtime(conn, target, init, snapped[1] if snapped else None)
            _startup(conn, 0.0 if snapped else (t2 - t1) * 1000, (monotonic() - t2) * 1000,
                     snapped[3] if snapped else None)
        except _Terminate:
            raise
        except BaseException as e:
            _import_failed(conn, e)
            return 1
        try:
            rt.serve()
        except (_ServerGone, _Terminate):
            pass
        finally:
            if obj is not None:
                from skiff import _container_cls
                _container_cls.run_exit_hooks(rt, obj)
    except (_ServerGone, _Terminate):
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
