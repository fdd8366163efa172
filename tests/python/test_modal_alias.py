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
                     "modal.App('a').include", "modal.App('a').function(volumes={'/v': 1})",
                     "modal.App('a').function(keep_warm=1)", "modal.Cls.from_name('a', 'B')(1)"]:
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
    assert lines[3] == "InvalidError modal.App.include is not available in Skiff yet"
    assert "volumes=" in lines[4] and "not available in Skiff yet" in lines[4]
    assert "keep_warm= is Modal's old name; use min_containers" in lines[5]
    assert lines[6] == "InvalidError B(...): pass a deployed class's parameters by name"
    assert lines[7] == "False"


def test_classes_and_decorators_resolve() -> None:
    r = _py("""
        from skiff import _modal_alias
        _modal_alias.install()
        import modal, skiff
        import modal.cls
        for name in ["Cls", "enter", "exit", "method", "parameter", "concurrent", "batched"]:
            assert getattr(modal, name) is getattr(skiff, name), name
        from modal import Cls, enter, exit, method, parameter, concurrent, batched
        app = modal.App("x")

        @app.cls(cpu=1)
        @modal.concurrent(max_inputs=3)
        class Model:
            size: int = modal.parameter(default=2)

            @modal.enter(snap=True)
            def load(self):
                self.w = 10

            @modal.method()
            def f(self, x):
                return self.w * self.size + x

        assert isinstance(Model, modal.Cls)
        assert Model(size=3).f.local(1) == 31
        print("ok")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
