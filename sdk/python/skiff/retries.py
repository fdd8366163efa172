"""Retry policies for functions, as Modal's ``modal.Retries``.

The server applies them (docs/api.md): an input that fails (a user exception
or a timeout) runs again after ``initial_delay * backoff_coefficient**k``
seconds (k = 0, 1, ...), capped at ``max_delay``, at most ``max_retries``
times; then its last failure is the result.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from .exception import InvalidError

# Modal's limits.
MAX_RETRIES = 10
MAX_BACKOFF_COEFFICIENT = 10.0
MAX_DELAY = 60.0


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidError(f"Retries: {name} must be a number, got {value!r}")
    return float(value)


class Retries:
    """A retry policy: ``Retries(max_retries=2, backoff_coefficient=2.0,
    initial_delay=1.0, max_delay=60.0)``."""

    __slots__ = ("max_retries", "backoff_coefficient", "initial_delay", "max_delay")

    def __init__(self, max_retries: int, *, backoff_coefficient: float = 2.0,
                 initial_delay: float = 1.0, max_delay: float = 60.0) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int):
            raise InvalidError(f"Retries: max_retries must be an int, got {max_retries!r}")
        if not 0 <= max_retries <= MAX_RETRIES:
            raise InvalidError(
                f"Retries: max_retries must be between 0 and {MAX_RETRIES}, got {max_retries}")
        coeff = _number("backoff_coefficient", backoff_coefficient)
        if not 1.0 <= coeff <= MAX_BACKOFF_COEFFICIENT:
            raise InvalidError(
                f"Retries: backoff_coefficient must be between 1.0 and "
                f"{MAX_BACKOFF_COEFFICIENT:g}, got {coeff:g}")
        initial = _number("initial_delay", initial_delay)
        if not 0.0 <= initial <= MAX_DELAY:
            raise InvalidError(
                f"Retries: initial_delay must be between 0 and {MAX_DELAY:g} seconds, "
                f"got {initial:g}")
        cap = _number("max_delay", max_delay)
        if not 1.0 <= cap <= MAX_DELAY:
            raise InvalidError(
                f"Retries: max_delay must be between 1 and {MAX_DELAY:g} seconds, got {cap:g}")
        self.max_retries = max_retries
        self.backoff_coefficient = coeff
        self.initial_delay = initial
        self.max_delay = cap

    def __repr__(self) -> str:
        return (f"Retries(max_retries={self.max_retries}, "
                f"backoff_coefficient={self.backoff_coefficient:g}, "
                f"initial_delay={self.initial_delay:g}, max_delay={self.max_delay:g})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Retries):
            return NotImplemented
        return self.to_json() == other.to_json()

    def delay(self, attempt: int) -> float:
        """Seconds before retry number ``attempt`` (1 for the first retry)."""
        return min(self.initial_delay * self.backoff_coefficient ** max(attempt - 1, 0),
                   self.max_delay)

    def to_json(self) -> dict[str, Any]:
        """The ``retries`` object of ``POST /v1/functions``."""
        return {"max_retries": self.max_retries,
                "backoff_coefficient": self.backoff_coefficient,
                "initial_delay": self.initial_delay,
                "max_delay": self.max_delay}


def normalize(retries: Union[None, int, Retries]) -> Optional[Retries]:
    """``retries=`` of ``@app.function`` as a policy.  An int N means N retries
    one second apart (Modal: ``Retries(max_retries=N, backoff_coefficient=1.0,
    initial_delay=1.0)``); None or 0 means none."""
    if retries is None:
        return None
    if isinstance(retries, Retries):
        return retries
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise InvalidError(
            f"retries must be an int or a skiff.Retries, got {type(retries).__name__}")
    if retries == 0:
        return None
    return Retries(max_retries=retries, backoff_coefficient=1.0, initial_delay=1.0)
