"""Bad input gets a clear, typed error, and the server keeps serving."""

from __future__ import annotations

from typing import Any, Callable

import pytest

import skiff
from skiff.exception import Error, InvalidError, NotFoundError, ResourceExhaustedError


def _still_serves() -> None:
    sb = skiff.Sandbox.create("echo", "still here")
    sb.wait()
    assert sb.stdout.read() == "still here\n"


def test_unknown_image_id(image: Any, client: Any) -> None:
    bad = "im-" + "0" * 64
    with pytest.raises(NotFoundError) as exc:
        client.request("POST", "/v1/sandboxes", {"image_id": bad, "cmd": ["true"]})
    assert exc.value.code == "not_found" and exc.value.status == 404
    assert "image" in str(exc.value).lower()
    _still_serves()


def test_unknown_app_id(image: Any, client: Any) -> None:
    with pytest.raises(NotFoundError, match="(?i)app"):
        client.request("POST", "/v1/sandboxes",
                       {"image_id": image.object_id, "cmd": ["true"],
                        "app_id": "ap-00000000000000000000000000000000"})
    _still_serves()


def _health(client: Any) -> dict[str, Any]:
    h: dict[str, Any] = client.health()
    return h


CASES: dict[str, tuple[Callable[[Any], dict[str, Any]], type[Error], str]] = {
    "negative cpu": (lambda h: {"cpu": -1}, InvalidError, "cpu"),
    "zero memory": (lambda h: {"memory": 0}, InvalidError, "memory"),
    "zero timeout": (lambda h: {"timeout": 0}, InvalidError, "timeout"),
    "memory beyond the machine": (
        lambda h: {"memory": h["memory_mib"] * 4}, ResourceExhaustedError, "memory"),
    "cpu beyond the machine": (
        lambda h: {"cpu": float(h["cpus"] * 8)}, ResourceExhaustedError, "cpu"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_sandbox_arguments(image: Any, client: Any, case: str) -> None:
    make_kwargs, exc_type, word = CASES[case]
    kwargs = make_kwargs(_health(client))
    with pytest.raises(exc_type) as exc:
        skiff.Sandbox.create("true", **kwargs)
    assert word in str(exc.value).lower(), f"{case}: message {str(exc.value)!r} lacks {word!r}"
    _still_serves()


def test_command_not_in_image(image: Any) -> None:
    with pytest.raises(InvalidError, match="no-such-command-xyz"):
        skiff.Sandbox.create("no-such-command-xyz", "arg")
    _still_serves()


@pytest.mark.parametrize("kwargs,word", [
    ({"cpu": "2"}, "cpu"),
    ({"memory": 1.5}, "memory"),
    ({"timeout": "60"}, "timeout"),
    ({"env": {"A": 1}}, "'A'"),
])
def test_client_side_type_errors(kwargs: dict[str, Any], word: str) -> None:
    with pytest.raises(InvalidError, match=word):
        skiff.Sandbox.create("true", **kwargs)


def test_unsupported_python_version(server: Any) -> None:
    with pytest.raises(InvalidError, match=r"2\.7") as exc:
        skiff.Sandbox.create("true", image=skiff.Image.debian_slim(python_version="2.7"))
    assert "3.11" in str(exc.value), f"the message should say what is available: {exc.value}"
    _still_serves()


def test_error_codes_map_to_exceptions(server: Any, client: Any) -> None:
    with pytest.raises(NotFoundError) as exc:
        client.request("GET", "/v1/sandboxes/sb-0000000000000000")
    assert exc.value.status == 404
    with pytest.raises(NotFoundError):
        skiff.Sandbox.from_id("sb-0000000000000000").wait()
    with pytest.raises(NotFoundError):
        client.request("GET", "/v1/processes/sb-0000000000000000/wait?timeout=0")
    with pytest.raises(InvalidError):
        client.request("POST", "/v1/sandboxes", {"image_id": 5, "cmd": "true"})
