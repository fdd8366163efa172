"""Proxy-auth tokens end to end (issue 5): `skiff token create|list|delete`
against the session server, and the /v1/tokens routes' answers and errors.

A token's secret is shown once, by create: it must never appear in a
listing, in the database file or in the server's log.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import sqlite3
import subprocess
from typing import Any, Optional

from conftest import SKIFF_BIN, Server


def token_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SKIFF_BIN, "token", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env=dict(os.environ))


def token_ok(*args: str) -> str:
    proc = token_cli(*args)
    assert proc.returncode == 0, f"skiff token {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}"
    return proc.stdout


def api(server: Server, method: str, path: str,
        body: Optional[bytes] = None) -> tuple[int, Any]:
    """One request straight over the server's socket: (status, decoded JSON)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(server.sock)
    conn = http.client.HTTPConnection("localhost", timeout=10)
    conn.sock = s
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None
    finally:
        conn.close()


def listed(*args: str) -> list[dict[str, Any]]:
    return json.loads(token_ok("list", "--json", *args))


def test_token_create_list_delete(server: Server) -> None:
    created = json.loads(token_ok("create", "--name", "e2e-ci", "--json"))
    tid, secret = created["token_id"], created["token_secret"]
    assert re.fullmatch(r"wk-[0-9a-f]{16}", tid), created
    assert re.fullmatch(r"ws-[0-9a-f]{32}", secret), created

    tokens = listed()
    mine = [t for t in tokens if t["token_id"] == tid]
    assert len(mine) == 1, tokens
    assert mine[0]["name"] == "e2e-ci"
    assert set(mine[0]) == {"token_id", "name", "created_at"}
    assert secret not in json.dumps(tokens)
    # The table shows it too, and never the secret.
    table = token_ok("list")
    assert tid in table and "e2e-ci" in table and secret not in table

    out = token_ok("delete", tid)
    assert tid in out
    assert tid not in [t["token_id"] for t in listed()]
    # Deleting it again: the server's 404, exit 1.
    proc = token_cli("delete", tid)
    assert proc.returncode == 1
    assert "not found" in proc.stderr and tid in proc.stderr

    # The secret is nowhere the server writes: not its log, not its database.
    with open(server.log_path, "rb") as f:
        assert secret.encode() not in f.read()
    db = sqlite3.connect(os.path.join(server.home, "state.db"))
    try:
        dump = "\n".join(db.iterdump())
    finally:
        db.close()
    assert secret not in dump and secret[3:] not in dump


def test_token_create_plain_output(server: Server) -> None:
    out = token_ok("create")
    ids = re.findall(r"wk-[0-9a-f]{16}", out)
    secrets = re.findall(r"ws-[0-9a-f]{32}", out)
    assert ids and secrets, out
    assert f"Skiff-Key: {ids[0]}" in out and f"Skiff-Secret: {secrets[0]}" in out
    unnamed = [t for t in listed() if t["token_id"] == ids[0]]
    assert unnamed and unnamed[0]["name"] is None
    token_ok("delete", ids[0])


def test_token_routes(server: Server) -> None:
    status, body = api(server, "POST", "/v1/tokens", b"")
    assert status == 201, body
    tid = body["token_id"]
    assert body["token_secret"].startswith("ws-")

    status, body = api(server, "GET", "/v1/tokens")
    assert status == 200 and tid in [t["token_id"] for t in body["tokens"]]
    assert all("token_secret" not in t for t in body["tokens"])

    for bad in (b'{"name": 5}', b'[1]', b'{"name": ""}', b"not json"):
        status, body = api(server, "POST", "/v1/tokens", bad)
        assert status == 400, (bad, body)
        assert "error" in body

    status, body = api(server, "DELETE", f"/v1/tokens/{tid}")
    assert (status, body) == (200, {"deleted": tid})
    status, body = api(server, "DELETE", f"/v1/tokens/{tid}")
    assert status == 404 and body["error"]["code"] == "not_found", body
    status, body = api(server, "PUT", "/v1/tokens")
    assert status == 404, body


def test_token_cli_usage_errors(server: Server) -> None:
    assert token_cli().returncode == 2
    assert token_cli("frobnicate").returncode == 2
    assert token_cli("delete").returncode == 2
    assert token_cli("create", "--name").returncode == 2
    proc = token_cli("--help")
    assert proc.returncode == 0 and "Skiff-Key" in proc.stdout
