"""Command-line options from a Python signature, as ``modal run`` makes them.

    def main(n: int = 1000, name: str = "x", dry_run: bool = False, *rest): ...

takes ``--n 10``, ``--n=10``, ``--name foo``, ``--dry-run`` / ``--no-dry-run``
(underscores may also be spelled as such: ``--dry_run``).  A parameter
without a default is a required option.  Types: int, float, str, bool (and
``Optional[...]`` of them); an unannotated parameter takes its default's
type, else a str.  A
function with ``*args`` gets the arguments that are not options there, as
strings.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Callable, Optional, Sequence

SUPPORTED = (int, float, str, bool)
_NAMES = {"int": int, "float": float, "str": str, "bool": bool}
_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


class UsageError(Exception):
    """A bad command line; the message is for the person who typed it."""


class Option:
    __slots__ = ("param", "flag", "type", "required", "default")

    def __init__(self, param: str, typ: type, required: bool, default: Any) -> None:
        self.param = param
        self.flag = "--" + param.replace("_", "-")
        self.type = typ
        self.required = required
        self.default = default

    def usage(self) -> str:
        if self.type is bool:
            text = f"{self.flag}/--no-{self.flag[2:]}"
        else:
            text = f"{self.flag} {self.type.__name__.upper()}"
        if self.required:
            return text + "  (required)"
        return text + f"  (default: {self.default!r})"


def _resolve(annotation: Any, hints: dict[str, Any], name: str) -> Any:
    if name in hints:
        return hints[name]
    if isinstance(annotation, str):
        text = annotation.strip()
        if text.startswith("Optional[") and text.endswith("]"):
            text = text[len("Optional["):-1]
        if text.endswith("| None"):
            text = text[: -len("| None")].strip()
        return _NAMES.get(text, annotation)
    return annotation


def _base_type(annotation: Any) -> Optional[type]:
    """int/float/str/bool for an annotation (unwrapping Optional), else None."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return str
    if annotation in SUPPORTED:
        return annotation  # type: ignore[no-any-return]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) == 1 and args[0] in SUPPORTED and type(None) in typing.get_args(annotation):
        return args[0]  # type: ignore[no-any-return]
    return None


class Signature:
    """The options of one function."""

    def __init__(self, fn: Callable[..., Any], prog: str) -> None:
        self.prog = prog
        self.options: list[Option] = []
        self.varargs = False
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # unresolvable string annotations: read them by hand
            hints = {}
        for p in inspect.signature(fn).parameters.values():
            if p.kind is p.VAR_POSITIONAL:
                self.varargs = True
                continue
            if p.kind is p.VAR_KEYWORD:
                continue
            if p.kind is p.POSITIONAL_ONLY:
                raise UsageError(f"{prog}: parameter {p.name!r} is positional-only; "
                                 "entrypoint parameters must be nameable as --options")
            ann = _resolve(p.annotation, hints, p.name)
            if ann is inspect.Parameter.empty and type(p.default) in SUPPORTED:
                ann = type(p.default)  # unannotated: the default's type
            typ = _base_type(ann)
            if typ is None:
                raise UsageError(
                    f"{prog}: parameter {p.name!r} has type {ann!r}, which the command line "
                    "can't give (int, float, str or bool)")
            required = p.default is inspect.Parameter.empty
            self.options.append(Option(p.name, typ, required, None if required else p.default))

    def usage(self) -> str:
        lines = [f"Usage: {self.prog} [OPTIONS]{' [ARGS]...' if self.varargs else ''}", ""]
        if self.options:
            lines.append("Options:")
            lines += [f"  {o.usage()}" for o in self.options]
        else:
            lines.append("(no options)")
        return "\n".join(lines) + "\n"

    def _find(self, flag: str) -> tuple[Optional[Option], bool]:
        """The option a flag names, and whether it is the --no- form."""
        norm = "--" + flag[2:].replace("_", "-")
        for o in self.options:
            if norm == o.flag:
                return o, False
            if o.type is bool and norm == "--no-" + o.flag[2:]:
                return o, True
        return None, False

    def _convert(self, o: Option, text: str) -> Any:
        if o.type is bool:
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise UsageError(f"{o.flag}: {text!r} is not a boolean (true or false)")
        try:
            return o.type(text)
        except ValueError:
            raise UsageError(f"{o.flag}: {text!r} is not {'an' if o.type is int else 'a'} "
                             f"{o.type.__name__}") from None

    def parse(self, argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
        """(extra positional args, keyword args) for the function; UsageError
        on a bad command line.  ``--help`` raises HelpRequested."""
        kwargs: dict[str, Any] = {}
        extra: list[str] = []
        i = 0
        while i < len(argv):
            arg = argv[i]
            i += 1
            if arg in ("--help", "-h"):
                raise HelpRequested(self.usage())
            if arg == "--":
                extra.extend(argv[i:])
                break
            if not arg.startswith("--") or arg == "--":
                if not self.varargs:
                    raise UsageError(f"unexpected argument {arg!r}")
                extra.append(arg)
                continue
            flag, eq, value = arg.partition("=")
            o, negated = self._find(flag)
            if o is None:
                if self.varargs:
                    extra.append(arg)
                    continue
                known = ", ".join(x.flag for x in self.options) or "none"
                raise UsageError(f"no such option {flag} (options: {known})")
            if o.type is bool:
                if negated:
                    if eq:
                        raise UsageError(f"{flag} takes no value")
                    kwargs[o.param] = False
                else:
                    kwargs[o.param] = self._convert(o, value) if eq else True
                continue
            if not eq:
                if i >= len(argv):
                    raise UsageError(f"{flag} needs a value")
                value = argv[i]
                i += 1
            kwargs[o.param] = self._convert(o, value)
        missing = [o.flag for o in self.options if o.required and o.param not in kwargs]
        if missing:
            raise UsageError(f"missing option{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(missing)}")
        return extra, kwargs


class HelpRequested(Exception):
    """``--help`` was given; the message is the usage text."""


def parse(fn: Callable[..., Any], argv: Sequence[str],
          prog: str = "skiff run") -> tuple[list[str], dict[str, Any]]:
    """Parses argv for fn (see the module comment)."""
    return Signature(fn, prog).parse(argv)
