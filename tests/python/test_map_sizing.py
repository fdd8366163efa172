"""Chunk sizes and inputs in flight of map calls (sdk/python/skiff/_map.py)."""

from __future__ import annotations

from skiff import _map as M


def test_single_inputs_until_measured() -> None:
    assert M.next_chunk_size(0, 16, 0, measured=False) == 1
    assert M.next_chunk_size(8, 10000, 10, measured=False) == 1
    assert M.inflight_limit(10, measured=False) == M.PROBE_INFLIGHT


def test_chunks_follow_the_hint_growing_at_most_twofold() -> None:
    sizes, prev = [], 1
    for _ in range(16):
        prev = M.next_chunk_size(prev, 10000, 20.0, measured=True)
        sizes.append(prev)
    assert sizes[:4] == [2, 4, 8, 16]
    assert max(sizes) == 10000
    assert M.next_chunk_size(5000, 3, 20.0, measured=True) == 3  # a smaller hint wins at once


def test_big_inputs_make_small_chunks() -> None:
    assert M.next_chunk_size(100, 10000, 50 << 20, measured=True) == 1
    assert M.next_chunk_size(100, 10000, 1 << 20, measured=True) == 4
    assert M.inflight_limit(100 << 20, measured=True) == M.MIN_INFLIGHT
    assert M.inflight_limit(10, measured=True) == M.MAX_INFLIGHT
