"""Classes: ``@app.cls()``, with lifecycle hooks and parameters, as Modal has them.

    @app.cls(cpu=2, scaledown_window=120)
    class Model:
        name: str = skiff.parameter(default="small")

        @skiff.enter()
        def load(self):
            self.weights = load(self.name)      # once per container

        @skiff.method()
        def predict(self, x):
            return self.weights(x)

    Model(name="large").predict.remote(3)
    list(Model().predict.map(range(10)))

``@app.cls`` gives a ``Cls``; calling it with parameter values gives an
``Obj``, whose methods are Functions (``.remote``, ``.map``, ``.spawn``,
``.local`` ...).  Each distinct set of parameter values -- and each
``with_options`` variant -- is a pool of containers of its own: registered
with the server (``POST /v1/functions`` with ``cls``) the first time it is
called, under the class's name plus a short hash of the parameters and
options.  A class without parameters is registered when the app starts, so
that its ``min_containers`` start at once.  Its containers make one instance
each, run its ``@enter`` hooks before their first input, dispatch inputs
``(method, args, kwargs)`` by method name, and run its ``@exit`` hooks when
they stop.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import os
import threading
import weakref
from typing import Any, Callable, Optional

from . import _aio
from . import _client
from . import _payload as P
from . import partial_function as pf
from ._options import apply_partial, with_overrides
from .exception import ExecutionError, InvalidError
from .functions import Function, FunctionSpec, _hydrate_in_container, _param_names, \
    autoscaler_body


class _NoDefault:
    def __repr__(self) -> str:
        return "<no default>"


_NO_DEFAULT: Any = _NoDefault()


class _Parameter:
    """What ``skiff.parameter()`` leaves on the class until an instance gets
    the value (instance attributes shadow it)."""

    __slots__ = ("default", "init")

    def __init__(self, default: Any, init: bool) -> None:
        self.default = default
        self.init = init

    def __repr__(self) -> str:
        return f"skiff.parameter(default={self.default!r})"


def parameter(*, default: Any = _NO_DEFAULT, init: bool = True) -> Any:
    """Declares a parameter of an ``@app.cls`` class, like a dataclass field:

        name: str = skiff.parameter()                   # required
        size: int = skiff.parameter(default=1)

    ``Model(name="x")`` then gives an instance whose containers see
    ``self.name == "x"``.  With ``init=False`` it is no parameter, only an
    annotated attribute (set it in an ``@enter`` hook)."""
    return _Parameter(default, init)


# Parameter types Modal allows; their values are checked when given.
_TYPES: dict[Any, type] = {str: str, int: int, bool: bool, bytes: bytes, float: float,
                           "str": str, "int": int, "bool": bool, "bytes": bytes, "float": float}


def class_parameters(user_cls: type) -> dict[str, tuple[_Parameter, Any]]:
    """name -> (parameter, annotation) of the class's parameters, base classes first."""
    out: dict[str, tuple[_Parameter, Any]] = {}
    for klass in reversed(user_cls.__mro__):
        notes = vars(klass).get("__annotations__", {})
        for name, value in vars(klass).items():
            if isinstance(value, _Parameter) and value.init:
                out[name] = (value, notes.get(name))
    return out


