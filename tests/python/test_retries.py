"""Retry policies (sdk/python/skiff/retries.py), as Modal's modal.Retries."""

from __future__ import annotations

import pytest

import skiff
from skiff.exception import InvalidError
from skiff.retries import Retries, normalize


def test_int_means_fixed_one_second_delay() -> None:
    r = normalize(3)
    assert r == Retries(max_retries=3, backoff_coefficient=1.0, initial_delay=1.0)
    assert [r.delay(k) for k in (1, 2, 3)] == [1.0, 1.0, 1.0]


def test_none_and_zero_mean_no_retries() -> None:
    assert normalize(None) is None
    assert normalize(0) is None


def test_policy_passes_through_and_serializes() -> None:
    r = skiff.Retries(max_retries=2, initial_delay=0.1)
    assert normalize(r) is r
    assert r.to_json() == {"max_retries": 2, "backoff_coefficient": 2.0,
                           "initial_delay": 0.1, "max_delay": 60.0}
    assert [r.delay(k) for k in (1, 2, 3)] == pytest.approx([0.1, 0.2, 0.4])
    assert Retries(10, initial_delay=30, max_delay=50).delay(3) == 50


@pytest.mark.parametrize("kwargs,match", [
    ({"max_retries": -1}, "max_retries"),
    ({"max_retries": 11}, "max_retries"),
    ({"max_retries": 1.5}, "max_retries"),
    ({"max_retries": 1, "backoff_coefficient": 0.5}, "backoff_coefficient"),
    ({"max_retries": 1, "initial_delay": 61}, "initial_delay"),
    ({"max_retries": 1, "max_delay": 0.5}, "max_delay"),
])
def test_bad_policies(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidError, match=match):
        Retries(**kwargs)


def test_bad_retries_argument() -> None:
    with pytest.raises(InvalidError):
        normalize("3")  # type: ignore[arg-type]
    with pytest.raises(InvalidError):
        normalize(True)  # type: ignore[arg-type]
