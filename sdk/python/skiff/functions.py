"""Functions and function calls, with Modal's API.

``@app.function()`` turns a Python function into a ``Function``; while its
app runs (``skiff run``, ``with app.run():``, or inside the app's own
containers) it can be called remotely:

    square.remote(3)                    # one call, waits for the result
    call = square.spawn(3); call.get()  # one call, result later
    list(square.map(range(10)))         # many inputs, results in order
    for x in gen.remote_gen(5): ...     # a generator function's items

A web endpoint (``@skiff.fastapi_endpoint()`` etc. under ``@app.function()``)
is requested over HTTP at ``get_web_url()`` instead; ``.remote()`` and the
other calls refuse it.
Every blocking method has an ``.aio`` form for asyncio.  Arguments and
results travel pickled (docs/api.md, "Payloads"); an argument that cannot be
pickled is refused here, before anything is sent.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import json
import os
import time
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, Optional, Sequence
from ._quote import quote

from . import _aio
from . import _client
from . import _payload as P
from ._map import MapCall, _Failed
from .exception import ExecutionError, InvalidError, ServerError, TimeoutError
from .image import Image
from .retries import Retries
from .secret import Secret

# The decorator of each kind of web endpoint, for messages.
_WEB_DECORATOR = {"function": "fastapi_endpoint()", "asgi": "asgi_app()", "wsgi": "wsgi_app()",
                  "server": "web_server()"}

# Seconds one long poll of a spawned call's result lasts.
_RESULT_SLICE = 60.0

Inputs = Iterator[tuple[tuple[Any, ...], dict[str, Any]]]


def _param_names(f: Callable[..., Any]) -> tuple[str, ...]:
    try:
        params = inspect.signature(f).parameters.values()
    except (TypeError, ValueError):
        return ()
    return tuple(p.name for p in params
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def _check_kwargs(kwargs: Any) -> dict[str, Any]:
    if not isinstance(kwargs, dict):
        raise InvalidError(f"kwargs must be a dict, got {type(kwargs).__name__}")
    return kwargs


def _hydrate_in_container(app_id: str, name: str) -> Optional[str]:
    """The id of function ``name`` of this container's app, asked from the server."""
    client = _client.get_client()
    info = client.request("GET", f"/v1/apps/{quote(app_id, safe='')}")
    ids = info.get("function_ids")
    if isinstance(ids, dict) and isinstance(ids.get(name), str):
        return str(ids[name])
    return None


_NOTHING = object()


class _Args1:
    """An iterator of single positional arguments (see MapCall.feed)."""

    __slots__ = ("it",)

    def __init__(self, it: Iterator[Any]) -> None:
        self.it = it

    def __iter__(self) -> Iterator[Any]:
        return self.it


