"""Unit tests of the Python SDK's client side: no server, no containers.

Tests that need a server talk to tests/python/fakeserver.py, an in-process
stand-in for the apps-and-functions API on a unix socket.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any, Iterator

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.join(os.path.dirname(os.path.dirname(HERE)), "sdk", "python")
if SDK not in sys.path:
    sys.path.insert(0, SDK)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import fakeserver  # noqa: E402
from skiff import _client  # noqa: E402


@pytest.fixture
def fake() -> Iterator[Any]:
    """A fake server; the SDK's module-level client points at it."""
    with tempfile.TemporaryDirectory(prefix="skiff-fake-") as d:
        path = os.path.join(d, "skiff.sock")
        server, srv = fakeserver.start(path)
        client = _client.Client("unix:" + path)
        _client.set_client(client)
        server.socket_path = path
        try:
            yield server
        finally:
            _client.set_client(None)
            srv.shutdown()
            srv.server_close()
