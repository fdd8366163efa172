"""Skiff: self-hosted serverless containers with Modal's Python API.

    import skiff
    sb = skiff.Sandbox.create("echo", "hello")
    sb.wait()
    print(sb.stdout.read())

The SDK talks to a ``skiff server`` (see ``SKIFF_SERVER``; one is started in
the background when none answers on the default socket).
"""

from . import exception
from ._stream import StreamReader, StreamWriter
from .app import App
from .image import Image
from .sandbox import ContainerProcess, Sandbox
from .secret import Secret

__version__ = "0.1.0"

__all__ = [
    "App",
    "ContainerProcess",
    "Image",
    "Sandbox",
    "Secret",
    "StreamReader",
    "StreamWriter",
    "exception",
    "__version__",
]
