"""Entrypoint parameters as command-line options (sdk/python/skiff/_cliargs.py)."""

from __future__ import annotations

from typing import Optional

import pytest

from skiff._cliargs import HelpRequested, Signature, UsageError, parse


def main(n: int = 1000, rate: float = 0.5, name: str = "x", dry_run: bool = False) -> None:
    pass


def test_defaults() -> None:
    assert parse(main, []) == ([], {})


def test_values_are_converted() -> None:
    _, kw = parse(main, ["--n", "10000", "--rate=2.5", "--name", "bob", "--dry-run"])
    assert kw == {"n": 10000, "rate": 2.5, "name": "bob", "dry_run": True}
    assert isinstance(kw["n"], int) and isinstance(kw["rate"], float)


def test_bool_flags() -> None:
    assert parse(main, ["--no-dry-run"])[1] == {"dry_run": False}
    assert parse(main, ["--dry_run"])[1] == {"dry_run": True}
    assert parse(main, ["--dry-run=false"])[1] == {"dry_run": False}
    with pytest.raises(UsageError, match="not a boolean"):
        parse(main, ["--dry-run=maybe"])


def test_bad_values_and_unknown_options() -> None:
    with pytest.raises(UsageError, match="'ten' is not an int"):
        parse(main, ["--n", "ten"])
    with pytest.raises(UsageError, match="no such option --m"):
        parse(main, ["--m", "1"])
    with pytest.raises(UsageError, match="--n needs a value"):
        parse(main, ["--n"])
    with pytest.raises(UsageError, match="unexpected argument 'extra'"):
        parse(main, ["extra"])


def test_negative_number_value() -> None:
    assert parse(main, ["--n", "-5"])[1] == {"n": -5}


def test_required_options() -> None:
    def f(path: str, count: int) -> None: ...
    with pytest.raises(UsageError, match="missing options --path, --count"):
        parse(f, [])
    assert parse(f, ["--count", "3", "--path", "/x"])[1] == {"path": "/x", "count": 3}


def test_unannotated_and_optional() -> None:
    def f(a, b=3, c: Optional[int] = None, d: "int | None" = None) -> None: ...  # type: ignore[no-untyped-def]
    _, kw = parse(f, ["--a", "hi", "--b", "4", "--c", "5", "--d", "6"])
    assert kw == {"a": "hi", "b": 4, "c": 5, "d": 6}


def test_string_annotations() -> None:
    ns: dict = {}
    exec("from __future__ import annotations\n"
         "def f(n: int = 1, flag: bool = True): pass\n", ns)
    assert parse(ns["f"], ["--n", "2", "--no-flag"])[1] == {"n": 2, "flag": False}


def test_varargs_get_the_rest() -> None:
    def f(*args: str) -> None: ...
    assert parse(f, ["a", "--b", "c"]) == (["a", "--b", "c"], {})

    def g(n: int = 1, *rest: str) -> None: ...
    assert parse(g, ["--n", "2", "x", "--", "--n"]) == (["x", "--n"], {"n": 2})


def test_unsupported_type() -> None:
    def f(xs: list = []) -> None: ...  # noqa: B006
    with pytest.raises(UsageError, match="'xs' has type"):
        Signature(f, "skiff run x.py")


def test_help_lists_options() -> None:
    with pytest.raises(HelpRequested) as ei:
        parse(main, ["--help"], prog="skiff run demo.py")
    text = str(ei.value)
    assert "Usage: skiff run demo.py" in text
    assert "--n INT" in text and "--dry-run/--no-dry-run" in text and "default: 1000" in text
