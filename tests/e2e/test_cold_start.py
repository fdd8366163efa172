"""End to end: a container's cold start, broken down (issue 8, part 3).

Each function container records placement, runtime and interpreter start,
the SDK runtime's load, the user's import and enter hooks, and its first
input; `skiff container list --json` shows them, the server log prints them,
and Function.get_current_stats() has the median of the function's cold starts.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import skiff

app = skiff.App("e2e-cold-start")


@app.function(scaledown_window=30)
def slow_import(x: int) -> int:
    return x + 1


@app.cls(scaledown_window=30)
class Entered:
    @skiff.enter()
    def load(self) -> None:
        time.sleep(0.3)

    @skiff.method()
    def get(self) -> int:
        return 7


def test_breakdown_in_container_list_logs_and_stats(server: Any, image: Any) -> None:
    from conftest import skiff_cli  # here: containers import this module without pytest
    with app.run():
        t0 = time.time()
        assert slow_import.remote(1) == 2
        wall_ms = (time.time() - t0) * 1000
        assert Entered().get.remote() == 7
        rows = json.loads(skiff_cli("container", "list", "--json").stdout)
        mine = {r["function"]: r for r in rows if r.get("app_name") == "e2e-cold-start"}
        assert set(mine) >= {"slow_import", "Entered"}, rows
        cs = mine["slow_import"]["cold_start"]
        for k in ("placement_ms", "runtime_ms", "interpreter_ms", "import_ms", "enter_ms",
                  "ready_ms", "first_input_ms"):
            assert isinstance(cs[k], (int, float)) and cs[k] >= 0, (k, cs)
        # The parts add up to the container's time to ready, which is within
        # what the caller waited.
        parts = cs["runtime_ms"] + cs["interpreter_ms"] + cs["import_ms"] + cs["enter_ms"]
        assert parts <= cs["ready_ms"] + 1, cs
        assert cs["ready_ms"] <= cs["first_input_ms"] + 1 <= wall_ms + 1, (cs, wall_ms)
        # The class's @enter hook is its own part.
        assert mine["Entered"]["cold_start"]["enter_ms"] >= 300, mine["Entered"]
        stats = slow_import.get_current_stats()
        assert stats.cold_starts >= 1
        assert stats.cold_start_median_ms is not None and stats.cold_start_median_ms > 0
        assert stats.cold_start_median_ms <= stats.cold_start_p90_ms
    log = open(server.log_path).read()
    # A warm container's line says so; a started one's has the runtime's part.
    assert re.search(r"slow_import: container ct-\w+ ready in [\d.]+ ms \((warm: placement "
                     r"[\d.]+, taking it|placement [\d.]+, runtime and interpreter start)", log), \
        log[-3000:]
