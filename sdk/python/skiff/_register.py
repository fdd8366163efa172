"""What ``POST /v1/functions`` needs to know about a function: where its code
is (the container imports it by module name from ``mount_dir``), the SDK and
cloudpickle to mount beside it, its image, resources, env and retries.

Functions are found by reference, not pickled: the container imports
``module`` with ``mount_dir`` (bind-mounted at /skiff/app) on sys.path and
looks up ``qualname``.  A function of the ``__main__`` module (a script run
with ``python3 script.py``) is registered under the script's file name
(``script``), so the container does not run the script's ``__main__`` block.
Only ``serialized=True`` functions travel pickled (cloudpickle, base64).
"""

from __future__ import annotations

import base64
import os
import sys
from typing import Any, Callable, Optional

from . import _client
from . import _payload as P
from .exception import InvalidError
from .image import Image
from .secret import merge_env


def sdk_dir() -> str:
    """The directory holding the ``skiff`` package (mounted at /skiff/sdk)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_compiled: set[str] = set()


def precompile(*paths: Optional[str]) -> None:
    """Writes the bytecode of the SDK and of the user's module beside them,
    once per process, so that each container (which mounts them read-only)
    loads it instead of compiling: a container then starts on about 50 ms of
    CPU instead of 75.  Best effort: read-only places are left as they are.
    Bytecode is only used by an interpreter of the same version as the one
    that wrote it, and only while the source is unchanged."""
    import compileall
    import py_compile

    for p in paths:
        if not p or p in _compiled:
            continue
        _compiled.add(p)
        try:
            if os.path.isdir(p):
                compileall.compile_dir(p, quiet=2, workers=1)
            elif p.endswith(".py"):
                py_compile.compile(p, doraise=False, quiet=2)
        except Exception:  # noqa: BLE001 - an optimisation only
            pass


def extra_dirs() -> list[str]:
    """Packages mounted beside the SDK: cloudpickle's directory where present."""
    if not P.HAVE_CLOUDPICKLE:
        return []
    import cloudpickle

    return [os.path.dirname(os.path.abspath(cloudpickle.__file__))]


def module_name_of_main(main: Any) -> Optional[str]:
    """The importable name of the ``__main__`` module: its spec's name under
    ``python3 -m pkg.mod``, else its file's stem; None without a file."""
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None) and spec.name != "__main__":
        return str(spec.name)
    path = getattr(main, "__file__", None)
    if not path:
        return None
    return os.path.splitext(os.path.basename(path))[0]


def locate(raw_f: Callable[..., Any]) -> Optional[dict[str, str]]:
    """``{"module", "file", "qualname", "mount_dir"}`` for a function found by
    reference, or None when its module has no file (REPL, notebook)."""
    modname = getattr(raw_f, "__module__", None) or "__main__"
    mod = sys.modules.get(modname)
    path = getattr(mod, "__file__", None)
    if not path:
        return None
    if modname == "__main__":
        name = module_name_of_main(mod)
        if name is None:
            return None
        modname = name
    path = os.path.abspath(path)
    root = os.path.dirname(path)
    depth = modname.count(".") + (1 if os.path.basename(path) == "__init__.py" else 0)
    for _ in range(depth):
        root = os.path.dirname(root)
    return {"module": modname, "file": path, "qualname": raw_f.__qualname__, "mount_dir": root}


def check_global(raw_f: Callable[..., Any], serialized: bool) -> None:
    """Modal's rule: a function found by reference must be defined at module level."""
    if serialized:
        if not P.HAVE_CLOUDPICKLE:
            raise InvalidError(
                f"serialized=True for {raw_f.__name__} needs cloudpickle, which this Python "
                "can't import (install python3-cloudpickle or `pip install cloudpickle`)")
        return
    if "<locals>" in getattr(raw_f, "__qualname__", ""):
        raise InvalidError(
            f"{raw_f.__qualname__} is defined inside a function: Skiff imports functions "
            "by name in their containers, so they must be defined at module level "
            "(or use @app.function(serialized=True))")


def registration(app_id: str, name: str, fn: Any, app_image: Optional[Image],
                 app_secrets: list[Any], client: _client.Client) -> dict[str, Any]:
    """The body of ``POST /v1/functions`` for Function ``fn`` (builds its image)."""
    return registration_of(app_id, name, fn.get_raw_f(), fn.spec, app_image, app_secrets,
                           client)


def registration_of(app_id: str, name: str, raw: Any, spec: Any, app_image: Optional[Image],
                    app_secrets: list[Any], client: _client.Client,
                    cls: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """The body of ``POST /v1/functions`` for ``raw`` -- a function, or the
    user's class of a class pool (then ``cls`` is ``{"qualname", "params"}``)
    -- with the options of ``spec`` (a FunctionSpec)."""
    where = locate(raw)
    serialized = spec.serialized
    if where is None and not serialized:
        if not P.HAVE_CLOUDPICKLE:
            raise InvalidError(
                f"{name} is defined where Skiff can't import it from (no module file: a "
                "REPL or notebook?), and cloudpickle is missing to send it by value")
        serialized = True  # as Modal does for notebooks
    pickled = None
    if serialized:
        try:
            pickled = base64.b64encode(P.dumps(raw)).decode("ascii")
        except Exception as e:
            raise InvalidError(f"{name} (serialized=True) cannot be pickled: "
                               f"{type(e).__name__}: {e}") from None
    image = spec.image or app_image or Image.debian_slim()
    image_id = image._build(client)
    precompile(os.path.join(sdk_dir(), "skiff"), where["file"] if where else None)
    env = merge_env(list(app_secrets) + list(spec.secrets), spec.env)
    body: dict[str, Any] = {
        "app_id": app_id,
        "name": name,
        "image_id": image_id,
        "module": where["module"] if where else None,
        "file": where["file"] if where else None,
        "qualname": where["qualname"] if where else raw.__qualname__,
        "mount_dir": where["mount_dir"] if where else None,
        "sdk_dir": sdk_dir(),
        "extra_dirs": extra_dirs(),
        "serialized": serialized,
        "pickled_function": pickled,
        "is_generator": spec.is_generator,
        "cpu": spec.cpu,
        "memory": spec.memory,
        "gpu": spec.gpu,
        "timeout": spec.timeout,
        "retries": spec.retries.to_json() if spec.retries else None,
        "env": env,
        "block_network": spec.block_network,
        "enable_memory_snapshot": spec.enable_memory_snapshot,
        "min_containers": spec.min_containers,
        "max_containers": spec.max_containers,
        "buffer_containers": spec.buffer_containers,
        "scaledown_window": spec.scaledown_window,
        "max_inputs": spec.max_inputs,
        "target_inputs": spec.target_inputs,
        "batch": dict(spec.batch) if spec.batch else None,
        "cls": cls,
        "enter_timeout": spec.startup_timeout or spec.timeout,
    }
    mounts = image._container_mounts()
    if mounts:
        # copy=False files of the image (docs/api.md, "Using an image").
        body["mounts"] = mounts
    if getattr(spec, "web", None):
        body["web"] = dict(spec.web)
    if getattr(spec, "schedule", None) is not None:
        # Scheduled runs take no arguments: the server sends this input.
        body["schedule"] = spec.schedule.to_json()
        body["schedule_input"] = base64.b64encode(
            P._dumps([((), {})], protocol=P.PROTOCOL)).decode("ascii")
    return body
