"""Blocking methods with an ``.aio`` twin, as Modal's API has them:

    result = f.remote(x)              # blocks
    result = await f.remote.aio(x)    # same call, awaitable
    async for r in f.map.aio(xs): ... # an async generator

The SDK is written blocking (its I/O is plain sockets); the ``.aio`` forms
run the blocking call on a worker thread (``asyncio.to_thread``) so that the
event loop stays free.  Generators hop to a thread once per batch of items,
not once per item, where the blocking side offers batches.
"""

from __future__ import annotations

import functools
from typing import Any, AsyncIterator, Callable, Generic, Iterator, Optional, TypeVar

R = TypeVar("R")

_DONE = object()


async def to_thread(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    import asyncio  # here, not at import: it costs ~10 ms and containers seldom need it
    return await asyncio.to_thread(fn, *args, **kwargs)


async def iterate_in_thread(it: Iterator[Any]) -> AsyncIterator[Any]:
    """An async generator over a blocking iterator, each ``next`` on a thread.
    Closing it early closes the iterator (on a thread too)."""
    try:
        while True:
            import asyncio
            item = await asyncio.to_thread(next, it, _DONE)
            if item is _DONE:
                return
            yield item
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            try:
                import asyncio
                await asyncio.to_thread(close)
            except ValueError:  # still running on a thread we gave up on
                pass


async def flatten_batches_in_thread(batches: Iterator[list[Any]]) -> AsyncIterator[Any]:
    """An async generator over the items of a blocking iterator of lists."""
    async for batch in iterate_in_thread(batches):
        for item in batch:
            yield item


class BoundMethod(Generic[R]):
    """``obj.meth`` for a method declared with ``aio_method``: callable, with
    an ``aio`` attribute."""

    __slots__ = ("_call", "aio", "__wrapped__")

    def __init__(self, call: Callable[..., R], aio: Callable[..., Any]) -> None:
        self._call = call
        self.aio = aio
        self.__wrapped__ = call

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        return self._call(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<method {getattr(self._call, '__qualname__', self._call)!r} with .aio>"


class aio_method(Generic[R]):
    """Declares a blocking method whose ``.aio`` form is ``aio_impl`` (a method
    returning an awaitable or an async iterator), or by default the blocking
    method run with ``asyncio.to_thread``.  The bound form is cached on the
    instance, so calls after the first cost one attribute lookup."""

    def __init__(self, fn: Callable[..., R],
                 aio_impl: Optional[Callable[..., Any]] = None) -> None:
        self._fn = fn
        self._aio_impl = aio_impl
        self._name = fn.__name__
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def aio(self, impl: Callable[..., Any]) -> "aio_method[R]":
        """Decorator: sets the ``.aio`` implementation."""
        self._aio_impl = impl
        return self

    def __get__(self, obj: Any, owner: Optional[type] = None) -> Any:
        if obj is None:
            return self
        call = self._fn.__get__(obj, owner)
        if self._aio_impl is not None:
            aio = self._aio_impl.__get__(obj, owner)
        else:
            async def aio(*args: Any, **kwargs: Any) -> Any:
                import asyncio
                return await asyncio.to_thread(call, *args, **kwargs)
        bound = BoundMethod(call, aio)
        try:
            obj.__dict__[self._name] = bound
        except AttributeError:  # no __dict__ (slots): no caching
            pass
        return bound
