"""Container log lines on the terminal (sdk/python/skiff/_logs.py)."""

from __future__ import annotations

import io

from skiff._logs import LogPrinter, short_container_id


def rec(fn: str, ct: str, text: str, stream: str = "stdout") -> dict:
    return {"ts": 0.0, "function": fn, "container": ct, "stream": stream, "text": text}


def test_short_container_id() -> None:
    assert short_container_id("ct-1a2b3c4d5e6f7a8b") == "ct-1a2b"


def test_suffix_once_a_second_container_prints() -> None:
    p = LogPrinter()
    a, b = "ct-aaaa000000000000", "ct-bbbb000000000000"
    assert p.format(rec("square", a, "one\n")) == ("stdout", "[square] one\n")
    assert p.format(rec("square", a, "two\n")) == ("stdout", "[square] two\n")
    assert p.format(rec("other", b, "x\n")) == ("stdout", "[other] x\n")
    assert p.format(rec("square", b, "three\n")) == ("stdout", "[square ct-bbbb] three\n")
    assert p.format(rec("square", a, "four\n")) == ("stdout", "[square ct-aaaa] four\n")


def test_fragments_multiline_and_stderr() -> None:
    p = LogPrinter()
    assert p.format(rec("f", "ct-1", "no newline")) == ("stdout", "[f] no newline\n")
    assert p.format(rec("f", "ct-1", "a\nb\n", "stderr")) == ("stderr", "[f] a\n[f] b\n")
    assert p.format({"text": "bare\n"}) == ("stdout", "[app] bare\n")


def test_write_goes_to_the_right_stream() -> None:
    out, err = io.StringIO(), io.StringIO()
    p = LogPrinter(out, err)
    p.write(rec("f", "ct-1", "o\n"))
    p.write(rec("f", "ct-1", "e\n", "stderr"))
    p.enabled = False
    p.write(rec("f", "ct-1", "late\n"))
    assert out.getvalue() == "[f] o\n" and err.getvalue() == "[f] e\n"
