"""Skiff: self-hosted serverless containers with Modal's Python API.

    import skiff

    app = skiff.App("demo")

    @app.function()
    def square(x): return x * x

    @app.local_entrypoint()
    def main(n: int = 10):
        print(sum(square.map(range(n))))

Run it with ``skiff run demo.py --n 100``.  Sandboxes work without an app:

    sb = skiff.Sandbox.create("echo", "hello")
    sb.wait()
    print(sb.stdout.read())

The SDK talks to a ``skiff server`` (see ``SKIFF_SERVER``; one is started in
the background when none answers on the default socket).
"""

import os as _os
from typing import Optional as _Optional

from . import _context, exception
from ._stream import StreamReader, StreamWriter
from .app import App, LocalEntrypoint
from .cls import Cls, parameter
from .functions import Function, FunctionCall, FunctionStats
from .image import Image
from .partial_function import (asgi_app, batched, concurrent, enter, exit, fastapi_endpoint,
                               method, web_endpoint, web_server, wsgi_app)
from .retries import Retries
from .schedule import Cron, Period
from .sandbox import ContainerProcess, Sandbox
from .secret import Secret

__version__ = "0.1.0"


def is_local() -> bool:
    """False inside a Skiff container, True everywhere else."""
    return not _os.environ.get("SKIFF_CONTAINER_ID")


def current_input_id() -> _Optional[str]:
    """The id of the input this container is running (``in-<fc>-<idx>``), or None."""
    return _context.current_input_id()


def current_function_call_id() -> _Optional[str]:
    """The id of the function call whose input this container is running, or None."""
    return _context.function_call_id.get()


__all__ = [
    "App",
    "Cls",
    "Cron",
    "Period",
    "ContainerProcess",
    "Function",
    "FunctionCall",
    "FunctionStats",
    "Image",
    "LocalEntrypoint",
    "Retries",
    "Sandbox",
    "Secret",
    "StreamReader",
    "StreamWriter",
    "asgi_app",
    "batched",
    "concurrent",
    "current_function_call_id",
    "current_input_id",
    "enter",
    "exception",
    "exit",
    "fastapi_endpoint",
    "is_local",
    "method",
    "parameter",
    "web_endpoint",
    "web_server",
    "wsgi_app",
    "__version__",
]
