"""``skiff serve FILE[::APP]``: serve an app's web endpoints while the
command runs, reloading when its code changes (``python3 -m skiff._serve``;
the C ``skiff serve`` execs this).

Two processes.  The parent watches the code: every 0.5 s it compares the
modification times and sizes of FILE and of every ``.py`` file in FILE's
directory tree (hidden directories and files, ``__pycache__`` and installed
packages excluded) with what it saw before; plain polling, so no inotify
dependency, and a few thousand files cost well under a millisecond each poll.
The child (``--child``) imports FILE, runs its app as an ephemeral app
(``app.run()``: each web endpoint's URL is printed once it is up) and waits.

On a change the parent prints ``Reloading: <file> changed``, stops the child
-- SIGTERM, upon which it stops its app -- and, once it is gone, starts a new
one; the old app is stopped before the new one registers, so the endpoints
keep their URLs.  A child that fails (the file does not import, the app does
not start) leaves the parent waiting for the next change.  Ctrl-C or SIGTERM
stops the child, and so the app, and exits 0.

The child runs in its own session, so that a Ctrl-C at the terminal reaches
only the parent, which stops the child exactly once; the child also stops
when the parent disappears (killed with SIGKILL), rather than keeping its
app alive with heartbeats.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from types import ModuleType
from typing import Any, Optional, Sequence

USAGE = """\
Usage: skiff serve [OPTIONS] FILE[::APP]

Serves the web endpoints of the app in FILE (an ephemeral app) until Ctrl-C,
and reloads it whenever FILE or a .py file in its directory tree changes.
APP names the app's variable when FILE defines several.

Options:
      --timeout S   stop after S seconds (default: run until Ctrl-C)
      --json        print events (endpoint URLs, reloads) as JSON objects on stdout
  -q, --quiet       print no status lines
  -h, --help        show this help
"""

POLL_S = 0.5
# Seconds a child gets to stop its app after SIGTERM before it is killed.
STOP_GRACE_S = 30.0
# Seconds between the child's checks that its parent is still there.
PARENT_CHECK_S = 1.0
# Directories never watched (besides hidden ones).
SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "dist-packages"})
# The most files one poll looks at, so that serving a file in $HOME stays cheap.
MAX_FILES = 20000

Snapshot = dict[str, tuple[int, int]]


class UsageError(Exception):
    """A bad command line."""


class _Stop(Exception):
    """SIGTERM in the parent: stop as after Ctrl-C."""


# -- watching ----------------------------------------------------------------------


def snapshot(root: str, extra: Sequence[str] = ()) -> Snapshot:
    """path -> (mtime_ns, size) of the ``.py`` files under ``root`` (hidden
    ones, ``__pycache__`` and package directories left out) and of ``extra``."""
    out: Snapshot = {}
    for path in extra:
        _stat_into(out, path)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith(".py") and not name.startswith("."):
                _stat_into(out, os.path.join(dirpath, name))
        if len(out) >= MAX_FILES:
            break
    return out


def _stat_into(out: Snapshot, path: str) -> None:
    try:
        st = os.stat(path)
    except OSError:
        return
    out[path] = (st.st_mtime_ns, st.st_size)


def first_change(old: Snapshot, new: Snapshot) -> Optional[str]:
    """A path that was changed, added or removed between two snapshots
    (the first in sorted order), or None."""
    for path in sorted(old.keys() | new.keys()):
        if old.get(path) != new.get(path):
            return path
    return None


class Watcher:
    """Notices changes to FILE and the ``.py`` files of its directory tree."""

    def __init__(self, path: str) -> None:
        self.file = os.path.abspath(path)
        self.root = os.path.dirname(self.file)
        self.last = self._snap()

    def _snap(self) -> Snapshot:
        return snapshot(self.root, (self.file,))

    def poll(self) -> Optional[str]:
        """A path changed since the last poll, or None."""
        new = self._snap()
        changed = first_change(self.last, new)
        self.last = new
        return changed

    def settle(self, quiet_s: float = 0.2, max_s: float = 2.0) -> None:
        """Waits until the files stop changing (an editor saving in several
        writes), so that one save is one reload."""
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            time.sleep(quiet_s)
            if self.poll() is None:
                return


def display_path(path: str) -> str:
    """``path`` relative to the current directory when under it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


