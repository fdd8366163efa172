"""Percent-encoding of URL path segments (what urllib.parse.quote(s, safe="")
does), without importing urllib.parse: `import skiff` happens at every
container start, where each millisecond counts."""

from __future__ import annotations

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(s: str, safe: str = "") -> str:
    keep = _SAFE | frozenset(safe.encode())
    out = []
    for b in s.encode("utf-8"):
        out.append(chr(b) if b in keep else f"%{b:02X}")
    return "".join(out)
