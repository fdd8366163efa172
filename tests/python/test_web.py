"""Web endpoints on the SDK's side, against the fake server: the decorators'
checks, the "web" object of POST /v1/functions, get_web_url(), the refusal
of .remote() and friends, the URLs that app.run() and `skiff run` print, and
`skiff serve`'s change detection and reloads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any, Callable

import pytest

import skiff
from conftest import SDK
from skiff import _app_run, _serve
from skiff.exception import ExecutionError, InvalidError

app = skiff.App("webdemo")


@app.function()
@skiff.fastapi_endpoint(method="post", docs=True)
def hello_world(name: str = "you") -> dict[str, str]:
    return {"hello": name}


@app.function()
@skiff.asgi_app(label="my-api", requires_proxy_auth=True)
def api() -> Any:
    return None


@app.function()
@skiff.wsgi_app()
def flask_app() -> Any:
    return None


@app.function()
@skiff.web_server(8080, startup_timeout=10)
def server() -> None:
    pass


@app.function()
@skiff.web_endpoint()
def old_name() -> str:
    return "old"


@app.function()
def plain(x: int) -> int:
    return x + 1


def _emb(xs: list[int]) -> list[int]:
    return xs


def _raises(match: str, f: Callable[[], Any]) -> None:
    with pytest.raises(InvalidError, match=match):
        f()


# -- decorators ----------------------------------------------------------------------


def test_decorators_check_their_arguments() -> None:
    def f() -> None:
        pass

    _raises("method='FETCH' is not one of GET, POST", lambda: skiff.fastapi_endpoint(method="FETCH"))
    _raises("label='Hello' is not a valid endpoint label",
            lambda: skiff.fastapi_endpoint(label="Hello"))
    for bad in ("-a", "a-", "a_b", "", "x" * 64, "a.b"):
        _raises("not a valid endpoint label", lambda: skiff.asgi_app(label=bad))
    skiff.wsgi_app(label="x" * 63)
    skiff.asgi_app(label="a-1")
    skiff.asgi_app(label="7")
    for port in (0, 65536, "80", True, 80.0):
        _raises("port must be an int from 1 to 65535", lambda: skiff.web_server(port))
    _raises("startup_timeout", lambda: skiff.web_server(80, startup_timeout=0))
    _raises("needs the port", lambda: skiff.web_server(f))  # type: ignore[arg-type]
    _raises("custom_domains is not available", lambda: skiff.asgi_app(custom_domains=["x.com"]))
    _raises("requires_proxy_auth must be a bool",
            lambda: skiff.fastapi_endpoint(requires_proxy_auth="yes"))  # type: ignore[arg-type]
    _raises("with parentheses", lambda: skiff.fastapi_endpoint(f))
    _raises("with parentheses", lambda: skiff.asgi_app(f))
    _raises("with parentheses", lambda: skiff.web_endpoint(f))


def test_method_is_upper_cased_and_marks_are_recorded() -> None:
    from skiff import partial_function as pf

    def f() -> None:
        pass

    skiff.fastapi_endpoint(method="delete")(f)
    assert pf.marks(f)["web"]["method"] == "DELETE"
    assert pf.web_config(pf.marks(f)) == {"kind": "function", "method": "DELETE",
                                          "label": None, "docs": False,
                                          "requires_proxy_auth": False}


def test_one_web_decorator_per_function() -> None:
    def f() -> None:
        pass

    skiff.asgi_app()(f)
    _raises("two web decorators", lambda: skiff.wsgi_app()(f))
    _raises("two web decorators", lambda: skiff.fastapi_endpoint()(f))


def test_decorator_order_and_targets() -> None:
    # Modal's order: @app.function() on top, the web decorator under it.
    _raises("must be applied under @app.function", lambda: skiff.fastapi_endpoint()(plain))

    class K:
        pass

    _raises("decorates functions", lambda: skiff.asgi_app()(K))

    def needs_arg(x: int) -> None:
        pass

    _raises("requires x", lambda: skiff.asgi_app()(needs_arg))
    _raises("requires x", lambda: skiff.web_server(8000)(needs_arg))
    skiff.fastapi_endpoint()(needs_arg)  # an endpoint takes query parameters


def test_web_on_class_methods_is_refused() -> None:
    a = skiff.App("cls-web")

    class Model:
        @skiff.fastapi_endpoint()
        def predict(self) -> None:
            pass

    _raises("not supported yet on class methods", lambda: a.cls()(Model))


def test_web_and_batched_do_not_mix() -> None:
    a = skiff.App("batched-web")
    f = skiff.batched(max_batch_size=4, wait_ms=10)(_emb)
    skiff.fastapi_endpoint()(f)
    _raises("can't be @skiff.batched", lambda: a.function()(f))


def test_modal_alias_has_the_web_decorators() -> None:
    from skiff import _modal_alias

    modal = _modal_alias.install()
    assert modal.fastapi_endpoint is skiff.fastapi_endpoint
    assert modal.web_endpoint is skiff.web_endpoint
    assert modal.asgi_app is skiff.asgi_app and modal.wsgi_app is skiff.wsgi_app
    assert modal.web_server is skiff.web_server


# -- registration, URLs, refusals --------------------------------------------------


def test_registration_sends_the_web_object(fake: Any) -> None:
    with app.run(show_logs=False):
        pass
    regs = {r["name"]: r for r in fake.registrations}
    assert regs["hello_world"]["web"] == {"kind": "function", "method": "POST", "label": None,
                                          "docs": True, "requires_proxy_auth": False}
    assert regs["api"]["web"] == {"kind": "asgi", "label": "my-api", "docs": False,
                                  "requires_proxy_auth": True}
    assert regs["flask_app"]["web"]["kind"] == "wsgi"
    assert regs["server"]["web"] == {"kind": "server", "label": None, "docs": False,
                                     "requires_proxy_auth": False, "port": 8080,
                                     "startup_timeout": 10.0}
    assert regs["old_name"]["web"]["method"] == "GET"
    assert "web" not in regs["plain"]
    json.dumps(regs["server"])  # plain JSON


def test_get_web_url(fake: Any) -> None:
    assert plain.get_web_url() is None and not plain.is_web_endpoint
    with pytest.raises(ExecutionError, match="not running"):
        hello_world.get_web_url()
    with app.run(show_logs=False):
        assert hello_world.get_web_url() == "http://127.0.0.1:8000/webdemo/hello-world"
        assert api.get_web_url() == "http://127.0.0.1:8000/webdemo/my-api"
        assert api.web_url == api.get_web_url()
        assert plain.get_web_url() is None
        assert plain.remote(1) == 2
    with pytest.raises(ExecutionError):
        hello_world.get_web_url()


def test_get_web_url_inside_a_container(fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with app.run(detach=True, show_logs=False) as running:
        app_id = running.app_id
    monkeypatch.setenv("SKIFF_CONTAINER_ID", "ct-0000000000000001")
    monkeypatch.setenv("SKIFF_APP_ID", app_id)
    try:
        assert server.get_web_url() == "http://127.0.0.1:8000/webdemo/server"
    finally:
        server._dehydrate()


def test_calls_of_a_web_endpoint_are_refused(fake: Any) -> None:
    _raises("hello_world is a web endpoint .* can't be called with .remote", hello_world.remote)
    with app.run(show_logs=False):
        url = hello_world.get_web_url()
        with pytest.raises(InvalidError, match="web endpoint") as e:
            hello_world.remote("x")
        assert url in str(e.value) and "hello_world.local(...)" in str(e.value)
        _raises(r"\.spawn\(\)", lambda: hello_world.spawn())
        _raises(r"\.map\(\)", lambda: list(api.map([1, 2])))
        _raises(r"\.map\(\)", lambda: api.for_each([1]))
        _raises(r"\.spawn_map\(\)", lambda: server.spawn_map([1]))
        _raises(r"\.remote_gen\(\)", lambda: list(flask_app.remote_gen()))
        assert hello_world.local("me") == {"hello": "me"}
    calls = [p for m, p in fake.requests if p.endswith(("/remote", "/spawn", "/map"))]
    assert calls == []


def test_app_run_prints_the_urls(fake: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with app.run(show_logs=False, _output="plain"):
        pass
    err = capsys.readouterr().err
    assert "skiff: web function hello_world => http://127.0.0.1:8000/webdemo/hello-world\n" in err
    assert "skiff: web function api => http://127.0.0.1:8000/webdemo/my-api\n" in err
    assert "plain" not in err
    with app.run(show_logs=False, _output="json"):
        pass
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {"event": "web_function", "function": "server",
            "url": "http://127.0.0.1:8000/webdemo/server"} in lines
    with app.run(show_logs=False):  # no output asked for, no logs shown: quiet
        pass
    assert capsys.readouterr() == ("", "")
    assert _app_run.format_web_endpoint("f", "http://u", "tty") == \
        "\u2713 Created web function f => http://u"


# -- skiff run -----------------------------------------------------------------------

WEB_ONLY = """
    import skiff

    app = skiff.App("webonly")

    @app.function()
    @skiff.fastapi_endpoint()
    def hello():
        return "hi"
