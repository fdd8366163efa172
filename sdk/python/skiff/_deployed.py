"""Handles on deployed code: ``Function.from_name(app, name)`` and
``Cls.from_name(app, name)`` (docs/api.md, "Deployed apps").

A handle is lazy, as Modal's are: nothing is asked of the server until the
first call, which looks the function up
(``GET /v1/apps/<app>/functions/<name>``) -- a missing app or function is a
NotFoundError then.  Function ids stay the same across versions of a
deployed app, so a handle keeps working after a redeploy and calls reach
the version in force.  A class instance's pool is made by the server from
the deployed class (``POST /v1/apps/<app>/classes/<cls>/instances``), so
the caller needs no copy of the class: its parameters are passed by name.
"""

from __future__ import annotations

import base64
import threading
from typing import Any, Optional

from . import _aio, _client
from . import _payload as P
from ._quote import quote
from .exception import InvalidError
from .functions import Function, FunctionSpec


def _stub(app_name: str, name: str) -> Any:
    def deployed(*args: Any, **kwargs: Any) -> Any:
        raise InvalidError(f"{name} is a function of the deployed app {app_name}: call it with "
                           f".remote(), .map() or .spawn()")
    deployed.__name__ = deployed.__qualname__ = name.replace(".", "_")
    return deployed


class DeployedFunction(Function):
    """``Function.from_name(app_name, name)``."""

    def __init__(self, app_name: str, name: str, client: Optional[_client.Client] = None) -> None:
        if not isinstance(app_name, str) or not app_name or not isinstance(name, str) or not name:
            raise InvalidError("Function.from_name(app_name, name) needs two non-empty strings")
        super().__init__(None, _stub(app_name, name), name, FunctionSpec())
        self._deployed_app = app_name
        self._lookup_client = client
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Function {self._deployed_app}.{self._name} (deployed)>"

    def _hydrate(self) -> tuple[_client.Client, str]:
        with self._lock:
            if self._function_id is not None and self._client is not None:
                return self._client, self._function_id
            client = self._lookup_client or _client.get_client()
            info = client.request(
                "GET", f"/v1/apps/{quote(self._deployed_app, safe='')}/functions/"
                f"{quote(self._name, safe='')}")
            if info.get("kind") == "class":
                raise InvalidError(f"{self._name} is a class of {self._deployed_app}: use "
                                   f"skiff.Cls.from_name({self._deployed_app!r}, "
                                   f"{self._name!r})")
            self._spec = self._spec.replace(is_generator=bool(info.get("is_generator")))
            url = info.get("web_url")
            self._hydrate_with(client, str(info["function_id"]), str(url) if url else None)
            return client, str(info["function_id"])

    def _get_web_url(self) -> Optional[str]:
        self._hydrate()
        return self._web_url

    get_web_url = _aio.aio_method(_get_web_url)

    @property
    def web_url(self) -> Optional[str]:
        return self._get_web_url()

    def __reduce__(self) -> tuple[Any, ...]:
        return (DeployedFunction, (self._deployed_app, self._name))


class DeployedCls:
    """``Cls.from_name(app_name, name)``: ``Model(size=2).predict.remote(x)``."""

    def __init__(self, app_name: str, name: str, client: Optional[_client.Client] = None) -> None:
        if not isinstance(app_name, str) or not app_name or not isinstance(name, str) or not name:
            raise InvalidError("Cls.from_name(app_name, name) needs two non-empty strings")
        self._app_name = app_name
        self._name = name
        self._lookup_client = client
        self._info: Optional[dict[str, Any]] = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Cls {self._app_name}.{self._name} (deployed)>"

    def _lookup(self) -> tuple[_client.Client, dict[str, Any]]:
        with self._lock:
            client = self._lookup_client or _client.get_client()
            if self._info is None:
                info = client.request(
                    "GET", f"/v1/apps/{quote(self._app_name, safe='')}/functions/"
                    f"{quote(self._name, safe='')}")
                if info.get("kind") != "class":
                    raise InvalidError(f"{self._name} is a function of {self._app_name}, not a "
                                       f"class: use skiff.Function.from_name")
                self._info = info
            return client, self._info

    def __call__(self, *args: Any, **kwargs: Any) -> "DeployedObj":
        if args:
            raise InvalidError(f"{self._name}(...): pass a deployed class's parameters by name")
        return DeployedObj(self, kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(f"{self._name}.{name}: make an instance first, "
                             f"{self._name}().{name}.remote(...)")


class DeployedObj:
    def __init__(self, cls: DeployedCls, params: dict[str, Any]) -> None:
        self._cls = cls
        self._params = params
        self._fid: Optional[str] = None
        self._lock = threading.Lock()
        self._handles: dict[str, DeployedMethod] = {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"<{self._cls._name}({args}) of {self._cls._app_name}>"

    def _register(self) -> tuple[_client.Client, str]:
        from .cls import pool_name
        client, info = self._cls._lookup()
        with self._lock:
            if self._fid is None:
                declared = info.get("params") or []
                unknown = [k for k in self._params if k not in declared]
                if unknown:
                    raise InvalidError(f"{self._cls._name} has no parameter "
                                       f"{', '.join(map(repr, unknown))} (its parameters: "
                                       f"{', '.join(declared) or 'none'})")
                name = pool_name(self._cls._name, self._params, "")
                body = {"pool": name,
                        "params": base64.b64encode(P.dumps(self._params)).decode("ascii")}
                resp = client.request(
                    "POST", f"/v1/apps/{quote(self._cls._app_name, safe='')}/classes/"
                    f"{quote(self._cls._name, safe='')}/instances", body)
                self._fid = str(resp["function_id"])
            return client, self._fid

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        h = self._handles.get(name)
        if h is None:
            _, info = self._cls._lookup()
            methods = info.get("methods") or {}
            if name not in methods:
                raise AttributeError(f"{self._cls._name} has no method {name!r} (its methods: "
                                     f"{', '.join(methods) or 'none'})")
            h = DeployedMethod(self, name, bool((methods[name] or {}).get("is_generator")))
            self._handles[name] = h
        return h


class DeployedMethod(Function):
    def __init__(self, obj: DeployedObj, method: str, is_generator: bool) -> None:
        super().__init__(None, _stub(obj._cls._app_name, f"{obj._cls._name}.{method}"),
                         f"{obj._cls._name}.{method}", FunctionSpec(is_generator=is_generator))
        self._obj = obj
        self._method = method

    def __repr__(self) -> str:
        return f"<Function {self._obj!r}.{self._method}>"

    def _hydrate(self) -> tuple[_client.Client, str]:
        if self._function_id is not None and self._client is not None:
            return self._client, self._function_id
        client, fid = self._obj._register()
        self._hydrate_with(client, fid)
        return client, fid
