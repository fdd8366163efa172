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

input_id: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar(
    "skiff_input_id", default=None)
function_call_id: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar(
    "skiff_function_call_id", default=None)
