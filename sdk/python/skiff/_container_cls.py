"""Class pools in the container (``init["cls"]``, from ``@app.cls``): the
instance, its hooks and the dispatcher that turns ``(method, args, kwargs)``
inputs into calls (docs/protocol.md, "Issue 4 additions").

skiff._container imports this module only for a class pool.  The instance
is made without calling a constructor, its parameters set as attributes
(skiff.cls.make_instance), and its ``@enter`` hooks run on the main thread
before ``ready``, under a SIGALRM deadline like any input's.  Its inputs run
through the runtime's usual loops as calls of one function,
``dispatch(method, *args, **kwargs)``; the loops pick the generator loop for
a chunk when its method is a generator.  ``@exit`` hooks run when the
process ends (``stop``, EOF, SIGTERM).
"""

from __future__ import annotations

import base64
import pickle
import signal
import sys
from time import monotonic
from typing import Any, Callable

from skiff import _container as C
from skiff import cls as cls_mod
from skiff import partial_function as pf

# pickle.dumps({}): the parameters of a class without any.
_NO_PARAMS = "gAR9lC4="


def _async_caller(rt: Any, m: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return rt._run_async(m(*args, **kwargs))
    return call


def dispatcher(rt: Any, obj: Any, names: "list[str]") -> Callable[..., Any]:
    """``dispatch(method, *args, **kwargs)``: calls the instance's method
    (async ones on the runtime's event loop)."""
    table: "dict[str, Callable[..., Any]]" = {}
    for name in names:
        m = getattr(obj, name)
        table[name] = _async_caller(rt, m) if C._code_flags(m) & C._CO_COROUTINE else m
    cls_name = type(obj).__name__

    def dispatch(method: str, /, *args: Any, **kwargs: Any) -> Any:
        f = table.get(method)
        if f is None:
            raise AttributeError(f"{cls_name} has no method {method!r} (its methods: "
                                 f"{', '.join(table) or 'none'})")
        return f(*args, **kwargs)
    return dispatch


def _run_hooks(rt: Any, obj: Any, kind: str, snap: "bool | None" = None) -> None:
    for name in pf.hooks(type(obj), kind, snap):
        r = getattr(obj, name)()
        if type(r).__name__ == "coroutine":
            rt._run_async(r)


def _enter(rt: Any, obj: Any, timeout: float, snap: "bool | None" = None) -> None:
    """Runs the @enter hooks (with ``snap`` given, those whose snap is that) on
    the main thread, at most ``timeout`` seconds."""
    if timeout > 0:
        C._timeout = timeout
        C._deadline = monotonic() + timeout
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        _run_hooks(rt, obj, "enter", snap)
    except C._Timeout:
        raise TimeoutError(f"the @enter hooks of {type(obj).__name__} did not finish within "
                           f"{timeout:g} s (startup_timeout)") from None
    finally:
        C._deadline = 0.0
        if timeout > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)


def run_exit_hooks(rt: Any, obj: Any) -> None:
    """Runs the @exit hooks; a failing one is reported and the next still runs."""
    for name in pf.hooks(type(obj), "exit"):
        try:
            r = getattr(obj, name)()
            if type(r).__name__ == "coroutine":
                rt._run_async(r)
        except C._Terminate:
            return          # told again to go: go
        except BaseException as e:
            sys.stderr.write(f"@exit hook {type(obj).__name__}.{name} failed:\n"
                             f"{C._format_exc(e)}")
            sys.stderr.flush()


def instance(user_cls: type, init: "dict[str, Any]") -> Any:
    """The class pool's instance, with its parameters, not entered."""
    info = init["cls"]
    params = pickle.loads(base64.b64decode(info.get("params") or _NO_PARAMS))
    return cls_mod.make_instance(user_cls, params)


def snap_enter(obj: Any, init: "dict[str, Any]") -> None:
    """A snapshot's template: runs the instance's ``@enter(snap=True)`` hooks
    (async ones on an event loop that is closed afterwards, so that no fork
    shares its file descriptors)."""
    hooks_rt = C._Runtime(None, lambda: None, init)  # type: ignore[arg-type]
    try:
        _enter(hooks_rt, obj, float(init.get("enter_timeout") or init.get("timeout") or 0),
               snap=True)
    finally:
        if hooks_rt.loop is not None:
            hooks_rt.loop.close()


def make(kind: Any, conn: Any, user_cls: type, init: "dict[str, Any]",
         obj: Any = None) -> "tuple[Any, Any]":
    """A runtime of class ``kind`` serving the class pool, and its instance
    (entered).  ``obj``: the instance a snapshot's template made and ran the
    ``snap=True`` hooks of; only the others run here."""
    snapped = obj is not None
    if obj is None:
        obj = instance(user_cls, init)
    methods = pf.methods(user_cls)
    if init.get("batch"):
        names = [n for n, m in methods.items() if "batched" in m] or list(methods)
        if len(names) != 1:
            raise TypeError(f"{user_cls.__name__}: a batched class needs exactly one method")
        rt = kind(conn, getattr(obj, names[0]), init)
        rt.batch_method = names[0]
    else:
        rt = kind(conn, lambda *a, **k: None, init)
        rt.f = dispatcher(rt, obj, list(methods))
        rt.is_async = False
        gen_flags = C._CO_GENERATOR | C._CO_ASYNC_GENERATOR
        rt.gen_methods = frozenset(
            n for n in methods
            if C._code_flags(getattr(user_cls, n)) & gen_flags
            or (methods[n].get("method") or {}).get("is_generator"))
    rt.cls_mode = True
    _enter(rt, obj, float(init.get("enter_timeout") or init.get("timeout") or 0),
           snap=False if snapped else None)
    return rt, obj
