"""How fast this machine runs Python right now: a fixed loop, timed in CPU time.

A shared virtual machine's speed drifts: the same bot has measured a fifth more CPU per task
in one run than in the next, and a third more on another day. Timed beside each run, this
loop tells a change of the bot from a change of the machine: a run whose CPU per task rose
with the loop's time measured a slower machine, not a slower bot.
"""

from __future__ import annotations

import json
import statistics
import time


def _work() -> int:
    # What the bot's own time goes to: small dicts, attribute-free calls, strings, JSON.
    total = 0
    for i in range(5_000):
        row = {"id": i, "state": "submitted", "prompt": f"scene {i}", "count": i % 4 + 1}
        text = json.dumps(row)
        total += len(text) + len(json.loads(text)["prompt"].split())
    return total


def reference_loop_ms(repeats: int = 5) -> float:
    """The median CPU time of the fixed loop, in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        _work()
        times.append((time.process_time() - start) * 1000)
    return statistics.median(times)
