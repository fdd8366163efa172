"""`import modal` gives Skiff under skiff run (sdk/python/skiff/_modal_alias.py).

Each test runs in a fresh interpreter: the alias changes sys.modules."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from conftest import SDK


def _py(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SDK)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=60)


def test_modal_is_skiff() -> None:
    r = _py("""
        from skiff import _modal_alias
        _modal_alias.install()
        import modal, skiff
        import modal.exception
        from modal import App, Image, Retries, FunctionCall
        from modal.exception import InvalidError, FunctionTimeoutError
        assert modal.App is skiff.App and App is skiff.App
        assert modal.exception is skiff.exception
        assert modal.Error is skiff.exception.Error
        assert modal.is_local() is True
        app = modal.App("x")
        @app.function(retries=modal.Retries(max_retries=1))
        def f(x): return x
        assert f.local(2) == 2
        _modal_alias.install()  # idempotent
        import modal as again
        assert again is modal
        print("ok")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_missing_parts_are_named() -> None:
    r = _py("""
        from skiff import _modal_alias
        _modal_alias.install()
        import modal
        for stmt in ["modal.Volume", "from modal import Dict", "import modal.volume",
                     "modal.App('a').cls", "modal.App('a').function(gpu='A100')"]:
            try:
                exec(stmt)
            except Exception as e:
                print(type(e).__name__, e)
        print(hasattr(modal, "no_such_thing"))
    """)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "InvalidError modal.Volume is not available in Skiff yet"
    assert lines[1] == "InvalidError modal.Dict is not available in Skiff yet"
    assert lines[2] == "ImportError modal.volume is not available in Skiff yet"
    assert lines[3] == "InvalidError modal.App.cls is not available in Skiff yet"
    assert "gpu=" in lines[4] and "not available in Skiff yet" in lines[4]
    assert lines[5] == "False"
