"""The benchmark's harness holds its own collector while it measures, and reports its lag."""

from __future__ import annotations

import asyncio
import gc
import time

from bench.harness_pauses import HarnessWatch


async def test_the_collector_is_held_in_the_window_and_a_pause_of_the_harness_is_reported():
    assert gc.isenabled()
    watch = HarnessWatch()
    watch.start()
    try:
        assert not gc.isenabled(), "a collection in the window would be timed as the bot's"
        assert gc.get_freeze_count() > 0, "what existed before the window was not frozen"
        await asyncio.sleep(0.05)
        # The harness's own loop stalls, as a full collection of its heap did.
        time.sleep(0.2)  # noqa: ASYNC251 - the stall is the point
        await asyncio.sleep(0.05)
    finally:
        p99, worst = await watch.stop()
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert 150 <= worst <= 1000 and 0 <= p99 <= worst