# -- command line ------------------------------------------------------------------


def split_argv(argv: Sequence[str]) -> tuple[dict[str, Any], str]:
    """(options, FILE[::APP])."""
    opts: dict[str, Any] = {"json": False, "quiet": False, "help": False, "timeout": None,
                            "child": False, "output": None}
    ref = None
    i = 0
    while i < len(argv):
        a = argv[i]
        value: Optional[str] = None
        if a.startswith("--") and "=" in a:
            a, _, value = a.partition("=")
        if a in ("--timeout", "--output"):
            if value is None:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"{a} needs a value")
                value = argv[i]
            if a == "--timeout":
                try:
                    opts["timeout"] = float(value)
                except ValueError:
                    raise UsageError(f"--timeout takes seconds, got {value!r}") from None
                if not opts["timeout"] > 0:
                    raise UsageError(f"--timeout must be > 0, got {value}")
            else:
                opts["output"] = value
        elif value is not None:
            raise UsageError(f"{a} takes no value")
        elif a == "--json":
            opts["json"] = True
        elif a in ("-q", "--quiet"):
            opts["quiet"] = True
        elif a in ("-h", "--help"):
            opts["help"] = True
            return opts, ""
        elif a == "--child":
            opts["child"] = True
        elif a.startswith("-") and a != "-":
            raise UsageError(f"unknown option {a!r}")
        elif ref is None:
            ref = a
        else:
            raise UsageError(f"unexpected argument {a!r} (skiff serve takes one FILE)")
        i += 1
    if ref is None:
        raise UsageError("which file? Give FILE[::APP]")
    return opts, ref