def check_autoscaler(min_containers: Any, max_containers: Any, buffer_containers: Any,
                     scaledown_window: Any) -> None:
    """Modal's autoscaler settings, checked (None: not given)."""
    for what, v, lo in (("min_containers", min_containers, 0),
                        ("max_containers", max_containers, 1),
                        ("buffer_containers", buffer_containers, 0)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
            raise InvalidError(f"{what} must be an int >= {lo}, got {v!r}")
    if (min_containers is not None and max_containers is not None
            and min_containers > max_containers):
        raise InvalidError(f"min_containers ({min_containers}) is more than max_containers "
                           f"({max_containers})")
    if scaledown_window is not None and (
            isinstance(scaledown_window, bool) or not isinstance(scaledown_window, (int, float))
            or not 2 <= scaledown_window <= 86400):
        raise InvalidError(f"scaledown_window must be 2 to 86400 seconds, got "
                           f"{scaledown_window!r}")


def autoscaler_body(**settings: Any) -> dict[str, Any]:
    """The body of ``POST /v1/functions/<fid>/autoscaler``: the settings given."""
    check_autoscaler(settings.get("min_containers"), settings.get("max_containers"),
                     settings.get("buffer_containers"), settings.get("scaledown_window"))
    body = {k: v for k, v in settings.items() if v is not None}
    if not body:
        raise InvalidError("update_autoscaler() needs at least one of min_containers, "
                           "max_containers, buffer_containers, scaledown_window")
    return body


class FunctionSpec:
    """What ``@app.function(...)`` / ``@app.cls(...)`` said, checked
    (docs/api.md, POST /v1/functions).  ``batch`` is ``{"max_batch_size",
    "wait_ms"}`` for a ``@batched`` function; ``max_inputs`` and
    ``target_inputs`` come from ``@concurrent``; ``web`` is the ``"web"``
    object of a web endpoint (``@fastapi_endpoint``, ``@asgi_app``, ...)."""

    __slots__ = ("image", "secrets", "env", "cpu", "memory", "gpu", "timeout", "startup_timeout",
                 "retries", "block_network", "serialized", "is_generator", "min_containers",
                 "max_containers", "buffer_containers", "scaledown_window", "max_inputs",
                 "target_inputs", "batch", "web", "schedule", "enable_memory_snapshot")

    def __init__(self, *, image: Optional[Image] = None, secrets: Sequence[Secret] = (),
                 env: Optional[dict[str, Optional[str]]] = None, cpu: Optional[float] = None,
                 memory: Optional[int] = None, gpu: Optional[str] = None, timeout: int = 300,
                 startup_timeout: Optional[int] = None, retries: Optional[Retries] = None,
                 block_network: bool = False, serialized: bool = False,
                 is_generator: bool = False, min_containers: int = 0,
                 max_containers: Optional[int] = None, buffer_containers: int = 0,
                 scaledown_window: float = 60, max_inputs: int = 1,
                 target_inputs: Optional[int] = None,
                 batch: Optional[dict[str, int]] = None,
                 web: Optional[dict[str, Any]] = None, schedule: Any = None,
                 enable_memory_snapshot: bool = False) -> None:
        self.image = image
        self.secrets = list(secrets)
        self.env = env
        self.cpu = cpu
        self.memory = memory
        self.gpu = gpu
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.retries = retries
        self.block_network = block_network
        self.serialized = serialized
        self.is_generator = is_generator
        self.min_containers = min_containers
        self.max_containers = max_containers
        self.buffer_containers = buffer_containers
        self.scaledown_window = scaledown_window
        self.max_inputs = max_inputs
        self.target_inputs = target_inputs
        self.schedule = schedule
        self.batch = batch
        self.web = web
        self.enable_memory_snapshot = enable_memory_snapshot

    def replace(self, **changes: Any) -> "FunctionSpec":
        """A copy with some fields changed."""
        fields = {k: getattr(self, k) for k in self.__slots__}
        fields.update(changes)
        return FunctionSpec(**fields)


class FunctionStats:
    """What ``Function.get_current_stats()`` returns: Modal's ``backlog``
    (inputs waiting) and ``num_total_runners`` (containers), plus what the
    server says beyond them (``GET /v1/functions/<fid>``): ``running_inputs``,
    ``idle``, ``busy``, ``starting``, ``waiting_for_capacity``,
    ``cold_starts``, ``cold_start_median_ms``, ``cold_start_p90_ms``, ``avg_ms``,
    ``broken`` and ``autoscaler`` (a dict)."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.backlog = int(info.get("backlog") or 0)
        self.num_total_runners = int(info.get("containers") or 0)
        self.running_inputs = int(info.get("running_inputs") or 0)
        self.idle = int(info.get("idle") or 0)
        self.busy = int(info.get("busy") or 0)
        self.starting = int(info.get("starting") or 0)
        self.waiting_for_capacity = bool(info.get("waiting_for_capacity"))
        self.cold_starts = int(info.get("cold_starts") or 0)
        # Of the function's last 64 cold starts: container start to ready.
        self.cold_start_median_ms: Optional[float] = info.get("cold_start_median_ms")
        self.cold_start_p90_ms: Optional[float] = info.get("cold_start_p90_ms")
        self.avg_ms: Optional[float] = info.get("avg_ms")
        self.broken: Optional[str] = info.get("broken")
        self.autoscaler: dict[str, Any] = dict(info.get("autoscaler") or {})
        self.raw = info

    def __repr__(self) -> str:
        return (f"FunctionStats(backlog={self.backlog}, num_total_runners="
                f"{self.num_total_runners}, running_inputs={self.running_inputs}, "
                f"idle={self.idle}, busy={self.busy}, starting={self.starting}, "
                f"waiting_for_capacity={self.waiting_for_capacity})")


class Function:
    """A function of an app.  Made by ``@app.function()``; see the module
    comment for how to call it."""

    def __init__(self, app: Any, raw_f: Callable[..., Any], name: str,
                 spec: FunctionSpec) -> None:
        self._app = app
        self._raw_f = raw_f
        self._name = name
        self._spec = spec
        self._param_names = _param_names(raw_f)
        self._where = f"{name}()"
        self._client: Optional[_client.Client] = None
        self._function_id: Optional[str] = None
        self._remote_path: Optional[str] = None
        # The endpoint's URL while its app runs (web endpoints only).
        self._web_url: Optional[str] = None
        # The method name of a class pool's inputs (cls.py), None for functions.
        self._method: Optional[str] = None
        self.__doc__ = raw_f.__doc__
        self.__wrapped__ = raw_f

    # -- identity ------------------------------------------------------------

    @property
    def object_id(self) -> Optional[str]:
        """The server's id (``fu-...``) while the app runs, else None."""
        return self._function_id

    @property
    def function_id(self) -> Optional[str]:
        return self._function_id

    @property
    def app(self) -> Any:
        return self._app

    @property
    def spec(self) -> FunctionSpec:
        return self._spec

    @property
    def is_generator(self) -> bool:
        return self._spec.is_generator

    def get_raw_f(self) -> Callable[..., Any]:
        """The Python function itself (what the container runs)."""
        return self._raw_f

    @property
    def __name__(self) -> str:  # type: ignore[override]
        return self._name

    def __repr__(self) -> str:
        return f"<Function {self._name}{' ' + self._function_id if self._function_id else ''}>"

    @staticmethod
    def from_name(app_name: str, name: str, *, environment_name: Optional[str] = None,
                  client: Optional[_client.Client] = None, **kwargs: Any) -> "Function":
        """A handle on function ``name`` of the deployed app ``app_name``
        (``skiff deploy``), looked up at its first call."""
        from ._deployed import DeployedFunction
        return DeployedFunction(app_name, name, client)

    lookup = from_name

    # -- hydration -----------------------------------------------------------

    def _hydrate_with(self, client: _client.Client, function_id: str,
                      web_url: Optional[str] = None) -> None:
        self._client = client
        self._function_id = function_id
        self._remote_path = f"/v1/functions/{quote(function_id, safe='')}/remote"
        self._web_url = web_url

    def _dehydrate(self) -> None:
        self._web_url = None
        self._remote_path = None
        self._function_id = None
        self._client = None

    def _hydrate(self) -> tuple[_client.Client, str]:
        """The client and function id for a call, or a clear error."""
        if self._function_id is not None and self._client is not None:
            return self._client, self._function_id
        app_id = os.environ.get("SKIFF_APP_ID")
        if os.environ.get("SKIFF_CONTAINER_ID") and app_id:
            fid = _hydrate_in_container(app_id, self._name)
            if fid is None:
                raise ExecutionError(
                    f"function {self._name!r} is not part of this container's app {app_id} "
                    "(the server did not list it)")
            self._hydrate_with(_client.get_client(), fid)
            return self._client, fid  # type: ignore[return-value]
        raise ExecutionError(
            f"function {self._name!r} is not running: its app is not running. Run the "
            "program with `skiff run FILE`, or call it inside `with app.run():`; "
            f"{self._name}.local(...) runs it here instead")

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (an argument, or a global of a serialized function) by
        # reference: the other side finds its own Function of that name.
        return (_function_by_reference,
                (getattr(self._raw_f, "__module__", None), getattr(self._raw_f, "__qualname__", ""),
                 self._name, self._spec.is_generator))

    def hydrate(self, client: Optional[_client.Client] = None) -> "Function":
        """Makes sure the function has its server id (raises when its app is not running)."""
        self._hydrate()
        return self

    # -- web endpoints ---------------------------------------------------------

    @property
    def is_web_endpoint(self) -> bool:
        """Whether the function is served over HTTP (``@fastapi_endpoint``,
        ``@asgi_app``, ``@wsgi_app``, ``@web_server``)."""
        return bool(self._spec.web)

    def _get_web_url(self) -> Optional[str]:
        """The URL the endpoint is served at while its app runs
        (``http://HOST:PORT/<app>/<label>``); None for a function that is not
        a web endpoint.  Raises ExecutionError when its app is not running."""
        if not self._spec.web:
            return None
        if self._web_url is None:
            client, fid = self._hydrate()
            info = client.request("GET", f"/v1/functions/{quote(fid, safe='')}")
            url = info.get("web_url")
            self._web_url = str(url) if url else None
        return self._web_url

    get_web_url = _aio.aio_method(_get_web_url)

    @property
    def web_url(self) -> Optional[str]:
        """Modal's older spelling of ``get_web_url()``."""
        return self._get_web_url()

    def _refuse_web(self, call: str) -> None:
        """Web endpoints take HTTP requests, not inputs: say so before sending anything."""
        web = self._spec.web
        if not web:
            return
        where = f"at its URL, {self._web_url}" if self._web_url else (
            f"at its URL ({self._name}.get_web_url() while its app runs)")
        raise InvalidError(
            f"{self._name} is a web endpoint (@skiff.{_WEB_DECORATOR.get(web.get('kind'), 'web')}"
            f"): it can't be called with .{call}(); send it an HTTP request {where}, or "
            f"run it here with {self._name}.local(...)")

    # -- autoscaling -----------------------------------------------------------

    def _get_current_stats(self) -> FunctionStats:
        """The function's queue and containers now (``backlog``,
        ``num_total_runners`` and Skiff's extra fields; see FunctionStats)."""
        client, fid = self._hydrate()
        return FunctionStats(client.request("GET", f"/v1/functions/{quote(fid, safe='')}"))

    get_current_stats = _aio.aio_method(_get_current_stats)

    def _update_autoscaler(self, *, min_containers: Optional[int] = None,
                           max_containers: Optional[int] = None,
                           buffer_containers: Optional[int] = None,
                           scaledown_window: Optional[int] = None) -> None:
        """Changes the autoscaler's settings now, for this run of the app;
        the ones not given keep their values."""
        body = autoscaler_body(min_containers=min_containers, max_containers=max_containers,
                               buffer_containers=buffer_containers,
                               scaledown_window=scaledown_window)
        client, fid = self._hydrate()
        client.request("POST", f"/v1/functions/{quote(fid, safe='')}/autoscaler", body)

    update_autoscaler = _aio.aio_method(_update_autoscaler)

    # -- calls ---------------------------------------------------------------

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Runs the function here, in this process."""
        return self._raw_f(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._raw_f(*args, **kwargs)

    def _remote(self, *args: Any, **kwargs: Any) -> Any:
        path = self._remote_path
        if self._spec.web:
            self._refuse_web("remote")
        if path is None:
            self._hydrate()
            path = self._remote_path
            assert path is not None
        if self._spec.is_generator:
            raise InvalidError(
                f"{self._name} is a generator function: call it with "
                f"{self._name}.remote_gen(...), which yields its items")
        try:
            chunk = P._dumps([(args, kwargs)] if self._method is None else
                             [(self._method, args, kwargs)], protocol=P.PROTOCOL)
        except Exception:
            chunk = P.input_chunk(args, kwargs, self._where, self._param_names, self._method)
        resp = self._client.request_raw("POST", path, chunk, timeout=None)  # type: ignore[union-attr]
        status = resp.headers.get("skiff-status")
        if status == "0":
            return P.decode(0, resp.body)
        if status is None or not status.isdigit():
            raise ServerError(f"the server's answer to {self._name}.remote() has no Skiff-Status")
        raise P.output_exception(int(status), resp.body)

    remote = _aio.aio_method(_remote)

    def _spawn(self, *args: Any, **kwargs: Any) -> "FunctionCall":
        self._refuse_web("spawn")
        client, fid = self._hydrate()
        if self._spec.is_generator:
            raise InvalidError(f"{self._name} is a generator function; it can't be spawned "
                               f"(use {self._name}.remote_gen(...))")
        chunk = P.input_chunk(args, kwargs, self._where, self._param_names, self._method)
        resp = client.request_raw("POST", f"/v1/functions/{quote(fid, safe='')}/spawn", chunk)
        return FunctionCall(str(json.loads(resp.body)["function_call_id"]), client)

    spawn = _aio.aio_method(_spawn)

    def _map_inputs(self, iterables: tuple[Iterable[Any], ...], kwargs: dict[str, Any],
                    star: bool) -> tuple[Optional[tuple[tuple[Any, ...], dict[str, Any]]], Inputs]:
        """(first input or None, all inputs) -- the first checked for
        picklability here, so that the common mistake fails at once."""
        kwargs = _check_kwargs(kwargs)
        if star:
            (source,) = iterables
            it: Inputs = ((tuple(a), kwargs) for a in source)
        else:
            if not iterables:
                raise InvalidError(f"{self._name}.map() needs at least one iterable of inputs")
            if len(iterables) == 1 and not kwargs and self._method is None:
                # The common map: one argument per input.  The feeder sends the
                # values themselves (an args1 chunk), with no tuple per input.
                raw = iter(iterables[0])
                x0 = next(raw, _NOTHING)
                if x0 is _NOTHING:
                    return None, iter(())
                P.input_chunk((x0,), {}, f"{self._name}.map(): input 0", self._param_names)
                return ((x0,), {}), _Args1(itertools.chain((x0,), raw))
            it = ((a, kwargs) for a in zip(*iterables))
        first = next(it, None)
        if first is None:
            return None, iter(())
        P.input_chunk(first[0], first[1], f"{self._name}.map(): input 0", self._param_names)
        return first, itertools.chain((first,), it)

    def _start_map(self, iterables: tuple[Iterable[Any], ...], kwargs: dict[str, Any],
                   star: bool) -> Optional[MapCall]:
        self._refuse_web("map")
        client, fid = self._hydrate()
        if self._spec.is_generator:
            raise InvalidError(f"{self._name} is a generator function; map() does not take "
                               "generator functions")
        first, inputs = self._map_inputs(iterables, kwargs, star)
        if first is None:
            return None
        call = MapCall(client, fid, f"{self._name}.map()", self._param_names,
                       method=self._method)
        call.start_feeding(inputs)
        return call

    def _map_batches(self, iterables: tuple[Iterable[Any], ...], kwargs: dict[str, Any],
                     order_outputs: bool, return_exceptions: bool,
                     star: bool) -> Iterator[list[Any]]:
        call = self._start_map(iterables, kwargs, star)
        if call is None:
            return
        try:
            for batch, failed in call.outputs(order_outputs):
                if not failed:
                    yield batch
                    continue
                out = []
                for value in batch:
                    if type(value) is _Failed:
                        if not return_exceptions:
                            if out:
                                yield out
                            raise value.exc
                        value = value.exc
                    out.append(value)
                yield out
        finally:
            call.close()

    def _map(self, *input_iterators: Iterable[Any], kwargs: dict[str, Any] = {},  # noqa: B006
             order_outputs: bool = True, return_exceptions: bool = False,
             wrap_returned_exceptions: bool = True) -> Iterator[Any]:
        """Runs the function over the inputs in parallel, yielding results as
        they come (in input order unless ``order_outputs=False``).  With
        ``return_exceptions=True``, a failed input yields its exception instead
        of raising it.  Lazy: nothing is sent before the first ``next()``."""
        for batch in self._map_batches(input_iterators, kwargs, order_outputs,
                                       return_exceptions, star=False):
            yield from batch

    async def _map_aio(self, *input_iterators: Iterable[Any],
                       kwargs: dict[str, Any] = {},  # noqa: B006
                       order_outputs: bool = True, return_exceptions: bool = False,
                       wrap_returned_exceptions: bool = True) -> AsyncIterator[Any]:
        batches = self._map_batches(input_iterators, kwargs, order_outputs,
                                    return_exceptions, star=False)
        async for item in _aio.flatten_batches_in_thread(batches):
            yield item

    map = _aio.aio_method(_map, _map_aio)

    def _starmap(self, input_iterator: Iterable[Sequence[Any]], *,
                 kwargs: dict[str, Any] = {},  # noqa: B006
                 order_outputs: bool = True, return_exceptions: bool = False,
                 wrap_returned_exceptions: bool = True) -> Iterator[Any]:
        """Like ``map``, each input being a sequence of positional arguments."""
        for batch in self._map_batches((input_iterator,), kwargs, order_outputs,
                                       return_exceptions, star=True):
            yield from batch

    async def _starmap_aio(self, input_iterator: Iterable[Sequence[Any]], *,
                           kwargs: dict[str, Any] = {},  # noqa: B006
                           order_outputs: bool = True, return_exceptions: bool = False,
                           wrap_returned_exceptions: bool = True) -> AsyncIterator[Any]:
        batches = self._map_batches((input_iterator,), kwargs, order_outputs,
                                    return_exceptions, star=True)
        async for item in _aio.flatten_batches_in_thread(batches):
            yield item

    starmap = _aio.aio_method(_starmap, _starmap_aio)

    def _for_each(self, *input_iterators: Iterable[Any],
                  kwargs: dict[str, Any] = {},  # noqa: B006
                  ignore_exceptions: bool = False) -> None:
        """Runs the function over the inputs and waits, discarding the results."""
        for _ in self._map_batches(input_iterators, kwargs, False, ignore_exceptions,
                                   star=False):
            pass

    for_each = _aio.aio_method(_for_each)

    def _spawn_map(self, *input_iterators: Iterable[Any],
                   kwargs: dict[str, Any] = {}) -> None:  # noqa: B006
        """Sends every input and returns without waiting for results (their
        outputs are not collected)."""
        self._refuse_web("spawn_map")
        client, fid = self._hydrate()
        first, inputs = self._map_inputs(input_iterators, kwargs, star=False)
        if first is None:
            return None
        call = MapCall(client, fid, f"{self._name}.spawn_map()", self._param_names,
                       method=self._method)
        call.feed(inputs, bounded=False)
        return None

    spawn_map = _aio.aio_method(_spawn_map)

    def _gen_batches(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[list[Any]]:
        self._refuse_web("remote_gen")
        client, fid = self._hydrate()
        if not self._spec.is_generator:
            raise InvalidError(f"{self._name} is not a generator function: call it with "
                               f"{self._name}.remote(...)")
        chunk = P.input_chunk(args, kwargs, self._where, self._param_names, self._method)
        call = MapCall(client, fid, f"{self._name}.remote_gen()", self._param_names,
                       generator=True, method=self._method)
        try:
            client.request_raw("POST", f"/v1/calls/{quote(call.call_id, safe='')}/inputs?last=1",
                               P.frame(0, 1, chunk))
            yield from call.generator_items()
        finally:
            call.close()

    def _remote_gen(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Runs a generator function remotely, yielding its items as they are yielded."""
        for batch in self._gen_batches(args, kwargs):
            yield from batch

    async def _remote_gen_aio(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async for item in _aio.flatten_batches_in_thread(self._gen_batches(args, kwargs)):
            yield item

    remote_gen = _aio.aio_method(_remote_gen, _remote_gen_aio)


def _unavailable(*args: Any, **kwargs: Any) -> Any:
    raise ExecutionError("this Function was unpickled where its code is not importable; "
                         "it can only be called remotely (.remote, .map, .spawn)")


def _function_by_reference(module: Optional[str], qualname: str, name: str,
                           is_generator: bool) -> Function:
    """The Function a pickle refers to: the module's own where it imports, else
    a stand-in that finds the function by name when called in a container."""
    if module and module != "__main__":
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
            if isinstance(obj, Function):
                return obj
        except Exception:
            pass
    spec = FunctionSpec(is_generator=is_generator)
    return Function(None, _unavailable, name, spec)


class FunctionCall:
    """A call started with ``spawn``: its result can be fetched later, here or
    anywhere else (``FunctionCall.from_id``)."""

    def __init__(self, function_call_id: str, client: Optional[_client.Client] = None) -> None:
        self._id = function_call_id
        self._client = client

    @property
    def object_id(self) -> str:
        """The call's id (``fc-...``)."""
        return self._id

    def __repr__(self) -> str:
        return f"<FunctionCall {self._id}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FunctionCall, (self._id,))

    def _c(self) -> _client.Client:
        if self._client is None:
            self._client = _client.get_client()
        return self._client

    @classmethod
    def from_id(cls, function_call_id: str,
                client: Optional[_client.Client] = None) -> "FunctionCall":
        """The call with this id (as ``call.object_id`` gave it)."""
        if not isinstance(function_call_id, str) or not function_call_id:
            raise InvalidError(f"function_call_id must be a non-empty str, got {function_call_id!r}")
        return cls(function_call_id, client)

    def num_inputs(self) -> int:
        return 1

    def _get(self, timeout: Optional[float] = None) -> Any:
        """Waits for the result (at most ``timeout`` seconds; 0 just looks) and
        returns it, or raises the call's exception.  A call not finished in
        time raises ``skiff.exception.TimeoutError`` (a builtin TimeoutError)."""
        if timeout is not None and (isinstance(timeout, bool) or
                                    not isinstance(timeout, (int, float)) or timeout < 0):
            raise InvalidError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
        client = self._c()
        path = f"/v1/calls/{quote(self._id, safe='')}/result?timeout="
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            slice_s = _RESULT_SLICE if deadline is None else max(
                0.0, min(_RESULT_SLICE, deadline - time.monotonic()))
            resp = client.request_raw("GET", f"{path}{slice_s:g}", timeout=slice_s + 60)
            status = resp.headers.get("skiff-status", "")
            if resp.status == 200 and status.isdigit():
                return P.decode(int(status), resp.body)
            if resp.status != 202 and status != "pending":
                raise ServerError(f"unexpected answer {resp.status} to the result of {self._id}")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{self._id} did not finish within {timeout:g} s")

    get = _aio.aio_method(_get)

    def _cancel(self, terminate_containers: bool = False) -> None:
        """Cancels the call: its input is dropped or stopped; ``get()`` then
        raises InputCancellation."""
        self._c().request("POST", f"/v1/calls/{quote(self._id, safe='')}/cancel")

    cancel = _aio.aio_method(_cancel)

    @staticmethod
    def gather(*function_calls: "FunctionCall") -> list[Any]:
        """The results of several calls, in order; raises the first failure."""
        return [fc.get() for fc in function_calls]


async def _gather_aio(*function_calls: FunctionCall) -> list[Any]:
    import asyncio

    return list(await asyncio.gather(*(fc.get.aio() for fc in function_calls)))


FunctionCall.gather.aio = _gather_aio  # type: ignore[attr-defined]
