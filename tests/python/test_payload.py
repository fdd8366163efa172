"""Payload framing and decoding (sdk/python/skiff/_payload.py; docs/api.md "Payloads")."""

from __future__ import annotations

import json
import pickle
import struct
import sys
import threading
import traceback
import types

import pytest

from skiff import _payload as P
from skiff import exception


def test_frames_round_trip() -> None:
    a = P.frame(0, 2, b"abc")
    b = P.frame(2, 1, b"")
    assert a[:12] == struct.pack("<III", 0, 2, 3)
    assert P.parse_frames(a + b) == [(0, 2, b"abc"), (2, 1, b"")]
    with pytest.raises(ValueError):
        P.parse_frames(a[:-1])
    with pytest.raises(ValueError):
        P.parse_frames(b"\x00" * 5)


def test_records_parse() -> None:
    body = P.record(7, 0, b"xy") + P.record(3, 2, b"{}") + P.record(0, 4, b"")
    assert P.parse_records(body) == [(7, 0, b"xy"), (3, 2, b"{}"), (0, 4, b"")]
    assert P.parse_records(b"") == []
    with pytest.raises(exception.DeserializationError):
        P.parse_records(body[:-1])
    with pytest.raises(exception.DeserializationError):
        P.parse_records(b"\x01\x00")


def test_input_chunk_is_a_list_of_args_kwargs() -> None:
    chunk = P.input_chunk((1, "a"), {"k": [2]})
    assert pickle.loads(chunk) == [((1, "a"), {"k": [2]})]
    many = P.inputs_chunk([((i, 0), {}) for i in range(5)], 10)
    assert pickle.loads(many) == [((i, 0), {}) for i in range(5)]
    # One positional argument each: the compact form of docs/api.md.
    ones = P.inputs_chunk([((i,), {}) for i in range(5)], 10)
    assert pickle.loads(ones) == ("skiff.args1", [0, 1, 2, 3, 4])


def test_unpicklable_positional_argument_is_named() -> None:
    lock = threading.Lock()
    with pytest.raises(exception.InvalidError) as ei:
        P.input_chunk((1, lock), {}, "square()", param_names=("x", "y"))
    msg = str(ei.value)
    assert isinstance(ei.value, exception.SerializationError)
    assert "square()" in msg and "'y'" in msg and "position 1" in msg and "lock" in msg


def test_unpicklable_keyword_argument_is_named() -> None:
    with pytest.raises(exception.InvalidError, match="keyword argument 'fh'"):
        P.input_chunk((), {"ok": 1, "fh": threading.Lock()}, "f()")


def test_unpicklable_map_input_names_the_input() -> None:
    inputs = [((1,), {}), ((threading.Lock(),), {})]
    with pytest.raises(exception.InvalidError, match="input 6: positional argument 0"):
        P.inputs_chunk(inputs, 5, "f.map()")


def test_lambdas_travel_with_cloudpickle() -> None:
    if not P.HAVE_CLOUDPICKLE:
        pytest.skip("cloudpickle is not importable")
    chunk = P.input_chunk((lambda x: x + 1,), {})
    ((args, _),) = pickle.loads(chunk)
    assert args[0](1) == 2


def test_decode_ok_and_generator_item() -> None:
    assert P.decode(0, pickle.dumps({"a": 1})) == {"a": 1}
    assert P.decode(3, pickle.dumps(5)) == 5


def _user_error(e: BaseException, pickled_exc: bool = True) -> bytes:
    try:
        raise e
    except BaseException as caught:
        tb = "".join(traceback.format_exception(type(caught), caught, caught.__traceback__))
    return pickle.dumps({"exc": e if pickled_exc else None, "type": type(e).__name__,
                         "module": type(e).__module__, "repr": repr(e), "traceback": tb})


def test_user_error_reraised_as_same_type_with_remote_traceback() -> None:
    payload = _user_error(ValueError("bad value 42"))
    with pytest.raises(ValueError, match="bad value 42") as ei:
        P.decode(1, payload)
    cause = ei.value.__cause__
    assert isinstance(cause, exception.RemoteTraceback)
    assert "Traceback (most recent call last)" in str(cause)
    assert "ValueError: bad value 42" in cause.tb
    shown = "".join(traceback.format_exception(ei.value))
    assert "direct cause" in shown and "bad value 42" in shown


def test_user_error_exc_may_be_nested_pickle_bytes() -> None:
    info = pickle.loads(_user_error(KeyError("k")))
    info["exc"] = pickle.dumps(info["exc"])
    with pytest.raises(KeyError):
        P.decode(1, pickle.dumps(info))


def test_user_error_of_a_type_missing_here_is_a_remote_error() -> None:
    mod = types.ModuleType("skiff_test_only_remote_mod")
    exec("class OnlyThere(Exception):\n    pass\n", mod.__dict__)
    mod.OnlyThere.__module__ = mod.__name__
    sys.modules[mod.__name__] = mod
    try:
        payload = _user_error(mod.OnlyThere("it broke"))
    finally:
        del sys.modules[mod.__name__]
    with pytest.raises(exception.RemoteError) as ei:
        P.decode(1, payload)
    msg = str(ei.value)
    assert "skiff_test_only_remote_mod.OnlyThere" in msg and "it broke" in msg
    assert ei.value.remote_traceback and "it broke" in ei.value.remote_traceback
    assert isinstance(ei.value.__cause__, exception.RemoteTraceback)


def test_user_error_without_exc_object() -> None:
    with pytest.raises(exception.RemoteError, match="ZeroDivisionError"):
        P.decode(1, _user_error(ZeroDivisionError("x"), pickled_exc=False))


@pytest.mark.parametrize("kind,cls", [
    ("timeout", exception.FunctionTimeoutError),
    ("oom", exception.OutOfMemoryError),
    ("import", exception.ExecutionError),
    ("crash", exception.ExecutionError),
    ("stopped", exception.ExecutionError),
    ("cancelled", exception.InputCancellation),
    ("unpicklable", exception.SerializationError),
    ("something-new", exception.RemoteError),
])
def test_system_errors(kind: str, cls: type) -> None:
    payload = json.dumps({"kind": kind, "message": f"the {kind} message"}).encode()
    with pytest.raises(cls, match=f"the {kind} message"):
        P.decode(2, payload)


def test_timeout_error_is_also_builtin_timeout() -> None:
    assert issubclass(exception.FunctionTimeoutError, TimeoutError)
    assert issubclass(exception.FunctionTimeoutError, exception.Error)


def test_import_error_keeps_the_traceback_text() -> None:
    tb = "Traceback (most recent call last):\n  File \"/skiff/app/demo.py\"\nModuleNotFoundError: x"
    payload = json.dumps({"kind": "import", "message": tb}).encode()
    with pytest.raises(exception.ExecutionError) as ei:
        P.decode(2, payload)
    assert "ModuleNotFoundError: x" in str(ei.value)


def test_garbage_system_error_payload() -> None:
    with pytest.raises(exception.RemoteError, match="garbage"):
        P.decode(2, b"garbage")
