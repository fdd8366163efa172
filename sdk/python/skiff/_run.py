"""``skiff run FILE[::NAME] [ARGS...]``: run an app's entrypoint with an
ephemeral app (``python3 -m skiff._run ...``; the C ``skiff run`` execs this).

1. ``import modal`` is made to give Skiff (``skiff._modal_alias``).
2. FILE is imported as a module named after the file (``demo.py`` -> ``demo``,
   its directory first on sys.path), as the containers will import it.
3. The app is the module's only ``skiff.App`` (or the one NAME names:
   ``FILE::app.main``); the target is NAME -- a local entrypoint or a
   function -- or else the app's only local entrypoint, or its only function.
4. The app runs (``app.run()``) while the target does: a local entrypoint is
   called here with ARGS parsed into its parameters (``--n 10``); a function
   is called with ``.remote(...)`` and its result printed.  The URLs of the
   app's web endpoints are printed once it is up; an app whose only
   functions are web endpoints has nothing to run here (``skiff serve``).

Exit status: 0; 1 when the target raised (its traceback, with the remote
one, is printed); 2 for a bad command line; 130 after Ctrl-C (the app is
stopped first either way, unless --detach).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import signal
import sys
import traceback
from types import ModuleType, TracebackType
from typing import Any, Optional, Sequence, Union

USAGE = """\
Usage: skiff run [OPTIONS] FILE[::NAME] [ARGS]...

Runs an app's local entrypoint (or one of its functions) in an ephemeral app
that stops when the command ends.  NAME picks the entrypoint or function
(FILE::main, FILE::square, FILE::app.main); without it, the app's only local
entrypoint runs.  ARGS are the entrypoint's parameters as options: --n 10.

Options:
  -d, --detach   keep the app running after the command ends
  -q, --quiet    print no status lines
      --json     print web endpoints' URLs as JSON objects on stdout
  -h, --help     show this help
