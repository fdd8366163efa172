"""Decorators that mark functions and methods for ``@app.function`` and
``@app.cls``, with Modal's names:

    @app.function()
    @skiff.concurrent(max_inputs=10)        # 10 inputs at once per container
    def fetch(url): ...

    @app.function()
    @skiff.batched(max_batch_size=8, wait_ms=50)
    def embed(texts: list[str]) -> list[list[float]]: ...

    @app.cls()
    class Model:
        @skiff.enter()
        def load(self): ...                 # once per container, before inputs
        @skiff.method()
        def predict(self, x): ...
        @skiff.exit()
        def close(self): ...                # at container shutdown

Web endpoints (docs/api.md, "Web endpoints") go the same way, one per function:

    @app.function()
    @skiff.fastapi_endpoint(method="POST")  # or asgi_app(), wsgi_app(), web_server(8000)
    def hello(body: dict): ...

Each decorator returns the function itself, with what it said recorded in a
``_skiff_partial`` dict attribute ({"method": {...}, "enter": {...}, ...}):
methods stay plain methods of the user's class (calling ``self.predict(x)``
inside the class works as usual), and ``@app.function`` / ``@app.cls``
read the marks when they wrap the function or class.  The container runtime
finds the class's hooks and methods the same way (``hooks``, ``methods``).
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable, Optional, TypeVar

from .exception import InvalidError

T = TypeVar("T")

_ATTR = "_skiff_partial"

# Modal's limits: a batch holds at most this many inputs and waits at most this long.
MAX_BATCH_SIZE = 1000
MAX_WAIT_MS = 10 * 60 * 1000
# The server's limit on inputs at once in one container.
MAX_INPUTS = 1000

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# A DNS label, as Modal's endpoint labels are (they become URL path segments here).
LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def marks(obj: Any) -> dict[str, Any]:
    """What the decorators recorded on ``obj`` (an empty dict when nothing)."""
    d = getattr(obj, _ATTR, None)
    return d if isinstance(d, dict) else {}


def _mark(obj: Any, kind: str, value: Any, decorator: str) -> None:
    from .functions import Function

    if isinstance(obj, Function) or type(obj).__name__ in ("Cls", "LocalEntrypoint"):
        raise InvalidError(
            f"@skiff.{decorator} must be applied under @app.function() / @app.cls(), "
            f"closest to the function or class: it was given {obj!r}")
    if isinstance(obj, (staticmethod, classmethod)):
        raise InvalidError(f"@skiff.{decorator} does not take static or class methods")
    d = dict(marks(obj))
    d[kind] = value
    try:
        setattr(obj, _ATTR, d)
    except (AttributeError, TypeError):
        raise InvalidError(f"@skiff.{decorator} cannot mark {obj!r}") from None


def _check_int(what: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidError(f"{what} must be an int from {lo} to {hi}, got {value!r}")
    return value


def method(_warn_parentheses_missing: Any = None, *,
           is_generator: Optional[bool] = None) -> Callable[[T], T]:
    """Marks a method of an ``@app.cls`` class as callable remotely
    (``Model().predict.remote(x)``)."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @skiff.method() with parentheses")

    def decorate(f: T) -> T:
        if not callable(f):
            raise InvalidError(f"@skiff.method() decorates methods, got {f!r}")
        _mark(f, "method", {"is_generator": is_generator}, "method()")
        return f

    return decorate


def enter(_warn_parentheses_missing: Any = None, *, snap: bool = False) -> Callable[[T], T]:
    """Marks a method to run once in each container, after the instance is
    made and before its first input (load a model here).  With
    ``enable_memory_snapshot=True`` on the class, ``snap=True`` hooks run
    once, in the snapshot's template, and each container starts from their
    state; ``snap=False`` ones run in each container.  Without snapshots,
    ``snap=True`` hooks simply run first."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @skiff.enter() with parentheses")

    def decorate(f: T) -> T:
        if not callable(f):
            raise InvalidError(f"@skiff.enter() decorates methods, got {f!r}")
        _mark(f, "enter", {"snap": bool(snap)}, "enter()")
        return f

    return decorate


def exit(_warn_parentheses_missing: Any = None) -> Callable[[T], T]:  # noqa: A001 - Modal's name
    """Marks a method to run when the container shuts down (scaled down, app
    stopped), after its last input, within a grace period."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @skiff.exit() with parentheses")

    def decorate(f: T) -> T:
        if not callable(f):
            raise InvalidError(f"@skiff.exit() decorates methods, got {f!r}")
        _mark(f, "exit", {}, "exit()")
        return f

    return decorate


