"""Issue 4 on the SDK's side, against the fake server (tests/python/fakeserver.py):
autoscaler options, @concurrent / @batched registration fields, stats and
update_autoscaler, and classes (@app.cls): parameters, one registration per
parameter set and per with_options variant, method calls of every kind."""

from __future__ import annotations

import base64
import pickle
import threading
from typing import Any, Iterator

import pytest

import skiff
from skiff.exception import ExecutionError, InvalidError

app = skiff.App("fake-cls", image=skiff.Image.debian_slim())

ENTERED: list[str] = []


@app.function(min_containers=1, max_containers=4, buffer_containers=2, scaledown_window=5,
              startup_timeout=30)
@skiff.concurrent(max_inputs=8, target_inputs=6)
def conc(x: int) -> int:
    return x + 1


@app.function()
@skiff.batched(max_batch_size=16, wait_ms=20)
def batch(xs: list[int]) -> list[int]:
    return [x * 10 for x in xs]


@app.function(gpu="A100-80GB:2")
def on_gpu() -> None:
    pass


@app.cls(cpu=2, memory=256, max_containers=3)
class Model:
    name: str = skiff.parameter()
    size: int = skiff.parameter(default=1)

    @skiff.enter()
    def load(self) -> None:
        ENTERED.append(self.name)
        self.table = {"a": 1, "b": 2}

    @skiff.method()
    def predict(self, x: int, bonus: int = 0) -> tuple[str, int]:
        return self.name, x * self.size + bonus + self.table.get(self.name, 0)

    @skiff.method()
    def stream(self, n: int) -> Iterator[int]:
        for i in range(n):
            yield i * self.size

    @skiff.method()
    def boom(self) -> None:
        raise KeyError(self.name)

    def helper(self) -> int:   # not a method: not callable remotely
        return 1


@app.cls(scaledown_window=10)
@skiff.concurrent(max_inputs=4)
class Plain:
    @skiff.method()
    def hello(self) -> str:
        return "hi"


def regs_named(fake: Any, prefix: str) -> list[dict[str, Any]]:
    return [r for r in fake.registrations if r["name"] == prefix or
            r["name"].startswith(prefix + "-")]


def test_function_registration_fields(fake: Any) -> None:
    with app.run(show_logs=False):
        pass
    regs = {r["name"]: r for r in fake.registrations}
    r = regs["conc"]
    assert (r["min_containers"], r["max_containers"], r["buffer_containers"],
            r["scaledown_window"]) == (1, 4, 2, 5)
    assert (r["max_inputs"], r["target_inputs"], r["batch"], r["cls"]) == (8, 6, None, None)
    assert r["enter_timeout"] == 30
    b = regs["batch"]
    assert b["batch"] == {"max_batch_size": 16, "wait_ms": 20} and b["max_inputs"] == 16
    assert (b["min_containers"], b["max_containers"], b["buffer_containers"],
            b["scaledown_window"]) == (0, None, 0, 60)
    assert regs["on_gpu"]["gpu"] == "A100-80GB:2" and b["gpu"] is None
    # A class without parameters has one pool, registered with the app.
    p = regs["Plain"]
    assert p["qualname"] == "Plain" and p["cls"]["qualname"] == "Plain"
    assert pickle.loads(base64.b64decode(p["cls"]["params"])) == {}
    assert p["max_inputs"] == 4 and p["scaledown_window"] == 10
    assert not regs_named(fake, "Model")   # parameterized: registered when used


