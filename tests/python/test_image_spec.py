"""Image specs on the client: Image.apt_install's checks and the spec it sends."""

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


def test_apt_install_sorts_dedups_and_is_a_new_image() -> None:
    base = skiff.Image.debian_slim()
    im = base.apt_install("python3-fastapi", ["jq", "curl"], ("jq",), "g++", "libc6.1")
    assert im is not base
    assert im._spec["apt_packages"] == ["curl", "g++", "jq", "libc6.1", "python3-fastapi"]
    assert "apt_packages" not in base._spec
    more = im.apt_install("aa")
    assert more._spec["apt_packages"][0] == "aa"
    assert len(im._spec["apt_packages"]) == 5
    assert "apt_packages=['curl'" in repr(im)


def test_no_packages_keeps_the_plain_spec() -> None:
    # An empty list must send exactly what debian_slim() sends (same image id).
    assert skiff.Image.debian_slim().apt_install()._spec == skiff.Image.debian_slim()._spec
    assert skiff.Image.debian_slim().apt_install([], ())._spec == skiff.Image.debian_slim()._spec


def test_spec_sent_to_the_server() -> None:
    rec = _Recorder()
    im = skiff.Image.debian_slim().apt_install("jq")
    assert im._build(rec, io.StringIO()) == "im-x"  # type: ignore[arg-type]
    assert rec.bodies == [{"base": "debian_slim", "python_version": None,
                           "apt_packages": ["jq"]}]


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
    assert skiff.Image.debian_slim().apt_install(good)._spec["apt_packages"] == [good]


@pytest.mark.parametrize("bad", [3, None, {"jq"}, ["jq", 3], [["jq"]], b"jq"])
def test_not_names(bad: Any) -> None:
    with pytest.raises(InvalidError, match="apt_install"):
        skiff.Image.debian_slim().apt_install(bad)