def concurrent(_warn_parentheses_missing: Any = None, *, max_inputs: Optional[int] = None,
               target_inputs: Optional[int] = None) -> Callable[[T], T]:
    """Lets one container run up to ``max_inputs`` inputs at once: threads for
    a sync function (its code must be thread-safe), asyncio tasks for an
    async one.  The autoscaler aims at ``target_inputs`` per container
    (default ``max_inputs``) and bursts up to ``max_inputs``.  Goes under
    ``@app.function()``, or on the class under ``@app.cls()``."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @skiff.concurrent(max_inputs=N) with parentheses")
    if max_inputs is None:
        raise InvalidError("@skiff.concurrent() needs max_inputs=")
    _check_int("max_inputs", max_inputs, 1, MAX_INPUTS)
    if target_inputs is not None:
        _check_int("target_inputs", target_inputs, 1, max_inputs)

    def decorate(f: T) -> T:
        if not callable(f):
            raise InvalidError(f"@skiff.concurrent() decorates functions and classes, got {f!r}")
        _mark(f, "concurrent", {"max_inputs": max_inputs, "target_inputs": target_inputs},
              "concurrent()")
        return f

    return decorate


def batched(_warn_parentheses_missing: Any = None, *, max_batch_size: Optional[int] = None,
            wait_ms: Optional[int] = None) -> Callable[[T], T]:
    """Dynamic batching: callers pass single inputs (``f.remote(x)``,
    ``f.map(xs)``); the container collects up to ``max_batch_size`` of them,
    waiting at most ``wait_ms`` after the first, and calls the function once
    with a list per argument.  It must return a list with one result per
    input, in order."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @skiff.batched(max_batch_size=N, wait_ms=M) with parentheses")
    if max_batch_size is None or wait_ms is None:
        raise InvalidError("@skiff.batched() needs max_batch_size= and wait_ms=")
    _check_int("max_batch_size", max_batch_size, 1, MAX_BATCH_SIZE)
    _check_int("wait_ms", wait_ms, 0, MAX_WAIT_MS - 1)

    def decorate(f: T) -> T:
        if inspect.isclass(f) or not callable(f):
            raise InvalidError(f"@skiff.batched() decorates functions and methods, got {f!r}")
        if inspect.isgeneratorfunction(f) or inspect.isasyncgenfunction(f):
            raise InvalidError(f"@skiff.batched() does not take generator functions ({f!r})")
        # A method is checked again, without self, when its class is decorated.
        check_batched_signature(f, skip_self=False)
        _mark(f, "batched", {"max_batch_size": max_batch_size, "wait_ms": wait_ms},
              "batched()")
        return f

    return decorate


def check_batched_signature(f: Callable[..., Any], skip_self: bool) -> None:
    """A batched function takes named parameters only (each becomes a list):
    no ``*args`` or ``**kwargs``; with ``skip_self`` (a method, checked when
    its class is decorated), at least one besides ``self``."""
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        return
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise InvalidError(f"the batched function {f.__qualname__} may not take "
                               f"*args or **kwargs ({p.name})")
    if len(params) <= (1 if skip_self else 0):
        raise InvalidError(f"the batched function {f.__qualname__} needs at least one "
                           "parameter (each gets a list of values)")


def _check_label(label: Any, decorator: str) -> Optional[str]:
    if label is None:
        return None
    if not isinstance(label, str) or not LABEL_RE.match(label):
        raise InvalidError(
            f"@skiff.{decorator}: label={label!r} is not a valid endpoint label: use 1 to 63 "
            "lower-case letters, digits and '-', not starting or ending with '-'")
    return label