def test_stats_and_update_autoscaler(fake: Any) -> None:
    with app.run(show_logs=False):
        assert conc.remote(1) == 2
        stats = conc.get_current_stats()
        assert isinstance(stats, skiff.FunctionStats)
        assert (stats.backlog, stats.num_total_runners, stats.cold_starts) == (0, 1, 1)
        assert stats.autoscaler["max_containers"] == 4
        conc.update_autoscaler(min_containers=2, scaledown_window=30)
        assert conc.get_current_stats().autoscaler == {
            "min_containers": 2, "max_containers": 4, "buffer_containers": 2,
            "scaledown_window": 30}
        assert ("POST", f"/v1/functions/{conc.object_id}/autoscaler") in fake.requests
        with pytest.raises(InvalidError, match="at least one"):
            conc.update_autoscaler()
        with pytest.raises(InvalidError, match="min_containers"):
            conc.update_autoscaler(min_containers=-1)
        with pytest.raises(InvalidError, match="scaledown_window"):
            conc.update_autoscaler(scaledown_window=1)
        Model(name="a").update_autoscaler(max_containers=7)
        assert Model(name="a").predict.get_current_stats().autoscaler["max_containers"] == 7
    with pytest.raises(ExecutionError, match="not running"):
        conc.get_current_stats()


def test_batched_called_with_single_values(fake: Any) -> None:
    with app.run(show_logs=False):
        assert batch.remote(3) == 30
        assert list(batch.map(range(5))) == [0, 10, 20, 30, 40]
    assert batch.local([1, 2]) == [10, 20]


def test_parameters_give_distinct_registrations(fake: Any) -> None:
    ENTERED.clear()
    with app.run(show_logs=False):
        a = Model(name="a")
        assert a.predict.remote(5) == ("a", 6)
        assert a.predict.remote(5, bonus=10) == ("a", 16)
        assert Model(name="a", size=1).predict.remote(1) == ("a", 2)   # same pool
        assert Model("b", 3).predict.remote(2) == ("b", 8)
        assert list(Model(name="b", size=3).predict.map([1, 2, 3])) == [("b", 5), ("b", 8),
                                                                         ("b", 11)]
        assert list(a.predict.starmap([(1, 100)])) == [("a", 102)]
        assert a.predict.spawn(2).get() == ("a", 3)
        assert list(Model(name="c", size=2).stream.remote_gen(3)) == [0, 2, 4]
        with pytest.raises(KeyError, match="'a'"):
            a.boom.remote()
    regs = regs_named(fake, "Model")
    assert len(regs) == 3, [r["name"] for r in regs]
    names = {r["name"] for r in regs}
    assert all(n.startswith("Model-") for n in names)
    params = sorted((pickle.loads(base64.b64decode(r["cls"]["params"])) for r in regs),
                    key=lambda d: d["name"])
    assert params == [{"name": "a", "size": 1}, {"name": "b", "size": 3},
                      {"name": "c", "size": 2}]
    r = regs[0]
    assert r["qualname"] == "Model" and r["cls"]["qualname"] == "Model"
    assert (r["cpu"], r["memory"], r["max_containers"]) == (2.0, 256, 3)
    assert r["max_inputs"] == 1 and r["is_generator"] is False
    assert sorted(ENTERED) == ["a", "b", "c"]      # one instance per pool
    # A second run of the app registers again (the first run's ids are gone).
    with app.run(show_logs=False):
        assert Model(name="a").predict.remote(0) == ("a", 1)
    assert len(regs_named(fake, "Model")) == 4


def test_with_options_is_its_own_pool(fake: Any) -> None:
    Big = Model.with_options(cpu=4, memory=1024, max_containers=1, scaledown_window=3)
    Conc = Big.with_concurrency(max_inputs=5)
    with app.run(show_logs=False):
        assert Model(name="a").predict.remote(1) == ("a", 2)
        assert Big(name="a").predict.remote(1) == ("a", 2)
        assert Conc(name="a").predict.remote(1) == ("a", 2)
        assert Big(name="a").predict.remote(2) == ("a", 3)
    regs = regs_named(fake, "Model")
    assert len(regs) == 3 and len({r["name"] for r in regs}) == 3
    base, big, conc_ = regs
    assert (base["cpu"], base["memory"], base["max_containers"]) == (2.0, 256, 3)
    assert (big["cpu"], big["memory"], big["max_containers"], big["scaledown_window"]) == (
        4.0, 1024, 1, 3)
    assert (conc_["cpu"], conc_["max_inputs"]) == (4.0, 5)
    assert Model.spec.cpu == 2.0    # the original class is unchanged