"""

_SKIFF_DIR = os.path.dirname(os.path.abspath(__file__))


class UsageError(Exception):
    """A bad command line."""


def _say(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(f"skiff: {msg}", file=sys.stderr, flush=True)


def split_argv(argv: Sequence[str]) -> tuple[dict[str, bool], str, list[str]]:
    """(run options, FILE[::NAME], the target's args)."""
    opts = {"detach": False, "quiet": False, "help": False, "json": False}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        a = argv[i]
        if a in ("-d", "--detach"):
            opts["detach"] = True
        elif a in ("-q", "--quiet"):
            opts["quiet"] = True
        elif a == "--json":
            opts["json"] = True
        elif a in ("-h", "--help"):
            opts["help"] = True
            return opts, "", []
        else:
            raise UsageError(f"unknown option {a!r} (options of the entrypoint go after FILE)")
        i += 1
    if i >= len(argv):
        raise UsageError("which file? Give FILE[::NAME]")
    return opts, argv[i], list(argv[i + 1:])


def load_file(path: str) -> ModuleType:
    """Imports FILE as a module named after it, its directory on sys.path."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file")
    name = os.path.splitext(os.path.basename(path))[0]
    existing = sys.modules.get(name)
    if existing is not None and os.path.abspath(getattr(existing, "__file__", "") or "") != path:
        raise UsageError(f"{os.path.basename(path)} has the name of the module {name!r} that "
                         "is already imported; rename the file")
    sys.path.insert(0, os.path.dirname(path))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path}: not a Python file")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


def _serve_hint(mod: ModuleType) -> str:
    path = os.path.abspath(getattr(mod, "__file__", "") or "FILE")
    rel = os.path.relpath(path)
    return f"`skiff serve {path if rel.startswith('..') else rel}`"


def _not_runnable_web(target: Any, mod: ModuleType) -> UsageError:
    return UsageError(f"{target.__name__} is a web endpoint: it answers HTTP requests, so "
                      f"`skiff run` can't call it; serve it with {_serve_hint(mod)}")


def find_target(mod: ModuleType, name: str) -> tuple[Any, Any]:
    """(App, LocalEntrypoint or Function) that NAME names in the module.
    A web endpoint is never a target: it is served (``skiff serve``)."""
    from .functions import Function

    app, target = _find_target(mod, name)
    if isinstance(target, Function) and target.is_web_endpoint:
        raise _not_runnable_web(target, mod)
    return app, target


def _find_target(mod: ModuleType, name: str) -> tuple[Any, Any]:
    from .app import App, LocalEntrypoint
    from .functions import Function

    apps: dict[str, App] = {}
    for var, value in vars(mod).items():
        if isinstance(value, App) and all(value is not a for a in apps.values()):
            apps[var] = value
    fname = name
    if "." in name:
        var, _, fname = name.partition(".")
        if var not in apps:
            raise UsageError(f"{mod.__name__} has no App called {var!r}")
        candidates = [apps[var]]
    elif name in apps:
        candidates, fname = [apps[name]], ""
    else:
        candidates = list(apps.values())
    if not candidates:
        raise UsageError(f"{mod.__file__} defines no skiff.App (app = skiff.App(...))")

    if fname:
        for app in candidates:
            target: Union[LocalEntrypoint, Function, None] = (
                app.registered_entrypoints.get(fname) or app.registered_functions.get(fname))
            if target is not None:
                return app, target
        obj = getattr(mod, fname, None)
        if isinstance(obj, (LocalEntrypoint, Function)):
            return obj.app, obj
        names = sorted({n for a in candidates for n in
                        list(a.registered_entrypoints) + list(a.registered_functions)})
        raise UsageError(f"no local entrypoint or function {fname!r} in {mod.__name__} "
                         f"(it has: {', '.join(names) or 'none'})")
    if len(candidates) > 1:
        raise UsageError(f"{mod.__name__} defines several apps ({', '.join(apps)}): "
                         "say which with FILE::APP or FILE::APP.NAME")
    app = candidates[0]
    eps = app.registered_entrypoints
    if len(eps) == 1:
        return app, next(iter(eps.values()))
    if eps:
        raise UsageError(f"{mod.__name__} has several local entrypoints "
                         f"({', '.join(sorted(eps))}): say which with FILE::NAME")
    fns = app.registered_functions
    web = sorted(n for n, f in fns.items() if f.is_web_endpoint)
    plain = [f for f in fns.values() if not f.is_web_endpoint]
    if web and len(plain) != 1:
        raise UsageError(f"{mod.__name__} has web endpoints ({', '.join(web)}) but no local "
                         "entrypoint, which `skiff run` needs (add @app.local_entrypoint()); "
                         f"serve the endpoints with {_serve_hint(mod)}")
    if len(plain) == 1:
        return app, plain[0]
    raise UsageError(f"{mod.__name__} has no local entrypoint and "
                     f"{'several functions' if fns else 'no function'}: "
                     "add @app.local_entrypoint() or say which function with FILE::NAME")


def _user_tb(tb: Optional[TracebackType]) -> Optional[TracebackType]:
    """The traceback without the frames of skiff itself at its top."""
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_SKIFF_DIR):
        tb = tb.tb_next
    return tb


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def run_target(app: Any, target: Any, args: list[str], kwargs: dict[str, Any],
               detach: bool, quiet: bool, label: str, json_output: bool = False) -> None:
    from ._app_run import default_output
    from .functions import Function

    output = "json" if json_output else default_output(not quiet)
    with app.run(detach=detach, _output=output):
        _say(f"running {label} in app {app.name or ''} ({app.app_id})", quiet)
        if isinstance(target, Function):
            if target.is_generator:
                for item in target.remote_gen(*args, **kwargs):
                    print(item, flush=True)
            else:
                result = target.remote(*args, **kwargs)
                if result is not None:
                    print(result, flush=True)
        else:
            result = target.get_raw_f()(*args, **kwargs)
            if inspect.iscoroutine(result):
                import asyncio  # only for async entrypoints (skiff deploy loads this module)
                asyncio.run(result)
        if detach:
            _say(f"the app {app.app_id} keeps running (--detach); stop it with "
                 f"`skiff app stop {app.app_id}`", quiet)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from . import _cliargs, _modal_alias

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts, ref, rest = split_argv(argv)
    except UsageError as e:
        print(f"skiff run: {e}\n\n{USAGE}", file=sys.stderr, end="")
        return 2
    if opts["help"]:
        print(USAGE, end="")
        return 0
    path, _, name = ref.partition("::")
    _modal_alias.install()
    if threading_is_main():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        mod = load_file(path)
        app, target = find_target(mod, name)
        sig = _cliargs.Signature(target.get_raw_f(), f"skiff run {ref}")
        if "--detach" in rest and not any(o.flag == "--detach" for o in sig.options):
            rest.remove("--detach")
            opts["detach"] = True
        args, kwargs = sig.parse(rest)
    except _cliargs.HelpRequested as e:
        print(str(e), end="")
        return 0
    except (UsageError, _cliargs.UsageError) as e:
        print(f"skiff run: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except BaseException as e:  # the user's module failed to import
        traceback.print_exception(type(e), e, _user_tb(e.__traceback__))
        return 1
    try:
        run_target(app, target, args, kwargs, opts["detach"], opts["quiet"],
                   f"{os.path.basename(path)}::{getattr(target, 'name', None) or target.__name__}",
                   opts["json"])
    except KeyboardInterrupt:
        _say("interrupted; the app was stopped" if not opts["detach"] else "interrupted")
        return 130
    except SystemExit as e:
        code = e.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException as e:
        sys.stdout.flush()
        traceback.print_exception(type(e), e, _user_tb(e.__traceback__))
        return 1
    return 0


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