def _check_common(decorator: str, requires_proxy_auth: Any, custom_domains: Any) -> None:
    if not isinstance(requires_proxy_auth, bool):
        raise InvalidError(f"@skiff.{decorator}: requires_proxy_auth must be a bool, "
                           f"got {requires_proxy_auth!r}")
    if custom_domains:
        raise InvalidError(f"@skiff.{decorator}: custom_domains is not available in Skiff yet "
                           "(endpoints are served under the server's own address)")


def _web(kind: str, decorator: str, nullary: bool,
         config: dict[str, Any]) -> Callable[[T], T]:
    """The decorator that marks a function as a web endpoint of ``kind``
    (``marks(f)["web"]`` is ``{"kind", "label", "requires_proxy_auth", ...}``)."""

    def decorate(f: T) -> T:
        if inspect.isclass(f) or not callable(f):
            raise InvalidError(f"@skiff.{decorator} decorates functions, got {f!r}")
        web = marks(f).get("web")
        if web is not None:
            raise InvalidError(
                f"{getattr(f, '__qualname__', f)!r} has two web decorators "
                f"(@skiff.{decorator} and @skiff.{web['decorator']}): a function is one "
                "web endpoint")
        if nullary:
            _check_nullary(f, decorator)
        _mark(f, "web", dict(config, kind=kind, decorator=decorator), decorator)
        return f

    return decorate


def _check_nullary(f: Any, decorator: str) -> None:
    """An app factory or server starter is called with no arguments."""
    try:
        params = inspect.signature(f).parameters.values()
    except (TypeError, ValueError):
        return
    required = [p.name for p in params if p.default is p.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if required:
        raise InvalidError(f"@skiff.{decorator}: {f.__qualname__} is called with no "
                           f"arguments, but it requires {', '.join(required)}")


def fastapi_endpoint(_warn_parentheses_missing: Any = None, *, method: str = "GET",
                     label: Optional[str] = None, docs: bool = False,
                     requires_proxy_auth: bool = False,
                     custom_domains: Optional[Any] = None) -> Callable[[T], T]:
    """Serves the function at its URL (``Function.get_web_url()``) for HTTP
    ``method`` requests: query parameters and the JSON body become its
    arguments and its return value the response, as FastAPI does (the image
    needs ``fastapi``).  ``label`` names the URL's last path segment
    (default: the function's name, lower case, ``_`` -> ``-``); ``docs=True``
    also serves ``/docs``."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @skiff.fastapi_endpoint() with parentheses")
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        raise InvalidError(f"@skiff.fastapi_endpoint: method={method!r} is not one of "
                           f"{', '.join(HTTP_METHODS)}")
    _check_common("fastapi_endpoint()", requires_proxy_auth, custom_domains)
    if not isinstance(docs, bool):
        raise InvalidError(f"@skiff.fastapi_endpoint: docs must be a bool, got {docs!r}")
    return _web("function", "fastapi_endpoint()", False, {
        "method": method.upper(), "label": _check_label(label, "fastapi_endpoint()"),
        "docs": docs, "requires_proxy_auth": requires_proxy_auth})


def web_endpoint(_warn_parentheses_missing: Any = None, *, method: str = "GET",
                 label: Optional[str] = None, docs: bool = False,
                 requires_proxy_auth: bool = False,
                 custom_domains: Optional[Any] = None) -> Callable[[T], T]:
    """Modal's older name of ``fastapi_endpoint``."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @skiff.web_endpoint() with parentheses")
    return fastapi_endpoint(method=method, label=label, docs=docs,
                            requires_proxy_auth=requires_proxy_auth,
                            custom_domains=custom_domains)


def asgi_app(_warn_parentheses_missing: Any = None, *, label: Optional[str] = None,
             requires_proxy_auth: bool = False,
             custom_domains: Optional[Any] = None) -> Callable[[T], T]:
    """Serves the ASGI application (FastAPI, Starlette, ...) that the
    function returns; it is called once per container, with no arguments.
    The app sees the endpoint's prefix as ``root_path``."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @skiff.asgi_app() with parentheses")
    _check_common("asgi_app()", requires_proxy_auth, custom_domains)
    return _web("asgi", "asgi_app()", True, {
        "label": _check_label(label, "asgi_app()"), "docs": False,
        "requires_proxy_auth": requires_proxy_auth})


def wsgi_app(_warn_parentheses_missing: Any = None, *, label: Optional[str] = None,
             requires_proxy_auth: bool = False,
             custom_domains: Optional[Any] = None) -> Callable[[T], T]:
    """Serves the WSGI application (Flask, Django, ...) that the function
    returns; it is called once per container, with no arguments."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @skiff.wsgi_app() with parentheses")
    _check_common("wsgi_app()", requires_proxy_auth, custom_domains)
    return _web("wsgi", "wsgi_app()", True, {
        "label": _check_label(label, "wsgi_app()"), "docs": False,
        "requires_proxy_auth": requires_proxy_auth})


