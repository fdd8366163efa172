"""Apps: the named group that functions, sandboxes and schedules belong to.

For now an ``App`` carries a name, a default image and default secrets, and
``App.lookup`` finds (or creates) a persistent app on the server.  Functions,
``app.run()`` and deployment attach here later.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from . import _client
from .exception import InvalidError
from .image import Image
from .secret import Secret


class App:
    """A Skiff app.  ``app_id`` is set once the app exists on the server
    (``App.lookup``, or a running/deployed app)."""

    def __init__(self, name: Optional[str] = None, *, image: Optional[Image] = None,
                 secrets: Iterable[Secret] = ()) -> None:
        if name is not None and not isinstance(name, str):
            raise InvalidError(f"App name must be a str, got {type(name).__name__}")
        if image is not None and not isinstance(image, Image):
            raise InvalidError(f"image must be a skiff.Image, got {type(image).__name__}")
        secrets = list(secrets)
        for s in secrets:
            if not isinstance(s, Secret):
                raise InvalidError(f"secrets must be skiff.Secret objects, got {type(s).__name__}")
        self._name = name
        self._image = image
        self._secrets = secrets
        self._app_id: Optional[str] = None
        self._client: Optional[_client.Client] = None

    @property
    def name(self) -> Optional[str]:
        return self._name

    @property
    def image(self) -> Optional[Image]:
        """The default image of the app's functions."""
        return self._image

    @property
    def app_id(self) -> Optional[str]:
        """The server's id (``ap-...``), or None while the app is not on a server."""
        return self._app_id

    @property
    def object_id(self) -> Optional[str]:
        return self._app_id

    def __repr__(self) -> str:
        return f"<App {self._name!r}{' ' + self._app_id if self._app_id else ''}>"

    @classmethod
    def lookup(cls, name: str, create_if_missing: bool = False, *,
               client: Optional[_client.Client] = None) -> "App":
        """The persistent app called ``name``; with ``create_if_missing`` it is
        created when missing, otherwise a missing app raises NotFoundError."""
        if not isinstance(name, str) or not name:
            raise InvalidError(f"App.lookup needs a non-empty app name, got {name!r}")
        client = client or _client.get_client()
        resp: dict[str, Any] = client.request(
            "POST", "/v1/apps/lookup", {"name": name, "create_if_missing": bool(create_if_missing)})
        app = cls(name)
        app._app_id = str(resp["app_id"])
        app._client = client
        return app
