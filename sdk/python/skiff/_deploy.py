"""``skiff deploy FILE[::APP] [--name N] [--tag T] [--strategy rolling|recreate]``
and ``App.deploy()``: a persistent app (docs/api.md, "Deployed apps").

The functions' registrations (as ``skiff run`` would send them, images
built first), the classes' templates and a snapshot of the app's code go to
``POST /v1/deployments`` in one request; the server makes a new version of
the app from them -- or answers that nothing changed.  The code snapshot is
every module the app's file imported from its own directory tree (the file
itself, its packages, the sibling modules it imports), so that the deployed
version keeps running the code it was deployed with; data files belong in
the image (``Image.add_local_dir``).

Exit status: 0 deployed (or unchanged); 1 the deploy failed (the server's
error, or the app's module raised); 2 a bad command line.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import traceback
from typing import Any, Optional, Sequence

from . import _client, _register
from . import _payload as P

USAGE = """\
Usage: skiff deploy [OPTIONS] FILE[::APP]

Deploys the app defined in FILE: its functions, classes, web endpoints and
schedules stay up after this command ends, and through server restarts,
until `skiff app stop`.  Deploying again makes a new version; deploying an
unchanged app changes nothing.

Options:
      --name NAME         the app's name (default: the App's name, else the file's)
      --tag TAG           a label kept with the version (skiff app history)
      --strategy S        rolling (default): new containers take new inputs as
                          soon as they are up, old ones finish what they hold;
                          recreate: old containers finish and go first
      --json              print the result as one JSON object on stdout
  -q, --quiet             print nothing but errors
  -h, --help              show this help
"""

MAX_CODE_FILE = 32 << 20


class UsageError(Exception):
    """A bad command line."""


def split_argv(argv: Sequence[str]) -> tuple[dict[str, Any], str]:
    opts: dict[str, Any] = {"name": None, "tag": None, "strategy": "rolling", "json": False,
                            "quiet": False, "help": False}
    ref = None
    i = 0
    while i < len(argv):
        a = argv[i]
        key, eq, val = a.partition("=")
        if a in ("-h", "--help"):
            opts["help"] = True
            return opts, ""
        if key in ("--name", "--tag", "--strategy"):
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"{key} needs a value")
                val = argv[i]
            opts[key[2:]] = val
        elif a == "--json":
            opts["json"] = True
        elif a in ("-q", "--quiet"):
            opts["quiet"] = True
        elif a.startswith("-"):
            raise UsageError(f"unknown option {a!r}")
        elif ref is None:
            ref = a
        else:
            raise UsageError(f"unexpected argument {a!r}")
        i += 1
    if opts["strategy"] not in ("rolling", "recreate"):
        raise UsageError(f"--strategy must be rolling or recreate, not {opts['strategy']!r}")
    if ref is None:
        raise UsageError("which file? Give FILE[::APP]")
    return opts, ref


# -- what is deployed ------------------------------------------------------------

def code_snapshot(mount_dir: str, skip: Sequence[str] = ()) -> dict[str, str]:
    """{relative path: base64} of the modules imported from under mount_dir
    (and the __init__.py of their packages), skipping the SDK's own."""
    root = os.path.abspath(mount_dir)
    skip_abs = [os.path.abspath(s) + os.sep for s in skip]
    files: dict[str, str] = {}
    for mod in list(sys.modules.values()):
        path = getattr(mod, "__file__", None)
        if not path or not path.endswith(".py"):
            continue
        path = os.path.abspath(path)
        if not path.startswith(root + os.sep) or any(path.startswith(s) for s in skip_abs):
            continue
        rel = os.path.relpath(path, root)
        # The __init__.py of each package between root and the module.
        parts = rel.split(os.sep)
        for k in range(1, len(parts)):
            init = os.path.join(*parts[:k], "__init__.py")
            if os.path.isfile(os.path.join(root, init)):
                _add(files, root, init)
        _add(files, root, rel)
    return files


def _add(files: dict[str, str], root: str, rel: str) -> None:
    if rel in files:
        return
    with open(os.path.join(root, rel), "rb") as f:
        data = f.read(MAX_CODE_FILE + 1)
    if len(data) > MAX_CODE_FILE:
        raise ValueError(f"{rel} is over {MAX_CODE_FILE >> 20} MiB; keep big files out of the "
                         "app's code (add them to the image)")
    files[rel.replace(os.sep, "/")] = base64.b64encode(data).decode("ascii")


