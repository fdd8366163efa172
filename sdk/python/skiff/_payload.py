"""Payloads on the wire (docs/api.md, "Payloads"): input chunks, input frames,
output records, and turning an output back into a value or an exception.

Values are pickled with cloudpickle where it is importable (so that lambdas,
closures and classes of ``__main__`` travel by value), else with pickle.  Any
pickle loads with plain ``pickle.loads``.

- An input chunk is ``dumps([(args, kwargs), ...])``; for a class pool
  (``@app.cls``) it is ``dumps([(method_name, args, kwargs), ...])``.
- An input frame is ``u32 start | u32 count | u32 len | chunk`` (little endian).
- An output record is ``u32 idx | u8 status | u32 len | payload``.

This module is pure (no I/O) so that it can be tested alone.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
from typing import Any, Iterable, Mapping, Optional, Sequence

from . import exception as exc_mod
from .exception import (
    DeserializationError,
    ExecutionError,
    FunctionTimeoutError,
    InputCancellation,
    OutOfMemoryError,
    RemoteError,
    RemoteTraceback,
    SerializationError,
)

import importlib.util as _ilu

# cloudpickle is optional, and imported when first used (it costs ~5 ms, and
# every container imports this module at start).
HAVE_CLOUDPICKLE = _ilu.find_spec("cloudpickle") is not None
PROTOCOL = 5

STATUS_OK = 0
STATUS_BATCH_OK = 6   # u32 count | pickled list: inputs idx .. idx+count-1 all succeeded
STATUS_USER_ERROR = 1
STATUS_SYSTEM_ERROR = 2
STATUS_GEN_ITEM = 3
STATUS_GEN_DONE = 4

_FRAME = struct.Struct("<III")
_RECORD = struct.Struct("<IBI")
FRAME_HEADER = _FRAME.size
RECORD_HEADER = _RECORD.size

def _dumps(obj: Any, protocol: int = PROTOCOL) -> bytes:
    if HAVE_CLOUDPICKLE:
        import cloudpickle
        return cloudpickle.dumps(obj, protocol=protocol)
    return pickle.dumps(obj, protocol=protocol)


def dumps(obj: Any) -> bytes:
    """Pickles obj (cloudpickle where present)."""
    return _dumps(obj, protocol=PROTOCOL)


loads = pickle.loads


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _arg_name(i: int, param_names: Sequence[str]) -> str:
    if i < len(param_names):
        return f"argument {param_names[i]!r} (position {i})"
    return f"positional argument {i}"


def find_unpicklable(args: Sequence[Any], kwargs: Mapping[str, Any],
                     param_names: Sequence[str] = ()) -> Optional[str]:
    """Names the first argument that cannot be pickled, with why; None if
    each pickles alone."""
    for i, a in enumerate(args):
        try:
            dumps(a)
        except Exception as e:
            return f"{_arg_name(i, param_names)} cannot be pickled: {_describe(e)}"
    for k, v in kwargs.items():
        try:
            dumps(v)
        except Exception as e:
            return f"keyword argument {k!r} cannot be pickled: {_describe(e)}"
    return None


def _refuse(where: str, args: Sequence[Any], kwargs: Mapping[str, Any],
            param_names: Sequence[str], e: BaseException, prefix: str = "") -> SerializationError:
    why = find_unpicklable(args, kwargs, param_names)
    if why is None:
        why = f"the arguments cannot be pickled together: {_describe(e)}"
    return SerializationError(
        f"{where}: {prefix}{why}. Arguments and results travel pickled"
        f"{' (with cloudpickle)' if HAVE_CLOUDPICKLE else ''}; pass something picklable")


def input_chunk(args: tuple[Any, ...], kwargs: dict[str, Any], where: str = "the call",
                param_names: Sequence[str] = (), method: Optional[str] = None) -> bytes:
    """The chunk of one input (of a class pool's ``method`` when given);
    SerializationError (an InvalidError) naming the argument that cannot be
    pickled, before anything is sent."""
    try:
        if method is not None:
            return _dumps([(method, args, kwargs)], protocol=PROTOCOL)
        return _dumps([(args, kwargs)], protocol=PROTOCOL)
    except Exception as e:
        raise _refuse(where, args, kwargs, param_names, e) from None


def inputs_chunk(inputs: Sequence[tuple[tuple[Any, ...], dict[str, Any]]], start: int,
                 where: str = "the map", param_names: Sequence[str] = ()) -> bytes:
    """The chunk of inputs ``start .. start+len-1``; on failure, names the input
    and the argument."""
    try:
        # One positional argument and no keywords each (the usual .map): a
        # plain list, which pickles and runs far faster (docs/api.md).
        if all(len(a) == 1 and not k for a, k in inputs):
            return _dumps(("skiff.args1", [a[0] for a, _ in inputs]), protocol=PROTOCOL)
        return _dumps(list(inputs), protocol=PROTOCOL)
    except Exception as e:
        for i, (args, kwargs) in enumerate(inputs):
            if find_unpicklable(args, kwargs, param_names) is not None:
                raise _refuse(where, args, kwargs, param_names, e,
                              prefix=f"input {start + i}: ") from None
        raise SerializationError(
            f"{where}: inputs {start}..{start + len(inputs) - 1} cannot be pickled: "
            f"{_describe(e)}") from None


def method_chunk(method: str, inputs: Sequence[tuple[tuple[Any, ...], dict[str, Any]]],
                 start: int, where: str = "the map", param_names: Sequence[str] = ()) -> bytes:
    """The chunk of a class pool's inputs ``start .. start+len-1``, all calls
    of ``method``."""
    try:
        return _dumps([(method, a, k) for a, k in inputs], protocol=PROTOCOL)
    except Exception as e:
        for i, (args, kwargs) in enumerate(inputs):
            if find_unpicklable(args, kwargs, param_names) is not None:
                raise _refuse(where, args, kwargs, param_names, e,
                              prefix=f"input {start + i}: ") from None
        raise SerializationError(
            f"{where}: inputs {start}..{start + len(inputs) - 1} cannot be pickled: "
            f"{_describe(e)}") from None


def args1_chunk(values: Sequence[Any], start: int, where: str = "the map",
                param_names: Sequence[str] = ()) -> bytes:
    """The chunk of inputs that are one positional argument each."""
    try:
        return _dumps(("skiff.args1", values if isinstance(values, list) else list(values)),
                      protocol=PROTOCOL)
    except Exception:
        return inputs_chunk([((v,), {}) for v in values], start, where, param_names)


def frame(start: int, count: int, chunk: bytes) -> bytes:
    """One input frame."""
    return _FRAME.pack(start, count, len(chunk)) + chunk


def parse_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """The frames of an inputs body as (start, count, chunk); ValueError when malformed."""
    out = []
    off, n = 0, len(data)
    while off < n:
        if n - off < FRAME_HEADER:
            raise ValueError(f"truncated input frame at byte {off}")
        start, count, ln = _FRAME.unpack_from(data, off)
        off += FRAME_HEADER
        if ln > n - off:
            raise ValueError(f"input frame at byte {off - FRAME_HEADER} claims {ln} bytes, "
                             f"{n - off} left")
        out.append((start, count, bytes(data[off:off + ln])))
        off += ln
    return out


def record(idx: int, status: int, payload: bytes) -> bytes:
    """One output record (the container's side; here for tests)."""
    return _RECORD.pack(idx, status, len(payload)) + payload


def parse_records(data: bytes) -> list[tuple[int, int, bytes]]:
    """The output records of a body as (idx, status, payload)."""
    out = []
    off, n = 0, len(data)
    view = memoryview(data)
    unpack = _RECORD.unpack_from
    while off < n:
        if n - off < RECORD_HEADER:
            raise DeserializationError(
                f"the server sent a truncated output record at byte {off} of {n}")
        idx, status, ln = unpack(data, off)
        off += RECORD_HEADER
        if ln > n - off:
            raise DeserializationError(
                f"an output record at byte {off - RECORD_HEADER} claims {ln} bytes, "
                f"{n - off} left")
        out.append((idx, status, view[off:off + ln].tobytes()))
        off += ln
    return out


# -- outputs as values and exceptions ------------------------------------------


class _Missing:
    """Stands in for a class that does not exist here (e.g. an exception type of
    a package only the container's image has)."""

    _skiff_missing = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        pass


class _LenientUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (_Missing,), {"_skiff_missing": f"{module}.{name}"})


def _lenient_loads(data: bytes) -> Any:
    return _LenientUnpickler(io.BytesIO(data)).load()


def _qualified(module: str, name: str) -> str:
    return name if module in ("", "builtins") else f"{module}.{name}"


def _with_traceback(e: BaseException, tb: str) -> BaseException:
    if tb:
        e.__cause__ = RemoteTraceback(tb)
        if isinstance(e, RemoteError):
            e.remote_traceback = tb
    return e


def user_exception(payload: bytes) -> BaseException:
    """The exception of a status 1 output: the remote exception re-created
    (same type), or RemoteError naming its type where it can't be; either way
    with the remote traceback as ``__cause__``."""
    try:
        info = loads(payload)
    except Exception:
        try:
            info = _lenient_loads(payload)
        except Exception as e:
            return DeserializationError(
                f"a remote exception arrived but could not be unpickled here ({_describe(e)})")
    if isinstance(info, BaseException):  # a bare exception: accept it too
        return info
    if not isinstance(info, dict):
        return DeserializationError(f"a remote exception arrived in an unknown form: {info!r:.200}")
    tb = str(info.get("traceback") or "")
    e = info.get("exc")
    if isinstance(e, (bytes, bytearray)):
        try:
            e = loads(e)
        except Exception:
            e = None
    if isinstance(e, BaseException) and not isinstance(e, _Missing):
        return _with_traceback(e, tb)
    type_name = _qualified(str(info.get("module") or ""), str(info.get("type") or "Exception"))
    message = info.get("message")
    if message is None and isinstance(e, _Missing):
        message = e.args[0] if len(e.args) == 1 else ", ".join(map(repr, e.args))
    text = (f"{type_name}: {message}" if message is not None
            else f"{type_name}: {info.get('repr') or type_name}")
    return _with_traceback(
        RemoteError(f"{text} (the exception's type cannot be re-created here)"), tb)


_SYSTEM_ERRORS: dict[str, type[BaseException]] = {
    "timeout": FunctionTimeoutError,
    "oom": OutOfMemoryError,
    "import": ExecutionError,
    "crash": ExecutionError,
    "stopped": ExecutionError,
    "cancelled": InputCancellation,
    "unpicklable": SerializationError,
}


def system_exception(payload: bytes) -> BaseException:
    """The exception of a status 2 output (a failure of the platform, not of
    the user's code: timeout, oom, import, crash, stopped, cancelled,
    unpicklable)."""
    try:
        info = json.loads(payload)
        kind, message = str(info.get("kind", "")), str(info.get("message", ""))
    except (ValueError, AttributeError):
        kind, message = "", payload[:500].decode("utf-8", "replace")
    cls = _SYSTEM_ERRORS.get(kind, RemoteError)
    if not message:
        message = f"the function call failed ({kind or 'unknown reason'})"
    return cls(message)


def output_exception(status: int, payload: bytes) -> BaseException:
    """The exception an error output stands for."""
    if status == STATUS_USER_ERROR:
        return user_exception(payload)
    if status == STATUS_SYSTEM_ERROR:
        return system_exception(payload)
    return exc_mod.ServerError(f"the server sent an output of unknown status {status}")


def decode(status: int, payload: bytes) -> Any:
    """The value of an output (status 0 or 3), or raises its exception."""
    if status == STATUS_OK or status == STATUS_GEN_ITEM:
        try:
            return loads(payload)
        except Exception as e:
            raise DeserializationError(
                f"the function's result could not be unpickled here: {_describe(e)} "
                "(is the module that defines its type importable locally?)") from None
    raise output_exception(status, payload)


def decode_outputs(records: Iterable[tuple[int, int, bytes]]) -> list[tuple[int, Any, bool]]:
    """(idx, value-or-exception, is_error) for each record of a map's outputs."""
    out = []
    for idx, status, payload in records:
        if status == STATUS_BATCH_OK:
            for k, v in enumerate(loads(payload[4:])):
                out.append((idx + k, v, False))
            continue
        if status == STATUS_OK:
            try:
                out.append((idx, loads(payload), False))
            except Exception as e:
                out.append((idx, DeserializationError(
                    f"the result of input {idx} could not be unpickled here: "
                    f"{_describe(e)}"), True))
        else:
            out.append((idx, output_exception(status, payload), True))
    return out
