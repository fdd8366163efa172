"""The CLI's container verbs against sandboxes made with the SDK."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import skiff
from conftest import skiff_cli


def _cli_or_skip(*args: str) -> Any:
    r = skiff_cli(*args)
    if "unknown command" in (r.stdout + r.stderr).lower():
        pytest.skip(f"`skiff {' '.join(args[:2])}` is not in this CLI yet: {r.stderr.strip()}")
    return r


def test_container_list_logs_stop(image: Any, cleanup: list[Any]) -> None:
    sb = skiff.Sandbox.create("sh", "-c", "echo hello-from-logs; echo err-line >&2; sleep 100")
    cleanup.append(sb)
    sid = sb.object_id
    for chunk in sb.stdout:  # the output is there before we ask for the logs
        break

    r = _cli_or_skip("container", "list", "--json")
    assert r.returncode == 0, r.stderr
    listing = json.loads(r.stdout)
    containers = listing["containers"] if isinstance(listing, dict) else listing
    mine = [c for c in containers if c.get("container_id") == sid]
    assert mine, f"{sid} not in `skiff container list --json`: {r.stdout}"
    assert mine[0]["state"] == "running"

    r = _cli_or_skip("container", "list")
    assert r.returncode == 0, r.stderr
    assert sid in r.stdout

    deadline = time.monotonic() + 5
    while True:
        r = _cli_or_skip("container", "logs", sid)
        assert r.returncode == 0, r.stderr
        if "err-line" in r.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "hello-from-logs" in r.stdout and "err-line" in r.stdout

    r = _cli_or_skip("container", "stop", sid)
    assert r.returncode == 0, r.stderr
    sb.wait(raise_on_termination=False)
    assert sb.returncode is not None and sb.returncode != 0

    r = _cli_or_skip("container", "list", "--json")
    listing = json.loads(r.stdout)
    containers = listing["containers"] if isinstance(listing, dict) else listing
    assert sid not in [c.get("container_id") for c in containers]


def test_container_logs_of_unknown_id_fails(server: Any) -> None:
    r = _cli_or_skip("container", "logs", "sb-0000000000000000")
    assert r.returncode != 0
    assert r.stderr.strip(), "a failure should say why on stderr"
