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


class TimeoutError(Error, builtins.TimeoutError):
    """Base class of Skiff's timeouts.  Also a builtin ``TimeoutError``, so
    ``FunctionCall.get(timeout=...)`` can be caught either way."""


class SandboxTimeoutError(TimeoutError):
    """The sandbox ran past its ``timeout=`` and was killed."""


class SandboxTerminatedError(Error):
    """The sandbox was terminated (``Sandbox.terminate()``, ``skiff container stop``)."""


class FunctionTimeoutError(TimeoutError):
    """A function call ran past its ``timeout=``."""


class OutputExpiredError(TimeoutError):
    """The result of a function call is no longer kept by the server."""


class RemoteError(Error):
    """A remote exception that could not be re-created here (its type can't be
    unpickled locally), or a failure of the remote side without a better class.
    The message carries the remote type name and message; ``remote_traceback``
    the remote traceback text when there is one."""

    remote_traceback: Optional[str] = None


class SerializationError(InvalidError):
    """A value could not be pickled: an argument here (refused before it is
    sent), or a result or exception in the container."""


class DeserializationError(Error):
    """A value sent by the other side could not be unpickled."""


class InternalFailure(Error):
    """The platform failed in a way that is not the user's code's fault."""


class AuthError(Error):
    """The server refused the client's credentials (``SKIFF_TOKEN``)."""


class AlreadyExistsError(Error):
    """The object to create exists already."""


class VersionError(Error):
    """The client and the server do not speak the same version."""


class DeprecationError(UserWarning):
    """A warning about a deprecated feature (as ``modal.exception.DeprecationError``)."""


class PendingDeprecationError(UserWarning):
    """A warning about a feature that will be deprecated."""


class InputCancellation(BaseException):
    """The input was cancelled (``FunctionCall.cancel()``, or its map ended).

    A BaseException, as in Modal, so that ``except Exception`` in user code
    running the input does not swallow the cancellation; a caller that gets a
    cancelled call's result sees it too."""


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
    "TimeoutError",
    "SandboxTimeoutError",
    "SandboxTerminatedError",
    "FunctionTimeoutError",
    "OutputExpiredError",
    "RemoteError",
    "SerializationError",
    "DeserializationError",
    "InternalFailure",
    "AuthError",
    "AlreadyExistsError",
    "VersionError",
    "DeprecationError",
    "PendingDeprecationError",
    "InputCancellation",
    "RemoteTraceback",
    "from_code",
]


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a container, as text.

    A re-raised remote exception has one of these as its ``__cause__`` (as
    ``concurrent.futures`` does for process pools), so that Python shows the
    remote traceback above the local one."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return '\n"""\n' + self.tb.rstrip("\n") + '\n"""'
