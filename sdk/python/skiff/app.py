"""Apps: the named group that functions, sandboxes and schedules belong to.

    app = skiff.App("demo", image=skiff.Image.debian_slim())

    @app.function(cpu=1, memory=512, timeout=60, retries=2)
    def square(x): return x * x

    @app.local_entrypoint()
    def main(n: int = 10):
        print(sum(square.map(range(n))))

``skiff run demo.py --n 100`` runs ``main`` with an ephemeral app; a plain
script does the same with ``with app.run(): ...``.  ``App.lookup`` finds (or
creates) a persistent app, for sandboxes.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import warnings
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Union

from . import _client
from . import partial_function as pf
from ._options import MODAL_FUNCTION_PARAMS, apply_partial, check_unsupported, function_spec
from ._register import check_global
from .cls import Cls
from .exception import InvalidError
from .functions import Function
from .image import Image
from .retries import Retries
from .secret import Secret

MODAL_APP_PARAMS = frozenset({"tags", "volumes", "include_source", "mounts"})
# App attributes of Modal that Skiff does not have yet.
MODAL_APP_ATTRS = frozenset({
    "include", "serve", "interactive_shell", "set_description",
    "set_tags", "get_tags",
})


class LocalEntrypoint:
    """A function marked ``@app.local_entrypoint()``: ``skiff run`` calls it
    here, in the local process, with the app running."""

    def __init__(self, raw_f: Callable[..., Any], app: "App", name: str) -> None:
        self._raw_f = raw_f
        self._app = app
        self._name = name
        self.__doc__ = raw_f.__doc__
        self.__wrapped__ = raw_f

    @property
    def app(self) -> "App":
        return self._app

    @property
    def name(self) -> str:
        return self._name

    def get_raw_f(self) -> Callable[..., Any]:
        return self._raw_f

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._raw_f(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<LocalEntrypoint {self._name}>"


class App:
    """A Skiff app.  ``app_id`` is set once the app exists on the server
    (``App.lookup``, or a running app)."""

    def __init__(self, name: Optional[str] = None, *, image: Optional[Image] = None,
                 secrets: Iterable[Secret] = (), **kwargs: Any) -> None:
        if name is not None and not isinstance(name, str):
            raise InvalidError(f"App name must be a str, got {type(name).__name__}")
        if image is not None and not isinstance(image, Image):
            raise InvalidError(f"image must be a skiff.Image, got {type(image).__name__}")
        check_unsupported("App()", MODAL_APP_PARAMS, kwargs)
        secrets = list(secrets)
        for s in secrets:
            if not isinstance(s, Secret):
                raise InvalidError(f"secrets must be skiff.Secret objects, got {type(s).__name__}")
        self._name = name
        self._image = image
        self._secrets = secrets
        self._app_id: Optional[str] = None
        self._client: Optional[_client.Client] = None
        self._functions: dict[str, Function] = {}
        self._classes: dict[str, Cls] = {}
        self._entrypoints: dict[str, LocalEntrypoint] = {}
        self._running: Any = None

    def __getattr__(self, name: str) -> Any:
        if name in MODAL_APP_ATTRS:
            raise InvalidError(f"modal.App.{name} is not available in Skiff yet")
        raise AttributeError(f"'App' object has no attribute {name!r}")

    @property
    def name(self) -> Optional[str]:
        return self._name

    @property
    def image(self) -> Optional[Image]:
        """The default image of the app's functions."""
        return self._image

    @property
    def app_id(self) -> Optional[str]:
        """The server's id (``ap-...``), or None while the app is not on a server."""
        return self._app_id

    @property
    def object_id(self) -> Optional[str]:
        return self._app_id

    @property
    def registered_functions(self) -> dict[str, Function]:
        """The app's functions by name."""
        return dict(self._functions)

    @property
    def registered_classes(self) -> dict[str, Cls]:
        """The app's classes (``@app.cls``) by name."""
        return dict(self._classes)

    @property
    def registered_entrypoints(self) -> dict[str, LocalEntrypoint]:
        """The app's local entrypoints by name."""
        return dict(self._entrypoints)

    def __repr__(self) -> str:
        return f"<App {self._name!r}{' ' + self._app_id if self._app_id else ''}>"

    @classmethod
    def lookup(cls, name: str, create_if_missing: bool = False, *,
               client: Optional[_client.Client] = None) -> "App":
        """The persistent app called ``name``; with ``create_if_missing`` it is
        created when missing, otherwise a missing app raises NotFoundError."""
        if not isinstance(name, str) or not name:
            raise InvalidError(f"App.lookup needs a non-empty app name, got {name!r}")
        client = client or _client.get_client()
        resp: dict[str, Any] = client.request(
            "POST", "/v1/apps/lookup", {"name": name, "create_if_missing": bool(create_if_missing)})
        app = cls(name)
        app._app_id = str(resp["app_id"])
        app._client = client
        return app

    # -- declaring -----------------------------------------------------------

    def function(
        self,
        _warn_parentheses_missing: Any = None,
        *,
        image: Optional[Image] = None,
        secrets: Iterable[Secret] = (),
        env: Optional[Mapping[str, Optional[str]]] = None,
        cpu: Optional[float] = None,
        memory: Optional[int] = None,
        gpu: Optional[str] = None,
        timeout: int = 300,
        startup_timeout: Optional[int] = None,
        retries: Union[None, int, Retries] = None,
        block_network: bool = False,
        name: Optional[str] = None,
        serialized: bool = False,
        min_containers: Optional[int] = None,
        max_containers: Optional[int] = None,
        buffer_containers: Optional[int] = None,
        scaledown_window: Optional[int] = None,
        enable_memory_snapshot: bool = False,
        is_generator: Optional[bool] = None,
        schedule: Any = None,
        **kwargs: Any,
    ) -> Callable[[Callable[..., Any]], Function]:
        """Decorator: makes a Function of the app (see skiff.functions).

        ``cpu`` cores, ``memory`` MiB, ``gpu`` (Modal's strings: "H100",
        "A100-80GB:2", "any"), ``timeout`` seconds per attempt, ``retries``
        (an int or a skiff.Retries), ``env`` and ``secrets`` for its
        containers, ``block_network`` to give them no network,
        ``serialized=True`` to send the function pickled instead of importing
        it by name.  The autoscaler: ``min_containers`` kept up even when
        idle, ``max_containers`` at most, ``buffer_containers`` idle ones
        kept ready while it is busy, ``scaledown_window`` seconds an idle
        container lives.  ``enable_memory_snapshot=True`` imports the
        module once, in a template process, and starts each new container
        as a fork of it (docs/api.md, "Memory snapshots").  Stack
        ``@skiff.concurrent`` or ``@skiff.batched`` under it for several
        inputs per container.
        """
        if _warn_parentheses_missing is not None:
            raise InvalidError("use @app.function() with parentheses")
        check_unsupported("@app.function()", MODAL_FUNCTION_PARAMS, kwargs)
        spec = function_spec(
            image=image, secrets=secrets, env=env, cpu=cpu, memory=memory, gpu=gpu,
            timeout=timeout, startup_timeout=startup_timeout, retries=retries,
            block_network=block_network, serialized=serialized, min_containers=min_containers,
            max_containers=max_containers, buffer_containers=buffer_containers,
            scaledown_window=scaledown_window, enable_memory_snapshot=enable_memory_snapshot)
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidError(f"name must be a non-empty str, got {name!r}")

        def decorate(f: Callable[..., Any]) -> Function:
            if isinstance(f, (Function, LocalEntrypoint, Cls)):
                raise InvalidError(f"{f!r} is decorated twice")
            if inspect.isclass(f):
                raise InvalidError(f"@app.function() decorates functions; decorate the class "
                                   f"{f.__name__} with @app.cls()")
            if not callable(f):
                raise InvalidError(f"@app.function() decorates functions, got {f!r}")
            check_global(f, serialized)
            marks = pf.marks(f)
            for kind in ("method", "enter", "exit"):
                if kind in marks:
                    raise InvalidError(f"@skiff.{kind}() marks methods of an @app.cls class, "
                                       f"not functions ({f.__qualname__})")
            gen = is_generator
            if gen is None:
                gen = inspect.isgeneratorfunction(f) or inspect.isasyncgenfunction(f)
            fname = name or f.__name__
            fspec = apply_partial(spec.replace(is_generator=bool(gen)), marks, fname)
            if "web" in marks:
                if "batched" in marks:
                    raise InvalidError(f"{f.__qualname__}: a web endpoint can't be "
                                       "@skiff.batched")
                fspec = fspec.replace(web=pf.web_config(marks))
            if fname in self._functions or fname in self._classes:
                warnings.warn(f"the app already has a function {fname!r}; the new one replaces it",
                              stacklevel=2)
            if schedule is not None:
                from .schedule import Schedule
                if not isinstance(schedule, Schedule):
                    raise InvalidError(f"schedule must be a skiff.Period or skiff.Cron, got "
                                       f"{schedule!r}")
                fspec = fspec.replace(schedule=schedule)
            fn = Function(self, f, fname, fspec)
            self._functions[fname] = fn
            return fn

        return decorate

    def cls(
        self,
        _warn_parentheses_missing: Any = None,
        *,
        image: Optional[Image] = None,
        secrets: Iterable[Secret] = (),
        env: Optional[Mapping[str, Optional[str]]] = None,
        cpu: Optional[float] = None,
        memory: Optional[int] = None,
        gpu: Optional[str] = None,
        timeout: int = 300,
        startup_timeout: Optional[int] = None,
        retries: Union[None, int, Retries] = None,
        block_network: bool = False,
        serialized: bool = False,
        min_containers: Optional[int] = None,
        max_containers: Optional[int] = None,
        buffer_containers: Optional[int] = None,
        scaledown_window: Optional[int] = None,
        enable_memory_snapshot: bool = False,
        **kwargs: Any,
    ) -> Callable[[type], Cls]:
        """Decorator: makes a class of the app (see skiff.cls), with the
        options of ``@app.function()``.  ``startup_timeout`` bounds its
        ``@skiff.enter`` hooks (default: ``timeout``).  With
        ``enable_memory_snapshot=True`` the ``@skiff.enter(snap=True)`` hooks
        run once, in the template, and the others in each container."""
        if _warn_parentheses_missing is not None:
            raise InvalidError("use @app.cls() with parentheses")
        check_unsupported("@app.cls()", MODAL_FUNCTION_PARAMS, kwargs)
        spec = function_spec(
            image=image, secrets=secrets, env=env, cpu=cpu, memory=memory, gpu=gpu,
            timeout=timeout, startup_timeout=startup_timeout, retries=retries,
            block_network=block_network, serialized=serialized, min_containers=min_containers,
            max_containers=max_containers, buffer_containers=buffer_containers,
            scaledown_window=scaledown_window, enable_memory_snapshot=enable_memory_snapshot)

        def decorate(user_cls: type) -> Cls:
            if isinstance(user_cls, (Function, LocalEntrypoint, Cls)):
                raise InvalidError(f"{user_cls!r} is decorated twice")
            if not inspect.isclass(user_cls):
                raise InvalidError(f"@app.cls() decorates classes, got {user_cls!r}")
            c = Cls.from_user_class(self, user_cls, spec)
            check_global(user_cls, serialized)  # type: ignore[arg-type]
            if c.name in self._classes or c.name in self._functions:
                warnings.warn(f"the app already has a class or function {c.name!r}; the new "
                              "one replaces it", stacklevel=2)
            self._classes[c.name] = c
            return c

        return decorate

    def local_entrypoint(self, _warn_parentheses_missing: Any = None, *,
                         name: Optional[str] = None) -> Callable[[Callable[..., Any]],
                                                                 LocalEntrypoint]:
        """Decorator: a function ``skiff run`` calls locally while the app
        runs; its parameters become command-line options (``--n 10``)."""
        if _warn_parentheses_missing is not None:
            raise InvalidError("use @app.local_entrypoint() with parentheses")

        def decorate(f: Callable[..., Any]) -> LocalEntrypoint:
            if not callable(f) or isinstance(f, (Function, LocalEntrypoint)):
                raise InvalidError(f"@app.local_entrypoint() decorates functions, got {f!r}")
            ep = LocalEntrypoint(f, self, name or f.__name__)
            self._entrypoints[ep.name] = ep
            return ep

        return decorate

    # -- running -------------------------------------------------------------

    @contextlib.contextmanager
    def run(self, *, client: Optional[_client.Client] = None, detach: bool = False,
            interactive: bool = False, show_logs: bool = True,
            name: Optional[str] = None, _output: Optional[str] = None) -> Iterator["App"]:
        """Runs the app (ephemeral) for the ``with`` block: its functions can be
        called, their containers' output shows here, and the URLs of its web
        endpoints are printed once it is up.  On leaving the block -- also by
        an exception or Ctrl-C -- the app stops, unless ``detach``.
        (``_output``: how ``skiff run``/``skiff serve`` want the URLs shown,
        one of skiff._app_run.OUTPUTS.)"""
        from ._app_run import RunningApp

        if self._running is not None:
            raise InvalidError(f"{self!r} is already running")
        client = client or _client.get_client()
        run_name = name or self._name or _default_name()
        self._running = RunningApp.start(self, client, run_name, detach, show_logs, _output)
        self._app_id = self._running.app_id
        self._client = client
        try:
            yield self
        finally:
            running, self._running = self._running, None
            try:
                running.stop()
            finally:
                if not detach:
                    self._app_id = None


    def deploy(self, *, name: Optional[str] = None, tag: Optional[str] = None,
               strategy: str = "rolling", client: Optional[_client.Client] = None) -> "App":
        """Deploys the app (as ``skiff deploy`` does): its functions, classes,
        endpoints and schedules stay up after this process ends.  Its
        functions are hydrated, so they can be called at once.  Deploying an
        unchanged app changes nothing."""
        from ._deploy import deploy_app
        resp = deploy_app(self, name, tag, strategy, client)
        self._deployed = resp
        return self


def _default_name() -> str:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path:
        return os.path.splitext(os.path.basename(path))[0][:64] or "app"
    return "app"