def web_server(port: int, *, startup_timeout: float = 5.0, label: Optional[str] = None,
               requires_proxy_auth: bool = False,
               custom_domains: Optional[Any] = None) -> Callable[[T], T]:
    """Serves whatever HTTP server the function starts listening on
    ``127.0.0.1:port`` (or all addresses) inside its container, once it
    accepts connections -- within ``startup_timeout`` seconds."""
    if callable(port):
        raise InvalidError("@skiff.web_server needs the port: @skiff.web_server(8000)")
    _check_int("port", port, 1, 65535)
    if (isinstance(startup_timeout, bool) or not isinstance(startup_timeout, (int, float))
            or not startup_timeout > 0):
        raise InvalidError(f"@skiff.web_server: startup_timeout must be a number of seconds "
                           f"> 0, got {startup_timeout!r}")
    _check_common("web_server()", requires_proxy_auth, custom_domains)
    return _web("server", "web_server()", True, {
        "label": _check_label(label, "web_server()"), "docs": False,
        "requires_proxy_auth": requires_proxy_auth, "port": port,
        "startup_timeout": float(startup_timeout)})


def web_config(m: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The ``"web"`` object of ``POST /v1/functions`` for a function with
    marks ``m`` (docs/api.md, "Web endpoints"), or None."""
    web = m.get("web")
    if not web:
        return None
    out: dict[str, Any] = {"kind": web["kind"]}
    if web["kind"] == "function":
        out["method"] = web["method"]
    out["label"] = web["label"]
    out["docs"] = bool(web.get("docs"))
    out["requires_proxy_auth"] = bool(web.get("requires_proxy_auth"))
    if web["kind"] == "server":
        out["port"] = web["port"]
        out["startup_timeout"] = web["startup_timeout"]
    return out


def class_members(user_cls: type) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The marked members of a class (its own and inherited): name ->
    (function, marks), in definition order, base classes first."""
    found: dict[str, tuple[Any, dict[str, Any]]] = {}
    for klass in reversed(user_cls.__mro__):
        for name, value in vars(klass).items():
            m = marks(value)
            if m:
                found[name] = (value, m)
            elif name in found:
                del found[name]  # overridden by an unmarked member
    return found


def hooks(user_cls: type, kind: str, snap: Optional[bool] = None) -> list[str]:
    """Names of the class's ``enter`` or ``exit`` hooks in the order they run
    (enter: ``snap=True`` ones first; with ``snap`` given, only the enter
    hooks whose ``snap`` is that)."""
    members = class_members(user_cls)
    names = [n for n, (_, m) in members.items() if kind in m]
    if snap is not None:
        names = [n for n in names if bool(members[n][1][kind].get("snap")) == snap]
    if kind == "enter":
        names.sort(key=lambda n: not members[n][1]["enter"].get("snap"))
    return names


def methods(user_cls: type) -> dict[str, dict[str, Any]]:
    """The class's remote methods (``@method`` or ``@batched``): name -> marks."""
    return {n: m for n, (_, m) in class_members(user_cls).items()
            if "method" in m or "batched" in m}
