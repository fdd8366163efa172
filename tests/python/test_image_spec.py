"""Image specs on the client: Image.apt_install's checks and the spec it sends
(the other build steps: test_image_steps.py)."""

from __future__ import annotations

import io
from typing import Any, Iterator

import pytest

import skiff
from skiff.exception import InvalidError


class _Recorder:
    """Stands in for the client: keeps the spec and answers with an image id."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []

    def stream_ndjson(self, method: str, path: str, body: Any) -> Iterator[dict[str, Any]]:
        assert (method, path) == ("POST", "/v1/images")
        self.bodies.append(body)
        yield {"image_id": "im-x", "cached": True}


APT = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "


def _apt_step(names: str) -> dict[str, Any]:
    return {"op": "run", "label": f"apt_install {names}", "force": False,
            "commands": ["apt-get update -q", APT + names], "env": {}, "mounts": [],
            "content_hash": None}


def test_apt_install_is_a_run_step_of_a_new_image() -> None:
    base = skiff.Image.debian_slim()
    im = base.apt_install("python3-fastapi", ["jq", "curl"], ("jq",), "g++", "libc6.1")
    assert im is not base
    assert im._spec["steps"] == [_apt_step("python3-fastapi jq curl jq g++ libc6.1")]
    assert "steps" not in base._spec and "apt_packages" not in im._spec
    more = im.apt_install("aa")
    assert more._spec["steps"][1] == _apt_step("aa")
    assert len(im._spec["steps"]) == 1
    assert "+1 steps" in repr(im)


def test_no_packages_keeps_the_plain_spec() -> None:
    # An empty list must send exactly what debian_slim() sends (same image id).
    assert skiff.Image.debian_slim().apt_install()._spec == skiff.Image.debian_slim()._spec
    assert skiff.Image.debian_slim().apt_install([], ())._spec == skiff.Image.debian_slim()._spec


def test_spec_sent_to_the_server() -> None:
    rec = _Recorder()
    im = skiff.Image.debian_slim().apt_install("jq")
    assert im._build(rec, io.StringIO()) == "im-x"  # type: ignore[arg-type]
    assert rec.bodies == [{"base": "debian_slim", "python_version": None,
                           "steps": [_apt_step("jq")]}]


@pytest.mark.parametrize("bad", ["Jq", "j", "", "-jq", "+jq", ".jq", "jq,curl", "jq curl",
                                 "jq;rm -rf", "python3_flask", "jq\n", "é2", "x" * 129])
def test_bad_names_are_refused_by_name(bad: str) -> None:
    with pytest.raises(InvalidError) as e:
        skiff.Image.debian_slim().apt_install("jq", bad)
    assert repr(bad) in str(e.value)
    assert "invalid Debian package name" in str(e.value)
    with pytest.raises(InvalidError):
        skiff.Image.debian_slim().apt_install(["jq", bad])


@pytest.mark.parametrize("good", ["jq", "g++", "libc6.1", "python3-fastapi", "0ad", "x" * 128])
def test_good_names(good: str) -> None:
    (step,) = skiff.Image.debian_slim().apt_install(good)._spec["steps"]
    assert step["commands"] == _apt_step(good)["commands"]
    assert len(step["label"]) <= 120  # long labels are cut


@pytest.mark.parametrize("bad", [3, None, {"jq"}, ["jq", 3], [["jq"]], b"jq"])
def test_not_names(bad: Any) -> None:
    with pytest.raises(InvalidError, match="apt_install"):
        skiff.Image.debian_slim().apt_install(bad)