"""

WEB_AND_ENTRYPOINT = WEB_ONLY + """
    @app.local_entrypoint()
    def main():
        print("url:", hello.get_web_url())
"""


def _write(tmp_path: Any, name: str, code: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return str(path)


def _env(fake: Any) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=SDK, SKIFF_SERVER="unix:" + fake.socket_path)


def _run(fake: Any, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skiff._run", *args], env=_env(fake),
                          capture_output=True, text=True, timeout=60)


def test_skiff_run_needs_an_entrypoint_for_web_apps(fake: Any, tmp_path: Any) -> None:
    path = _write(tmp_path, "webonly.py", WEB_ONLY)
    r = _run(fake, path)
    assert r.returncode == 2
    assert "web endpoints (hello) but no local entrypoint" in r.stderr
    assert "skiff serve" in r.stderr
    r = _run(fake, f"{path}::hello")
    assert r.returncode == 2 and "hello is a web endpoint" in r.stderr
    assert "skiff serve" in r.stderr
    assert not fake.apps


def test_skiff_run_prints_the_urls(fake: Any, tmp_path: Any) -> None:
    path = _write(tmp_path, "webmain.py", WEB_AND_ENTRYPOINT)
    r = _run(fake, path)
    assert r.returncode == 0, r.stderr
    url = "http://127.0.0.1:8000/webonly/hello"
    assert f"skiff: web function hello => {url}\n" in r.stderr
    assert f"url: {url}" in r.stdout
    r = _run(fake, "--json", path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0]) == {"event": "web_function",
                                                    "function": "hello", "url": url}
    r = _run(fake, "-q", path)
    assert r.returncode == 0 and "web function" not in r.stderr


# -- skiff serve ---------------------------------------------------------------------


def _touch(path: str, content: str) -> None:
    """Rewrites a file with a clearly newer mtime (coarse clocks)."""
    st = os.stat(path)
    with open(path, "w") as f:
        f.write(content)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_watcher_sees_py_changes_only(tmp_path: Any) -> None:
    main = _write(tmp_path, "main.py", "x = 1\n")
    (tmp_path / "pkg").mkdir()
    lib = _write(tmp_path, "pkg/lib.py", "y = 1\n")
    for d in (".git", "__pycache__", ".venv", "node_modules"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "m.py").write_text("z = 1\n")
    notes = _write(tmp_path, "notes.txt", "hi\n")
    w = _serve.Watcher(main)
    assert w.root == str(tmp_path) and set(w.last) == {main, lib}
    assert w.poll() is None
    _touch(notes, "changed\n")
    _touch(str(tmp_path / ".git" / "m.py"), "z = 2\n")
    _touch(str(tmp_path / "__pycache__" / "m.py"), "z = 2\n")
    _touch(str(tmp_path / "node_modules" / "m.py"), "z = 2\n")
    assert w.poll() is None
    _touch(lib, "y = 2\n")
    assert w.poll() == lib
    assert w.poll() is None
    _touch(main, "x = 2\n")
    assert w.poll() == main
    new = _write(tmp_path, "pkg/new.py", "")
    assert w.poll() == new
    os.unlink(new)
    assert w.poll() == new
    _write(tmp_path, ".hidden.py", "")
    assert w.poll() is None


def test_first_change() -> None:
    assert _serve.first_change({"a": (1, 1)}, {"a": (1, 1)}) is None
    assert _serve.first_change({"a": (1, 1)}, {"a": (2, 1)}) == "a"
    assert _serve.first_change({"a": (1, 1)}, {"a": (1, 2)}) == "a"
    assert _serve.first_change({"b": (1, 1)}, {"a": (1, 1), "b": (1, 1)}) == "a"


def test_serve_argv() -> None:
    opts, ref = _serve.split_argv(["--timeout", "5", "--json", "f.py::app"])
    assert ref == "f.py::app" and opts["timeout"] == 5.0 and opts["json"]
    opts, ref = _serve.split_argv(["-q", "--timeout=2.5", "f.py"])
    assert opts["quiet"] and opts["timeout"] == 2.5
    for bad in ([], ["--timeout"], ["--timeout", "x", "f.py"], ["--nope", "f.py"],
                ["a.py", "b.py"]):
        with pytest.raises(_serve.UsageError):
            _serve.split_argv(bad)
    assert _serve.split_argv(["--help"])[0]["help"]


def _wait_for(cond: Callable[[], bool], p: subprocess.Popen, what: str, s: float = 30) -> None:
    deadline = time.monotonic() + s
    while not cond():
        if time.monotonic() > deadline or p.poll() is not None:
            p.kill()
            out, err = p.communicate()
            raise AssertionError(f"waiting for {what}: rc={p.returncode}\n{out}\n{err}")
        time.sleep(0.05)


def test_serve_reloads_on_change_and_stops_on_ctrl_c(fake: Any, tmp_path: Any) -> None:
    path = _write(tmp_path, "served.py", WEB_ONLY.replace("webonly", "served"))
    p = subprocess.Popen([sys.executable, "-m", "skiff._serve", path], env=_env(fake),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: len(fake.registrations) == 1, p, "the first registration")
    first = next(iter(fake.apps.values()))
    time.sleep(0.3)
    _touch(path, textwrap.dedent(WEB_ONLY.replace("webonly", "served")) + "# edited\n")
    _wait_for(lambda: len(fake.registrations) == 2, p, "the reload's registration")
    assert first.stopped  # the old app stopped before the new one registered
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert f"skiff: Reloading: {os.path.relpath(path)} changed" in err or \
        f"skiff: Reloading: {path} changed" in err
    assert err.count("skiff: web function hello => http://127.0.0.1:8000/served/hello") == 2
    assert all(a.stopped for a in fake.apps.values()) and len(fake.apps) == 2


def test_serve_waits_for_a_fix_after_a_broken_file(fake: Any, tmp_path: Any) -> None:
    good = textwrap.dedent(WEB_ONLY.replace("webonly", "fixme"))
    path = _write(tmp_path, "fixme.py", "import skiff\ndef broken(:\n")
    p = subprocess.Popen([sys.executable, "-m", "skiff._serve", "--json", "--timeout", "30",
                          path], env=_env(fake), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    assert not fake.registrations and p.poll() is None
    _touch(path, good)
    _wait_for(lambda: len(fake.registrations) == 1, p, "the registration after the fix")
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    events = [json.loads(x) for x in out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "serving" and "exited" in kinds and "reloading" in kinds
    assert {"event": "web_function", "function": "hello",
            "url": "http://127.0.0.1:8000/fixme/hello"} in events
    assert "SyntaxError" in err
    assert all(a.stopped for a in fake.apps.values())
