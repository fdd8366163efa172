"""Exceptions raised by the Skiff SDK, named as in Modal's ``modal.exception``.

Every error the server answers (``{"error": {"code", "message"}}``) arrives as
one of these, chosen by its ``code``; ``message`` is the server's own words.
"""

from __future__ import annotations

import builtins
from typing import Optional


class Error(Exception):
    """Base class of every Skiff error.

    ``code`` is the server's error code (``"invalid_argument"``, ...) when the
    error came from the server, else ``None``; ``status`` the HTTP status.
    """

    code: Optional[str]
    status: Optional[int]

    def __init__(self, message: str = "", *, code: Optional[str] = None,
                 status: Optional[int] = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class InvalidError(Error):
    """A bad argument: a wrong type or value, or something this server can't do."""


class NotFoundError(Error):
    """The object (image, app, sandbox, process) does not exist."""


class ConflictError(Error):
    """The object is in the wrong state for the call (e.g. the sandbox has exited)."""


class ResourceExhaustedError(Error):
    """Asked for more than the machine has (CPU, memory)."""


class OutOfMemoryError(ResourceExhaustedError):
    """A sandbox or function was killed because it used more than its ``memory=`` limit."""


class ServerError(Error):
    """The server failed (``internal``) or can't serve right now (``unavailable``)."""


class ConnectionError(Error, builtins.ConnectionError):
    """No Skiff server answers where ``SKIFF_SERVER`` points (or it could not be started)."""


class ExecutionError(Error):
    """Something failed while running the user's code."""


class SandboxTimeoutError(Error):
    """The sandbox ran past its ``timeout=`` and was killed."""


class SandboxTerminatedError(Error):
    """The sandbox was terminated (``Sandbox.terminate()``, ``skiff container stop``)."""


class FunctionTimeoutError(Error):
    """A function call ran past its ``timeout=``."""


_BY_CODE: dict[str, type[Error]] = {
    "invalid_argument": InvalidError,
    "not_found": NotFoundError,
    "conflict": ConflictError,
    "resource_exhausted": ResourceExhaustedError,
    "unavailable": ServerError,
    "internal": ServerError,
}


def from_code(code: str, message: str, status: Optional[int] = None) -> Error:
    """The exception for a server error ``code`` (unknown codes give ``ServerError``)."""
    cls = _BY_CODE.get(code, ServerError)
    return cls(message, code=code, status=status)


__all__ = [
    "Error",
    "InvalidError",
    "NotFoundError",
    "ConflictError",
    "ResourceExhaustedError",
    "OutOfMemoryError",
    "ServerError",
    "ConnectionError",
    "ExecutionError",
    "SandboxTimeoutError",
    "SandboxTerminatedError",
    "FunctionTimeoutError",
    "from_code",
]
