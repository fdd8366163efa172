"""The SDK's function calls against the fake server (tests/python/fakeserver.py):
the wire side of .remote, .spawn, .map, .remote_gen, app.run(), logs."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
from contextlib import redirect_stdout
from typing import Any, Iterator

import pytest

import skiff
from skiff import _payload
from skiff.exception import ExecutionError, InputCancellation, InvalidError

app = skiff.App("fake-demo", secrets=[skiff.Secret.from_dict({"S": "secret"})])


@app.function(cpu=1, memory=512, timeout=60, retries=skiff.Retries(max_retries=2, initial_delay=0.1),
              env={"E": "1"})
def square(x: int) -> int:
    return x * x


class Custom(Exception):
    pass


@app.function()
def fail_on(x: int, bad: int = 3) -> int:
    if x == bad:
        raise Custom(f"input {x} is bad")
    return x


@app.function()
def slow(x: float) -> float:
    time.sleep(x)
    return x


@app.function()
def add(a: int, b: int, c: int = 0) -> int:
    return a + b + c


@app.function()
def count(n: int) -> Iterator[int]:
    for i in range(n):
        yield i
        time.sleep(0.01)


@app.function()
def gen_fails(n: int) -> Iterator[int]:
    yield 1
    raise ValueError("generator broke")


_flaky_calls = {"n": 0}


@app.function(retries=2)
def flaky() -> str:
    _flaky_calls["n"] += 1
    if _flaky_calls["n"] < 3:
        raise RuntimeError("not yet")
    return "third time"


def test_unhydrated_remote_says_how_to_run() -> None:
    with pytest.raises(ExecutionError, match="skiff run"):
        square.remote(2)
    assert square.local(3) == 9


def test_registration(fake: Any) -> None:
    with app.run(show_logs=False):
        assert square.object_id and square.object_id.startswith("fu-")
    regs = {r["name"]: r for r in fake.registrations}
    r = regs["square"]
    assert r["module"] == __name__ and r["qualname"] == "square"
    assert r["file"] == os.path.abspath(__file__)
    assert r["mount_dir"] == os.path.dirname(os.path.abspath(__file__))
    assert os.path.isfile(os.path.join(r["sdk_dir"], "skiff", "__init__.py"))
    assert r["image_id"] == "im-fake" and r["cpu"] == 1.0 and r["memory"] == 512
    assert r["timeout"] == 60 and r["env"] == {"S": "secret", "E": "1"}
    assert r["retries"]["max_retries"] == 2 and r["retries"]["initial_delay"] == 0.1
    assert r["is_generator"] is False and regs["count"]["is_generator"] is True
    assert r["serialized"] is False and r["pickled_function"] is None
    if _payload.HAVE_CLOUDPICKLE:
        assert r["extra_dirs"] and r["extra_dirs"][0].endswith("cloudpickle")
    assert square.object_id is None  # forgotten once the app stopped
    assert ("POST", f"/v1/apps/{fake.registrations[0]['app_id']}/stop") in fake.requests


def test_remote_and_errors(fake: Any) -> None:
    with app.run(show_logs=False):
        assert square.remote(7) == 49
        assert add.remote(1, 2, c=3) == 6
        with pytest.raises(Custom, match="input 3 is bad") as ei:
            fail_on.remote(3)
        assert isinstance(ei.value.__cause__, skiff.exception.RemoteTraceback)
        assert "fail_on" in ei.value.__cause__.tb
        with pytest.raises(InvalidError, match="'x' \\(position 0\\)"):
            square.remote(threading.Lock())
        assert flaky.remote() == "third time"
        with pytest.raises(InvalidError, match="remote_gen"):
            count.remote(3)


def test_remote_aio(fake: Any) -> None:
    async def go() -> list[int]:
        return list(await asyncio.gather(*(square.remote.aio(i) for i in range(5))))

    with app.run(show_logs=False):
        assert asyncio.run(go()) == [0, 1, 4, 9, 16]


def test_map_in_order_and_unordered(fake: Any) -> None:
    with app.run(show_logs=False):
        assert list(square.map(range(2000))) == [i * i for i in range(2000)]
        assert sorted(square.map(range(500), order_outputs=False)) == [i * i for i in range(500)]
        assert list(add.map([1, 2], [10, 20, 30], kwargs={"c": 100})) == [111, 122]
        assert list(add.starmap([(1, 2), (3, 4)])) == [3, 7]
        assert list(square.map([])) == []
        # Outputs come back in input order even when later inputs finish first.
        assert list(slow.map([0.3, 0.0, 0.1])) == [0.3, 0.0, 0.1]


def test_map_is_lazy(fake: Any) -> None:
    with app.run(show_logs=False):
        n = len(fake.calls)
        gen = square.map(range(3))
        assert len(fake.calls) == n
        assert next(gen) == 0
        gen.close()


def test_map_exceptions(fake: Any) -> None:
    with app.run(show_logs=False):
        out = list(fail_on.map(range(6), return_exceptions=True))
        assert out[:3] == [0, 1, 2] and out[4:] == [4, 5]
        assert isinstance(out[3], Custom)
        got = []
        with pytest.raises(Custom):
            for v in fail_on.map(range(6)):
                got.append(v)
        assert got == [0, 1, 2]
        fail_on.for_each(range(6), ignore_exceptions=True)
        with pytest.raises(Custom):
            fail_on.for_each(range(6))


def test_map_unpicklable_input_fails_before_sending(fake: Any) -> None:
    with app.run(show_logs=False):
        n = len(fake.calls)
        with pytest.raises(InvalidError, match="input 0"):
            list(square.map([threading.Lock()]))
        assert len(fake.calls) == n  # no map call was made
        with pytest.raises(InvalidError, match="input 2"):
            list(square.map([1, 2, threading.Lock()]))


def test_map_iterator_error_reaches_the_consumer(fake: Any) -> None:
    def inputs() -> Iterator[int]:
        yield 1
        yield 2
        raise KeyError("iterator broke")

    with app.run(show_logs=False):
        with pytest.raises(KeyError, match="iterator broke"):
            list(square.map(inputs()))


def test_map_aio_and_spawn_map(fake: Any) -> None:
    async def go() -> list[int]:
        return [x async for x in square.map.aio(range(50))]

    with app.run(show_logs=False):
        assert asyncio.run(go()) == [i * i for i in range(50)]
        assert square.spawn_map(range(10)) is None


def test_spawn_get_gather_cancel(fake: Any) -> None:
    with app.run(show_logs=False):
        call = square.spawn(6)
        assert call.object_id.startswith("fc-")
        assert call.get() == 36
        again = skiff.FunctionCall.from_id(call.object_id)
        assert again.get(timeout=1) == 36
        assert skiff.FunctionCall.gather(square.spawn(2), add.spawn(1, 1)) == [4, 2]
        with pytest.raises(Custom):
            skiff.FunctionCall.gather(square.spawn(2), fail_on.spawn(3))
        s = slow.spawn(1.0)
        with pytest.raises(TimeoutError):
            s.get(timeout=0.1)
        s.cancel()
        with pytest.raises(InputCancellation):
            s.get()
        assert asyncio.run(square.spawn(5).get.aio()) == 25


def test_remote_gen(fake: Any) -> None:
    with app.run(show_logs=False):
        assert list(count.remote_gen(5)) == [0, 1, 2, 3, 4]
        got = []
        with pytest.raises(ValueError, match="generator broke"):
            for x in gen_fails.remote_gen(1):
                got.append(x)
        assert got == [1]
        with pytest.raises(InvalidError, match="not a generator"):
            list(square.remote_gen(1))

        async def go() -> list[int]:
            return [x async for x in count.remote_gen.aio(3)]

        assert asyncio.run(go()) == [0, 1, 2]


def test_logs_are_printed_with_function_and_container(fake: Any) -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        with app.run():
            list(square.map(range(4)))
    text = out.getvalue()
    assert "[square] ran input 0" in text
    assert "[square ct-0001] ran input" in text or "[square ct-0000] ran input" in text


def test_heartbeats(fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from skiff import _app_run

    monkeypatch.setattr(_app_run, "HEARTBEAT_S", 0.05)
    with app.run(show_logs=False):
        time.sleep(0.3)
    (a,) = fake.apps.values()
    assert a.heartbeats >= 2 and a.stopped


def test_detach_leaves_the_app_running(fake: Any) -> None:
    with app.run(detach=True, show_logs=False):
        pass
    (a,) = fake.apps.values()
    assert a.detach and not a.stopped


def test_app_is_stopped_on_exceptions(fake: Any) -> None:
    with pytest.raises(KeyboardInterrupt):
        with app.run(show_logs=False):
            raise KeyboardInterrupt
    (a,) = fake.apps.values()
    assert a.stopped


def test_calls_from_inside_a_container(fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with app.run(detach=True, show_logs=False) as running:
        app_id = running.app_id
    monkeypatch.setenv("SKIFF_CONTAINER_ID", "ct-0000000000000001")
    monkeypatch.setenv("SKIFF_APP_ID", app_id)
    assert skiff.is_local() is False
    assert square.remote(4) == 16
    square._dehydrate()
