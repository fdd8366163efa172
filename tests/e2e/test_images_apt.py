"""Image.apt_install end to end: an apt-get run step on debian_slim (and the
server's own ``apt_packages`` field, added to debootstrap's list).

The first test builds a real image with jq in it (apt-get in a build
container; the base debootstrap takes ~35-60 s unless SKIFF_TEST_HOME keeps
it) and runs jq in a function container; the others check names on the
server and that a package Debian does not have fails the build with apt's
own words.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conftest import SKIFF_BIN
from extra_server import http_json, http_request, ndjson_lines


def test_function_runs_an_apt_installed_program(server: Any, image: Any,
                                                tmp_path: Path) -> None:
    path = tmp_path / "apt_app.py"
    path.write_text(textwrap.dedent("""
        import subprocess
        import skiff

        app = skiff.App("t-apt-install")
        image = skiff.Image.debian_slim().apt_install("jq")

        @app.function(image=image, timeout=60)
        def jq_version():
            out = subprocess.run(["jq", "--version"], capture_output=True, text=True, check=True)
            return out.stdout.strip()

        @app.local_entrypoint()
        def main():
            print("OK", jq_version.remote())
            print("IMAGE", image.object_id)
    """))
    proc = subprocess.run([SKIFF_BIN, "run", str(path)], capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stdout.splitlines()
    assert any(line.startswith("OK jq-1.") for line in lines), proc.stdout
    image_id = next(line.split()[1] for line in lines if line.startswith("IMAGE "))
    assert image_id.startswith("im-") and image_id != image.object_id

    # The same spec again is the cached image (every layer found).
    import skiff

    spec = skiff.Image.debian_slim().apt_install("jq")._spec
    status, raw = http_request(server.sock, "POST", "/v1/images", spec)
    assert status == 200, raw
    lines = ndjson_lines(raw)
    assert lines[-1] == {"image_id": image_id, "cached": True}, raw
    assert all(x.get("cached", True) for x in lines[:-1]), raw


def test_no_packages_is_the_plain_image(server: Any, image: Any) -> None:
    import skiff

    assert skiff.Image.debian_slim().apt_install().hydrate().object_id == image.object_id
    for empty in ([], None):
        status, raw = http_request(server.sock, "POST", "/v1/images",
                                   {"base": "debian_slim", "apt_packages": empty})
        assert status == 200, raw
        assert ndjson_lines(raw) == [{"image_id": image.object_id, "cached": True}], raw


@pytest.mark.parametrize("bad", ["Jq", "-jq", "jq,curl", "jq curl", "x"])
def test_bad_package_names_are_refused(server: Any, bad: str) -> None:
    status, j = http_json(server.sock, "POST", "/v1/images",
                          {"base": "debian_slim", "apt_packages": ["jq", bad]})
    assert status == 400, j
    assert j["error"]["code"] == "invalid_argument", j
    assert f'"{bad}"' in j["error"]["message"], j
    assert "invalid Debian package name" in j["error"]["message"], j


def test_unknown_package_fails_the_build_with_apts_message(server: Any, image: Any) -> None:
    import skiff

    name = "skiff-no-such-package-e2e"
    with pytest.raises(skiff.exception.Error) as e:
        skiff.Image.debian_slim().apt_install(name).hydrate()
    msg = str(e.value)
    assert "image build failed" in msg, msg
    assert "Unable to locate package" in msg and name in msg, msg
