"""``import modal`` gives Skiff: Modal programs run unchanged under ``skiff run``.

``install()`` puts a module called ``modal`` in ``sys.modules`` that hands
out Skiff's objects (``modal.App is skiff.App``), plus its submodules
(``modal.exception`` is ``skiff.exception``, ...).  A part of Modal's API
that Skiff does not have yet fails where it is used, with a message that
names it: ``modal.Volume`` raises InvalidError("modal.Volume is not
available in Skiff yet"), ``import modal.volume`` an ImportError saying so.

``skiff run`` (``python3 -m skiff._run``) and the container runtime call
``install()`` before importing the user's module.  It is idempotent and
replaces a real ``modal`` package only in that process.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any, Optional, Sequence

import skiff
from skiff.exception import InvalidError

# Modal's top-level names that Skiff does not have yet.
MISSING = frozenset({
    "Volume", "Dict", "Queue", "NetworkFileSystem",
    "CloudBucketMount", "Mount", "Proxy", "Tunnel", "forward",
    "build", "interact", "Client", "enable_output", "gpu",
    "SchedulerPlacement", "Probe", "Stub", "Server", "Environment", "FilePatternMatcher",
    "SandboxSnapshot", "current_task", "experimental", "config", "runner", "billing",
})

# Modal submodules and the Skiff modules that stand for them.
SUBMODULES = {
    "exception": "skiff.exception",
    "app": "skiff.app",
    "functions": "skiff.functions",
    "cls": "skiff.cls",
    "partial_function": "skiff.partial_function",
    "image": "skiff.image",
    "secret": "skiff.secret",
    "sandbox": "skiff.sandbox",
    "retries": "skiff.retries",
    "container_process": "skiff.sandbox",
    "stream_type": "skiff._stream",
}


class _ModalModule(types.ModuleType):
    """The ``modal`` module: Skiff's names, and clear errors for the rest."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "Error":
            return skiff.exception.Error
        if name in SUBMODULES:
            return sys.modules.get(f"modal.{name}") or importlib.import_module(SUBMODULES[name])
        try:
            return getattr(skiff, name)
        except AttributeError:
            pass
        if name in MISSING:
            raise InvalidError(f"modal.{name} is not available in Skiff yet")
        raise AttributeError(f"module 'modal' (Skiff) has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted(set(skiff.__all__) | set(SUBMODULES) | {"Error"})


class _Finder(importlib.abc.MetaPathFinder):
    """Refuses ``import modal.<x>`` for submodules Skiff lacks, with a message."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Optional[types.ModuleType] = None
                  ) -> Optional[importlib.machinery.ModuleSpec]:
        if not fullname.startswith("modal.") or fullname in sys.modules:
            return None
        raise ImportError(f"{fullname} is not available in Skiff yet", name=fullname)


def install() -> types.ModuleType:
    """Makes ``import modal`` give Skiff in this process; returns the module."""
    mod = sys.modules.get("modal")
    if isinstance(mod, _ModalModule):
        return mod
    for name in [n for n in sys.modules if n == "modal" or n.startswith("modal.")]:
        del sys.modules[name]
    mod = _ModalModule("modal", "Skiff standing in for Modal (import modal gives skiff)")
    mod.__path__ = []  # a package, so that `import modal.x` asks the finders
    mod.__file__ = skiff.__file__
    mod.__all__ = list(skiff.__all__)
    sys.modules["modal"] = mod
    for sub, target in SUBMODULES.items():
        sys.modules[f"modal.{sub}"] = importlib.import_module(target)
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    return mod