class _Out:
    """The parent's status lines: ``skiff: ...`` on stderr, or JSON on stdout."""

    def __init__(self, json_output: bool, quiet: bool) -> None:
        self.json = json_output
        self.quiet = quiet

    def event(self, event: str, text: str, **fields: Any) -> None:
        try:
            if self.json:
                print(json.dumps({"event": event, **fields}), flush=True)
            elif not self.quiet:
                print(f"skiff: {text}", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass


# -- the child: one run of the app -------------------------------------------------


def find_app(mod: ModuleType, name: str) -> Any:
    """The module's App that APP names (its variable), or its only one."""
    from .app import App

    apps: dict[str, App] = {}
    for var, value in vars(mod).items():
        if isinstance(value, App) and all(value is not a for a in apps.values()):
            apps[var] = value
    if name:
        if name not in apps:
            raise UsageError(f"{mod.__name__} has no App called {name!r} "
                             f"(it has: {', '.join(apps) or 'none'})")
        return apps[name]
    if not apps:
        raise UsageError(f"{mod.__file__} defines no skiff.App (app = skiff.App(...))")
    if len(apps) > 1:
        raise UsageError(f"{mod.__name__} defines several apps ({', '.join(apps)}): "
                         "say which with FILE::APP")
    return next(iter(apps.values()))


def _watch_parent(parent: int) -> None:
    """Stops this child (as SIGTERM does) once its parent is gone."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os.kill(os.getpid(), signal.SIGTERM)


def child_main(ref: str, output: str) -> int:
    from . import _modal_alias
    from ._app_run import web_endpoints
    from ._run import UsageError as RunUsageError
    from ._run import _user_tb, load_file

    stopping = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stopping
        if not stopping:  # once: a second one must not cut the app's stop short
            stopping = True
            raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), name="skiff-serve-parent",
                     daemon=True).start()
    path, _, name = ref.partition("::")
    _modal_alias.install()
    try:
        mod = load_file(path)
        app = find_app(mod, name)
    except (UsageError, RunUsageError) as e:
        print(f"skiff serve: {e}", file=sys.stderr, flush=True)
        return 2
    except SystemExit:
        raise
    except BaseException as e:  # the user's module failed to import
        traceback.print_exception(type(e), e, _user_tb(e.__traceback__))
        return 1
    try:
        with app.run(_output=output):
            if not web_endpoints(app) and output != "none":
                msg = (f"the app {app.name or ''} has no web endpoints (@skiff.fastapi_endpoint, "
                       "@skiff.asgi_app, ...); serving its functions anyway")
                if output == "json":
                    print(json.dumps({"event": "no_web_functions", "app_id": app.app_id}),
                          flush=True)
                else:
                    print(f"skiff: {msg}", file=sys.stderr, flush=True)
            while True:
                time.sleep(3600)
    except SystemExit:
        return 0
    except BaseException as e:
        sys.stdout.flush()
        traceback.print_exception(type(e), e, _user_tb(e.__traceback__))
        return 1
    return 0


# -- the parent: watch and restart -------------------------------------------------


def _child_env() -> dict[str, str]:
    """This environment, with the SDK that runs here first on PYTHONPATH."""
    env = dict(os.environ)
    sdk = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = sdk + (os.pathsep + old if old else "")
    return env


def start_child(ref: str, output: str) -> subprocess.Popen:
    # Output goes straight to this process's stdout and stderr.
    return subprocess.Popen(
        [sys.executable, "-m", "skiff._serve", "--child", "--output", output, ref],
        env=_child_env(), stdin=subprocess.DEVNULL, start_new_session=True)


def stop_child(child: subprocess.Popen, grace_s: float = STOP_GRACE_S,
               reraise: bool = True) -> Optional[int]:
    """SIGTERM, then SIGKILL after ``grace_s``, or at once on Ctrl-C (which
    is raised again afterwards when ``reraise``)."""
    if child.poll() is not None:
        return child.returncode
    try:
        child.send_signal(signal.SIGTERM)
        return child.wait(grace_s)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()
    except (KeyboardInterrupt, _Stop):
        child.kill()
        child.wait()
        if reraise:
            raise
        return None


def serve(ref: str, output: str, out: _Out, timeout: Optional[float] = None,
          poll_s: float = POLL_S) -> int:
    """Runs children until Ctrl-C, SIGTERM or ``timeout``; returns 0."""
    path = ref.partition("::")[0]
    watcher = Watcher(path)
    deadline = None if timeout is None else time.monotonic() + timeout
    out.event("serving", f"serving {display_path(watcher.file)}; watching "
              f"{display_path(watcher.root) or '.'} for changes (Ctrl-C stops)",
              file=watcher.file, root=watcher.root)
    child: Optional[subprocess.Popen] = None
    try:
        while True:
            child = start_child(ref, output)
            reported = False
            while True:
                time.sleep(poll_s)
                if deadline is not None and time.monotonic() >= deadline:
                    out.event("stopping", f"--timeout {timeout:g} s reached; stopping")
                    return 0
                changed = watcher.poll()
                if changed is not None:
                    watcher.settle()
                    out.event("reloading", f"Reloading: {display_path(changed)} changed",
                              file=changed)
                    stop_child(child)
                    break
                code = child.poll()
                if code is not None and not reported:
                    reported = True
                    out.event("exited", f"the app exited (status {code}); waiting for a "
                              "change to reload it", status=code)
    except (KeyboardInterrupt, _Stop):
        out.event("stopping", "stopping the app")
        return 0
    finally:
        if child is not None:
            stop_child(child, reraise=False)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Stop()


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ._app_run import OUTPUTS, default_output

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts, ref = split_argv(argv)
        if opts["output"] is not None and opts["output"] not in OUTPUTS:
            raise UsageError(f"--output is one of {', '.join(OUTPUTS)}")
    except UsageError as e:
        print(f"skiff serve: {e}\n\n{USAGE}", file=sys.stderr, end="")
        return 2
    if opts["help"]:
        print(USAGE, end="")
        return 0
    output = opts["output"] or ("json" if opts["json"] else default_output(not opts["quiet"]))
    if opts["child"]:
        return child_main(ref, output)
    path = ref.partition("::")[0]
    if not os.path.isfile(path):
        print(f"skiff serve: {os.path.abspath(path)}: no such file", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    return serve(ref, output, _Out(opts["json"], opts["quiet"]), opts["timeout"])


if __name__ == "__main__":
    sys.exit(main())
