"""`skiff shell` (one-off commands, commands on stdin, a terminal) and
`skiff container list --json`, against the session server."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from typing import Any

import skiff
from conftest import SKIFF_BIN, skiff_cli


def _running_ids(client: Any) -> set[str]:
    return {s["sandbox_id"] for s in client.request("GET", "/v1/sandboxes")["sandboxes"]}


def test_shell_cmd_without_a_terminal(image: Any, client: Any) -> None:
    before = _running_ids(client)
    r = skiff_cli("shell", "--cmd", "echo hi-from-shell")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["hi-from-shell"], (r.stdout, r.stderr)
    assert _running_ids(client) <= before, "the shell's sandbox is still running"


def test_shell_exits_with_the_commands_status(image: Any) -> None:
    r = skiff_cli("shell", "--cmd", "echo to-stderr >&2; exit 7")
    assert r.returncode == 7, (r.returncode, r.stderr)
    # The attach connection is one byte stream (docs/api.md): stderr comes back
    # on it too, and skiff writes all of it to its stdout.
    assert "to-stderr" in r.stdout, (r.stdout, r.stderr)


def test_shell_reads_commands_from_stdin(image: Any) -> None:
    r = subprocess.run([SKIFF_BIN, "shell"], input="echo $((6*7))\nexit 0\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "42" in r.stdout.split(), (r.stdout, r.stderr)


def test_shell_on_a_terminal(image: Any, client: Any) -> None:
    before = _running_ids(client)
    env = dict(os.environ, TERM="xterm")
    pid, fd = pty.fork()
    if pid == 0:  # the child: skiff shell on the pty
        try:
            os.execve(SKIFF_BIN, [SKIFF_BIN, "shell"], env)
        finally:
            os._exit(127)
    out = b""
    sent = []
    deadline = time.monotonic() + 45
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                out += data
            # Type only once the shell prompts: skiff drops input typed before
            # it puts the terminal in raw mode.
            if not sent and (b"# " in out or b"$ " in out):
                os.write(fd, b"echo $((6*7))\n")
                sent.append("cmd")
            elif sent == ["cmd"] and b"\n42\r\n" in out.replace(b"\r42", b"\n42"):
                os.write(fd, b"exit\n")
                sent.append("exit")
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode("utf-8", "replace")
    assert sent == ["cmd", "exit"], f"the shell never answered as expected: {text!r}"
    assert os.waitstatus_to_exitcode(status) == 0, text
    # The answer, on a line of its own (the typed command is echoed too, but
    # "echo $((6*7))" does not contain 42).
    assert "42" in text.replace("\r", "\n").split("\n"), text
    assert _running_ids(client) <= before, "the shell's sandbox is still running"


def test_container_list_json_shows_a_new_sandbox(image: Any, cleanup: list[Any]) -> None:
    sb = skiff.Sandbox.create("sleep", "100")
    cleanup.append(sb)
    r = skiff_cli("container", "list", "--json")
    assert r.returncode == 0, r.stderr
    listing = json.loads(r.stdout)
    containers = listing["containers"] if isinstance(listing, dict) else listing
    mine = [c for c in containers if c.get("container_id") == sb.object_id]
    assert len(mine) == 1, f"{sb.object_id} not in {r.stdout}"
    assert mine[0]["state"] == "running", mine
    assert mine[0]["image_id"] == image.object_id, mine
    assert mine[0]["cmd"] == ["sleep", "100"], mine