def bind_parameters(cls_name: str, declared: dict[str, tuple[_Parameter, Any]],
                    args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The parameter values of ``Cls(*args, **kwargs)``, defaults filled in."""
    names = list(declared)
    if len(args) > len(names):
        raise InvalidError(f"{cls_name}() takes {len(names)} parameter(s), got {len(args)} "
                           "positional arguments")
    values = dict(zip(names, args))
    for k, v in kwargs.items():
        if k not in declared:
            known = ", ".join(names) or "none"
            raise InvalidError(f"{cls_name}() got an unexpected parameter {k!r} (its "
                               f"parameters: {known}; declare one as "
                               f"`{k}: str = skiff.parameter()`)")
        if k in values:
            raise InvalidError(f"{cls_name}() got parameter {k!r} twice")
        values[k] = v
    for name, (p, note) in declared.items():
        if name not in values:
            if p.default is _NO_DEFAULT:
                raise InvalidError(f"{cls_name}() is missing the parameter {name!r}")
            values[name] = p.default
        want = _TYPES.get(note)
        v = values[name]
        if want is not None and not (isinstance(v, want) and
                                     (want is bool or not isinstance(v, bool))):
            if not (want is float and isinstance(v, int) and not isinstance(v, bool)):
                raise InvalidError(f"{cls_name}(): parameter {name!r} must be "
                                   f"{want.__name__}, got {type(v).__name__} {v!r}")
    return {n: values[n] for n in names}


def make_instance(user_cls: type, params: dict[str, Any]) -> Any:
    """An instance of the user's class with these parameter values, without
    calling a constructor (what the container and ``.local()`` do)."""
    obj = user_cls.__new__(user_cls)
    # Defaults for what a caller left out (Cls.from_name sends only what it was given).
    params = bind_parameters(user_cls.__name__, class_parameters(user_cls), (), dict(params))
    for k, v in params.items():
        setattr(obj, k, v)
    return obj


def run_hooks(obj: Any, kind: str) -> None:
    """Runs the instance's ``enter`` or ``exit`` hooks, in order."""
    for name in pf.hooks(type(obj), kind):
        getattr(obj, name)()


def _canonical(params: dict[str, Any]) -> bytes:
    items = sorted(params.items())
    if all(v is None or type(v) in (str, int, float, bool, bytes) for _, v in items):
        return repr(items).encode()
    return P.dumps(items)


def pool_name(base: str, params: dict[str, Any], options_key: str) -> str:
    """The function name of a class pool: the class's name, plus a hash of
    the parameters and options when there are any (the same in every process)."""
    if not params and not options_key:
        return base
    h = hashlib.sha256(_canonical(params) + b"\0" + options_key.encode()).hexdigest()
    return f"{base}-{h[:10]}"


def _user_class_of(obj: Any) -> type:
    return getattr(obj, "_skiff_user_cls", obj)


def _check_class(user_cls: type) -> None:
    init = getattr(user_cls, "__init__", object.__init__)
    if init is not object.__init__:
        raise InvalidError(
            f"{user_cls.__name__} defines __init__: classes of @app.cls are made by Skiff; "
            "declare parameters as `name: str = skiff.parameter()` and do set-up in a "
            "@skiff.enter() method")
    for name, (f, m) in pf.class_members(user_cls).items():
        if "web" in m:
            raise InvalidError(f"@skiff.{m['web']['decorator']} is not supported yet on class "
                               f"methods ({user_cls.__name__}.{name}): make the endpoint an "
                               "@app.function()")
        if "concurrent" in m:
            raise InvalidError(f"@skiff.concurrent goes on the class {user_cls.__name__}, "
                               f"not on its method {name}")
        if "batched" in m:
            pf.check_batched_signature(f, skip_self=True)


class _State:
    """What all variants of one ``@app.cls`` class share: the pools
    registered in this run of the app (name -> (app id, function id)) and the
    method Functions handed out (to forget their ids when the app stops)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pools: dict[str, tuple[str, str]] = {}
        self.handles: "weakref.WeakSet[_MethodFunction]" = weakref.WeakSet()


class Cls:
    """A class of an app (made by ``@app.cls()``).  Call it with parameter
    values to get an instance whose methods run remotely."""

    def __init__(self, app: Any, user_cls: type, spec: FunctionSpec, name: str,
                 state: _State, options_key: str = "") -> None:
        self._app = app
        self._skiff_user_cls = user_cls
        self._spec = spec
        self._name = name
        self._state = state
        self._options_key = options_key
        self._declared = class_parameters(user_cls)
        self._methods = pf.methods(user_cls)
        self.__doc__ = user_cls.__doc__

    @classmethod
    def from_user_class(cls, app: Any, user_cls: type, spec: FunctionSpec) -> "Cls":
        """The Cls of ``@app.cls(...)`` on ``user_cls`` with options ``spec``."""
        _check_class(user_cls)
        methods = pf.methods(user_cls)
        batched = [n for n, m in methods.items() if "batched" in m]
        if batched and len(methods) > 1:
            raise InvalidError(f"{user_cls.__name__}: a class with a @skiff.batched method "
                               f"({batched[0]}) may not have other methods")
        marks = dict(pf.marks(user_cls))
        if batched:
            marks["batched"] = methods[batched[0]]["batched"]
        spec = apply_partial(spec, marks, user_cls.__name__)
        return cls(app, user_cls, spec, user_cls.__name__, _State())

    # -- identity --------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def spec(self) -> FunctionSpec:
        return self._spec

    def get_user_cls(self) -> type:
        """The Python class itself (what the containers instantiate)."""
        return self._skiff_user_cls

    def __repr__(self) -> str:
        return f"<Cls {self._name}{' with options' if self._options_key else ''}>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name not in self.__dict__.get("_methods", {}):
            raise AttributeError(f"'Cls' object has no attribute {name!r}")
        raise AttributeError(f"{self._name}.{name}: make an instance first, "
                             f"{self._name}(...).{name}.remote(...)")

    @staticmethod
    def from_name(app_name: str, name: str, *, environment_name: Optional[str] = None,
                  client: Optional[_client.Client] = None, **kwargs: Any) -> Any:
        """A handle on class ``name`` of the deployed app ``app_name``:
        ``Cls.from_name("app", "Model")(size=2).predict.remote(x)``."""
        from ._deployed import DeployedCls
        return DeployedCls(app_name, name, client)

    lookup = from_name

    # -- instances -------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> "Obj":
        return Obj(self, bind_parameters(self._name, self._declared, args, kwargs))

    # -- variants --------------------------------------------------------------

    def _variant(self, spec: FunctionSpec, key: dict[str, Any]) -> "Cls":
        merged = dict(json.loads(self._options_key)) if self._options_key else {}
        merged.update(key)
        okey = json.dumps(merged, sort_keys=True, default=repr)
        return Cls(self._app, self._skiff_user_cls, spec, self._name, self._state, okey)

    def with_options(self, *, cpu: Optional[float] = None, memory: Optional[int] = None,
                     gpu: Optional[str] = None, env: Optional[dict[str, Optional[str]]] = None,
                     secrets: Optional[list[Any]] = None, retries: Any = None,
                     timeout: Optional[int] = None, min_containers: Optional[int] = None,
                     max_containers: Optional[int] = None,
                     buffer_containers: Optional[int] = None,
                     scaledown_window: Optional[int] = None, **kwargs: Any) -> "Cls":
        """The same class with other options: its instances are pools of their
        own, scaled apart from this class's."""
        from ._options import MODAL_FUNCTION_PARAMS, check_unsupported
        check_unsupported("Cls.with_options()", MODAL_FUNCTION_PARAMS, kwargs)
        opts = {"cpu": cpu, "memory": memory, "gpu": gpu, "env": env, "secrets": secrets,
                "retries": retries, "timeout": timeout, "min_containers": min_containers,
                "max_containers": max_containers, "buffer_containers": buffer_containers,
                "scaledown_window": scaledown_window}
        spec = with_overrides(self._spec, **opts)
        key = {k: (v if k != "secrets" else [repr(s) for s in v])
               for k, v in opts.items() if v is not None}
        if "retries" in key:
            key["retries"] = spec.retries.to_json() if spec.retries else None
        return self._variant(spec, key)

    def with_concurrency(self, *, max_inputs: int, target_inputs: Optional[int] = None) -> "Cls":
        """The same class with ``@skiff.concurrent(max_inputs=, target_inputs=)``."""
        pf.concurrent(max_inputs=max_inputs, target_inputs=target_inputs)  # checks them
        spec = self._spec.replace(max_inputs=max_inputs, target_inputs=target_inputs, batch=None)
        return self._variant(spec, {"max_inputs": max_inputs, "target_inputs": target_inputs})

    def with_batching(self, *, max_batch_size: int, wait_ms: int) -> "Cls":
        """The same class with ``@skiff.batched(max_batch_size=, wait_ms=)``
        on its one method."""
        pf.batched(max_batch_size=max_batch_size, wait_ms=wait_ms)  # checks them
        if len(self._methods) != 1:
            raise InvalidError(f"{self._name}.with_batching() needs a class with exactly one "
                               "method")
        batch = {"max_batch_size": max_batch_size, "wait_ms": wait_ms}
        spec = self._spec.replace(batch=batch, max_inputs=max_batch_size, target_inputs=None)
        return self._variant(spec, {"batch": batch})

    # -- registration ----------------------------------------------------------

    def _register(self, params: dict[str, Any]) -> tuple[_client.Client, str]:
        """The client and function id of the pool for these parameter values,
        registering it first when this run of the app has not yet."""
        app = self._app
        if getattr(app, "_running", None) is not None and app._app_id and app._client:
            return app._client, self._register_with(app._app_id, app._client, params)
        name = pool_name(self._name, params, self._options_key)
        app_id = os.environ.get("SKIFF_APP_ID")
        if os.environ.get("SKIFF_CONTAINER_ID") and app_id:
            fid = _hydrate_in_container(app_id, name)
            if fid is None:
                raise ExecutionError(
                    f"{self._name} with these parameters/options ({name}) is not registered in "
                    f"this container's app {app_id}: Skiff registers class instances from the "
                    "app's client, so call it there first")
            return _client.get_client(), fid
        raise ExecutionError(
            f"class {self._name!r} is not running: its app is not running. Run the program "
            f"with `skiff run FILE`, or call it inside `with app.run():`; "
            f"{self._name}(...).method.local(...) runs a method here instead")

    def _register_with(self, app_id: str, client: _client.Client,
                       params: dict[str, Any]) -> str:
        """The function id of the pool for these parameter values in app
        ``app_id``, registered (``POST /v1/functions``) if it is not yet."""
        name = pool_name(self._name, params, self._options_key)
        with self._state.lock:
            hit = self._state.pools.get(name)
            if hit is not None and hit[0] == app_id:
                return hit[1]
            from ._register import registration_of
            cls_info = {"qualname": self._skiff_user_cls.__qualname__,
                        "params": base64.b64encode(P.dumps(params)).decode("ascii")}
            body = registration_of(app_id, name, self._skiff_user_cls, self._spec,
                                   self._app.image, self._app._secrets, client, cls=cls_info)
            fid = str(client.request("POST", "/v1/functions", body)["function_id"])
            self._state.pools[name] = (app_id, fid)
            return fid

    def _dehydrate(self) -> None:
        """Forgets the pools of the app's run that ended."""
        with self._state.lock:
            self._state.pools.clear()
            handles = list(self._state.handles)
        for h in handles:
            h._dehydrate()


class Obj:
    """An instance of an app's class: ``Model(name="x")``.  Its methods are
    Functions (``obj.predict.remote(1)``); nothing is registered or started
    until one is called."""

    def __init__(self, cls: Cls, params: dict[str, Any]) -> None:
        self._cls = cls
        self._params = params
        self._handles: dict[str, _MethodFunction] = {}
        self._local: Any = None
        self._local_lock = threading.Lock()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"<{self._cls.name}({args})>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        handles = self.__dict__["_handles"]
        h = handles.get(name)
        if h is not None:
            return h
        cls = self.__dict__["_cls"]
        if name not in cls._methods:
            raise AttributeError(
                f"{cls.name} has no method {name!r} to call remotely (mark methods with "
                f"@skiff.method(); its methods: {', '.join(cls._methods) or 'none'})")
        h = _MethodFunction(self, name)
        handles[name] = h
        with cls._state.lock:
            cls._state.handles.add(h)
        return h

    def _register(self) -> tuple[_client.Client, str]:
        return self._cls._register(self._params)

    def _local_instance(self) -> Any:
        """The instance ``.local()`` calls run on, made (and entered) once."""
        with self._local_lock:
            if self._local is None:
                obj = make_instance(self._cls._skiff_user_cls, self._params)
                run_hooks(obj, "enter")
                self._local = obj
            return self._local

    def _update_autoscaler(self, *, min_containers: Optional[int] = None,
                           max_containers: Optional[int] = None,
                           buffer_containers: Optional[int] = None,
                           scaledown_window: Optional[int] = None) -> None:
        """Changes the autoscaler of this instance's pool now (see
        Function.update_autoscaler)."""
        from urllib.parse import quote
        body = autoscaler_body(min_containers=min_containers, max_containers=max_containers,
                               buffer_containers=buffer_containers,
                               scaledown_window=scaledown_window)
        client, fid = self._register()
        client.request("POST", f"/v1/functions/{quote(fid, safe='')}/autoscaler", body)

    update_autoscaler = _aio.aio_method(_update_autoscaler)


class _MethodFunction(Function):
    """``obj.method``: a Function whose inputs go to the instance's pool as
    ``(method, args, kwargs)``."""

    def __init__(self, obj: Obj, method: str) -> None:
        cls = obj._cls
        raw: Callable[..., Any] = getattr(cls._skiff_user_cls, method)
        marks = cls._methods[method].get("method") or {}
        gen = marks.get("is_generator")
        if gen is None:
            gen = inspect.isgeneratorfunction(raw) or inspect.isasyncgenfunction(raw)
        super().__init__(cls._app, raw, f"{cls.name}.{method}",
                         cls.spec.replace(is_generator=bool(gen)))
        self._obj = obj
        self._method = method
        self._param_names = _param_names(raw)[1:]   # without self

    def __repr__(self) -> str:
        return f"<Function {self._obj!r}.{self._method}>"

    def _hydrate(self) -> tuple[_client.Client, str]:
        if self._function_id is not None and self._client is not None:
            return self._client, self._function_id
        client, fid = self._obj._register()
        self._hydrate_with(client, fid)
        return client, fid

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Runs the method here, on a local instance (its @enter hooks run
        once, at the first local call)."""
        return getattr(self._obj._local_instance(), self._method)(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.local(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError(f"{self!r} (a method of an app's class) cannot be pickled yet; pass "
                        "the parameters and make the instance where it is used")
