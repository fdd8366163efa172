"""Secrets: environment variables handed to containers, as in Modal.

``Secret.from_dict({"API_KEY": "..."})`` keeps the values in this process only
until a container is started: they are merged into the env sent to the server
(which never logs them).  Values never appear in ``repr()`` or error messages.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional

from .exception import InvalidError


class Secret:
    """A set of environment variables for containers."""

    __slots__ = ("_env",)

    def __init__(self, env: Mapping[str, str]) -> None:
        # Users make secrets with Secret.from_dict().
        self._env = dict(env)

    @staticmethod
    def from_dict(env_dict: Mapping[str, Optional[str]] = {}) -> "Secret":  # noqa: B006
        """A secret from a dict of str to str; keys whose value is None are left out."""
        if not isinstance(env_dict, Mapping):
            raise InvalidError(
                f"Secret.from_dict takes a dict of str to str, got {type(env_dict).__name__}")
        env: dict[str, str] = {}
        for key, value in env_dict.items():
            if not isinstance(key, str) or not key:
                raise InvalidError(f"Secret.from_dict: keys must be non-empty str, got {key!r}")
            if "=" in key or "\0" in key:
                raise InvalidError(f"Secret.from_dict: {key!r} is not a valid variable name")
            if value is None:
                continue
            if not isinstance(value, str):
                # The value itself stays out of the message: it is a secret.
                raise InvalidError(
                    f"Secret.from_dict: the value of {key!r} must be a str, "
                    f"got {type(value).__name__}")
            env[key] = value
        return Secret(env)

    def keys(self) -> list[str]:
        """The variable names (not the values)."""
        return sorted(self._env)

    def __repr__(self) -> str:
        return f"<Secret keys={self.keys()!r}>"


def merge_env(secrets: Optional[Iterable[Secret]],
              env: Optional[Mapping[str, Optional[str]]],
              what: str = "env") -> dict[str, str]:
    """The env for a container: every secret in order, then ``env`` on top
    (later wins).  Checks types for a friendly error."""
    merged: dict[str, str] = {}
    if secrets is not None:
        if isinstance(secrets, Secret) or not isinstance(secrets, Iterable):
            raise InvalidError("secrets must be a list of skiff.Secret")
        for s in secrets:
            if not isinstance(s, Secret):
                raise InvalidError(
                    f"secrets must be a list of skiff.Secret, got an item of type "
                    f"{type(s).__name__}")
            merged.update(s._env)
    if env is not None:
        if not isinstance(env, Mapping):
            raise InvalidError(f"{what} must be a dict of str to str, got {type(env).__name__}")
        for key, value in env.items():
            if not isinstance(key, str) or not key:
                raise InvalidError(f"{what}: keys must be non-empty str, got {key!r}")
            if value is None:
                continue
            if not isinstance(value, str):
                raise InvalidError(
                    f"{what}: the value of {key!r} must be a str, got {type(value).__name__}")
            merged[key] = value
    return merged