def test_local_calls_run_enter_once() -> None:
    ENTERED.clear()
    m = Model(name="b", size=2)
    assert m.predict.local(3) == ("b", 8)
    assert m.predict.local(4) == ("b", 10)
    assert list(m.stream.local(2)) == [0, 2]
    assert ENTERED == ["b"]


def test_instance_and_declaration_errors() -> None:
    with pytest.raises(InvalidError, match="missing the parameter 'name'"):
        Model()
    with pytest.raises(InvalidError, match="unexpected parameter 'nam'"):
        Model(nam="x")
    with pytest.raises(InvalidError, match="'size' must be int, got str"):
        Model(name="x", size="2")
    with pytest.raises(AttributeError, match="no method 'helper'"):
        Model(name="x").helper
    with pytest.raises(AttributeError, match="make an instance first"):
        Model.predict
    with pytest.raises(ExecutionError, match="not running"):
        Model(name="x").predict.remote(1)
    with pytest.raises(InvalidError, match="parameters by name"):
        skiff.Cls.from_name("other-app", "Model")("x")
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Model(name="x").predict)

    other = skiff.App("decl")
    with pytest.raises(InvalidError, match="defines __init__"):
        @other.cls()
        class WithInit:
            def __init__(self) -> None:
                pass
    with pytest.raises(InvalidError, match="goes on the class"):
        @other.cls()
        class ConcMethod:
            @skiff.concurrent(max_inputs=2)
            @skiff.method()
            def f(self) -> None:
                pass
    with pytest.raises(InvalidError, match="may not have other methods"):
        @other.cls()
        class TwoWithBatch:
            @skiff.batched(max_batch_size=2, wait_ms=1)
            def f(self, xs: list[int]) -> list[int]:
                return xs

            @skiff.method()
            def g(self) -> None:
                pass
    with pytest.raises(InvalidError, match="under @app.function"):
        @skiff.concurrent(max_inputs=2)
        @other.function(serialized=True)
        def wrong_order() -> None:
            pass
    with pytest.raises(InvalidError, match="do not go together"):
        @other.function(serialized=True)
        @skiff.concurrent(max_inputs=2)
        @skiff.batched(max_batch_size=2, wait_ms=1)
        def both(xs: list[int]) -> list[int]:
            return xs
    with pytest.raises(InvalidError, match="needs max_inputs"):
        skiff.concurrent()
    with pytest.raises(InvalidError, match="target_inputs"):
        skiff.concurrent(max_inputs=2, target_inputs=3)
    with pytest.raises(InvalidError, match="max_batch_size"):
        skiff.batched(max_batch_size=0, wait_ms=1)
    with pytest.raises(InvalidError, match="generator"):
        skiff.batched(max_batch_size=2, wait_ms=1)(lambda xs: (yield xs))
    with pytest.raises(InvalidError, match="\\*args"):
        skiff.batched(max_batch_size=2, wait_ms=1)(lambda *xs: xs)
    with pytest.raises(InvalidError, match="min_containers .* more than max_containers"):
        other.function(min_containers=3, max_containers=2)
    with pytest.raises(InvalidError, match="scaledown_window"):
        other.function(scaledown_window=1)
    with pytest.raises(InvalidError, match="gpu"):
        other.function(gpu=["A100", "H100"])
    with pytest.raises(InvalidError, match="@app.cls"):
        other.function()(Model.get_user_cls())
    assert "decl" not in [c.name for c in app.registered_classes.values()]
    assert set(app.registered_classes) == {"Model", "Plain"}


def test_concurrent_calls_register_a_pool_once(fake: Any) -> None:
    with app.run(show_logs=False):
        m = Model(name="z")
        results: list[Any] = []
        threads = [threading.Thread(target=lambda: results.append(m.predict.remote(1)))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [("z", 1)] * 8
    assert len([r for r in regs_named(fake, "Model")
                if pickle.loads(base64.b64decode(r["cls"]["params"]))["name"] == "z"]) == 1
