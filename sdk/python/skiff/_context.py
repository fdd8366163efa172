"""What the container runtime tells user code about the input it is running.

The container runtime (``skiff._container``) sets these around each input:

    token_i = _context.input_id.set("in-fc-...-7")
    token_c = _context.function_call_id.set("fc-...")
    try:
        run the input
    finally:
        _context.input_id.reset(token_i)
        _context.function_call_id.reset(token_c)

and ``skiff.current_input_id()`` / ``skiff.current_function_call_id()`` read
them.  They are context variables, so inputs run concurrently (threads or
asyncio tasks of one container) each see their own.  Outside an input (and
outside containers) both are None.
"""

from __future__ import annotations

import contextvars
from typing import Optional

class InputRef:
    """The input a batch loop is running: the runtime sets the context
    variable once per chunk instead of building an id string per input, and
    ``skiff.current_input_id()`` turns it into one.  The index is ``idx``, or
    while ``results`` is set, ``base + len(results)``: the batch loop runs
    ``results.extend(map(f, xs))``, so the input running is the one after the
    results so far."""

    __slots__ = ("prefix", "idx", "base", "results")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.idx = 0
        self.base = 0
        self.results: Optional[list] = None

    def position(self) -> int:
        r = self.results
        return self.idx if r is None else self.base + len(r)

    def __str__(self) -> str:
        return f"{self.prefix}{self.position()}"


def current_input_id() -> Optional[str]:
    v = input_id.get()
    return None if v is None else str(v)


input_id: contextvars.ContextVar = contextvars.ContextVar(
    "skiff_input_id", default=None)
function_call_id: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar(
    "skiff_function_call_id", default=None)