def manifest(app: Any, client: _client.Client) -> dict[str, Any]:
    """The body of POST /v1/deployments, less name/tag/strategy."""
    from .cls import pool_name

    functions = []
    for name, fn in app.registered_functions.items():
        body = _register.registration("", name, fn, app.image, app._secrets, client)
        body.pop("app_id", None)
        functions.append(body)
    classes = []
    for c in app.registered_classes.values():
        cls_info = {"qualname": c._skiff_user_cls.__qualname__,
                    "params": base64.b64encode(P.dumps({})).decode("ascii")}
        template = _register.registration_of("", c.name, c._skiff_user_cls, c._spec, app.image,
                                             app._secrets, client, cls=cls_info)
        template.pop("app_id", None)
        methods = {m: {"is_generator": bool((marks.get("method") or {}).get("is_generator"))}
                   for m, marks in c._methods.items()}
        classes.append({
            "name": c.name,
            "template": template,
            "default_pool": None if c._declared else pool_name(c.name, {}, c._options_key),
            "methods": methods,
            "params": list(c._declared),
        })
    dirs = sorted({b["mount_dir"] for b in functions + [c["template"] for c in classes]
                   if b.get("mount_dir")})
    sdk = _register.sdk_dir()
    code = [{"mount_dir": d, "files": code_snapshot(d, [os.path.join(sdk, "skiff")])}
            for d in dirs]
    return {"functions": functions, "classes": classes, "code": code}


def deploy_app(app: Any, name: Optional[str] = None, tag: Optional[str] = None,
               strategy: str = "rolling", client: Optional[_client.Client] = None
               ) -> dict[str, Any]:
    """Deploys ``app`` and hydrates its functions; returns the server's answer
    ({"app_id", "name", "version", "unchanged", "functions": {name: {...}}})."""
    from .exception import InvalidError

    if strategy not in ("rolling", "recreate"):
        raise InvalidError(f"strategy must be 'rolling' or 'recreate', not {strategy!r}")
    client = client or _client.get_client()
    name = name or app.name
    if not name:
        from .app import _default_name
        name = _default_name()
    body = manifest(app, client)
    body.update({"name": name, "tag": tag, "strategy": strategy})
    resp = client.request("POST", "/v1/deployments", body, timeout=120)
    fns = resp.get("functions") or {}
    for fname, fn in app.registered_functions.items():
        info = fns.get(fname)
        if info:
            fn._hydrate_with(client, str(info["function_id"]), info.get("web_url"))
    app._app_id = resp.get("app_id")
    app._client = client
    return resp


def _report(resp: dict[str, Any], seconds: float, opts: dict[str, Any]) -> None:
    if opts["json"]:
        out = dict(resp)
        out["seconds"] = round(seconds, 3)
        print(json.dumps(out), flush=True)
        return
    if opts["quiet"]:
        return
    tty = sys.stderr.isatty()
    name, version = resp["name"], resp["version"]
    if resp.get("unchanged"):
        head = f"App {name} is unchanged: version v{version} stays deployed"
    else:
        head = f"App {name} deployed as v{version} in {seconds:.2f}s"
    lines = [("\u2713 " if tty else "skiff: ") + head]
    for fname, info in sorted((resp.get("functions") or {}).items()):
        if info.get("web_url"):
            lines.append(f"  web function {fname} => {info['web_url']}")
        if info.get("schedule"):
            nxt = info.get("next_run")
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(nxt)) if nxt else "never"
            lines.append(f"  {fname}: {info['schedule']}, next run {when}")
    text = "\n".join(lines) + "\n"
    try:
        sys.stderr.write(text)
    except UnicodeEncodeError:
        sys.stderr.write(text.replace("\u2713 ", "skiff: "))
    sys.stderr.flush()


def main(argv: Optional[Sequence[str]] = None) -> int:
    from . import _modal_alias
    from ._run import load_file
    from ._serve import UsageError as ServeUsage, find_app
    from .exception import Error

    t0 = time.monotonic()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts, ref = split_argv(argv)
    except UsageError as e:
        print(f"skiff deploy: {e}\n\n{USAGE}", file=sys.stderr, end="")
        return 2
    if opts["help"]:
        print(USAGE, end="")
        return 0
    path, _, appvar = ref.partition("::")
    _modal_alias.install()
    try:
        mod = load_file(path)
        app = find_app(mod, appvar)
    except (ServeUsage, Exception) as e:  # noqa: BLE001 - the user's module or a bad ref
        if type(e).__name__ == "UsageError":
            print(f"skiff deploy: {e}", file=sys.stderr)
            return 2
        traceback.print_exc()
        return 1
    name = opts["name"] or app.name or os.path.splitext(os.path.basename(path))[0]
    try:
        resp = deploy_app(app, name, opts["tag"], opts["strategy"])
    except Error as e:
        print(f"skiff deploy: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"skiff deploy: {e}", file=sys.stderr)
        return 1
    _report(resp, time.monotonic() - t0, opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
