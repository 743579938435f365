"""The CPU pool: results, errors and context come back, and a burst never runs wider than it."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from bot.offload import WORKERS, offload

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


async def test_results_errors_and_context_come_back_from_a_worker_thread():
    request_id.set("task-7")

    def work(x: int) -> tuple[int, str, bool]:
        return x * 2, request_id.get(), threading.current_thread() is threading.main_thread()

    assert await offload(work, 21) == (42, "task-7", False)
    with pytest.raises(ZeroDivisionError):
        await offload(divmod, 1, 0)


async def test_a_burst_runs_at_most_one_job_per_core():
    lock = threading.Lock()
    active = [0]
    widest = [0]

    def job() -> None:
        with lock:
            active[0] += 1
            widest[0] = max(widest[0], active[0])
        time.sleep(0.01)  # hold the worker so the burst overlaps
        with lock:
            active[0] -= 1

    await asyncio.gather(*(offload(job) for _ in range(4 * WORKERS)))
    assert 1 <= widest[0] <= WORKERS
