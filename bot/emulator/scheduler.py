"""The generation queue: one FIFO for the whole service, drained by a fixed pool of workers.

Each task's finish time is planned when it is submitted (the pool is FIFO and durations are
drawn up front, so it is known then) and the task is done from that instant on, whenever the
emulator's own event loop gets round to it: a busy emulator delays its answers, not the
generations. With `finish_log` set, the plan is written out for the benchmark's oracle.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from pathlib import Path
from typing import TextIO

from bot.emulator.state import EmulatorState, GenerationTask

log = logging.getLogger(__name__)

FAILURE_MESSAGE = "Intern error"


class GenerationQueue:
    """Runs generation tasks in submission order, settings.workers at a time."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state
        self._queue: asyncio.Queue[GenerationTask] = asyncio.Queue()
        # Unfinished tasks in submission order: a task's index is the number of tasks ahead of it.
        self._unfinished: dict[str, GenerationTask] = {}
        self._workers: list[asyncio.Task[None]] = []
        # When each worker of the plan is next free (epoch seconds): a min-heap.
        self._free_at = [0.0] * state.settings.workers
        log_path = state.settings.finish_log
        self._finish_log: TextIO | None = None if log_path is None else _open_log(log_path)

    def start(self) -> None:
        """Start the workers on the running loop."""
        for n in range(self._state.settings.workers):
            self._workers.append(asyncio.create_task(self._work(), name=f"emulator-worker-{n}"))

    async def stop(self) -> None:
        """Cancel the workers and wait for them to end."""
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers.clear()
        if self._finish_log is not None:
            self._finish_log.close()
            self._finish_log = None

    def submit(self, task: GenerationTask) -> None:
        """Queue a task behind every unfinished one."""
        self._plan(task)
        self._state.tasks[task.task_id] = task
        self._unfinished[task.task_id] = task
        self._queue.put_nowait(task)
        self._state.changed()

    def _plan(self, task: GenerationTask) -> None:
        # FIFO on a fixed pool: the task starts when the first worker of the plan frees up.
        start = max(task.submitted_at, heapq.heappop(self._free_at))
        task.planned_done = start + task.duration
        heapq.heappush(self._free_at, task.planned_done)
        if self._finish_log is not None:
            # Written (and flushed) before task_submit answers: the reader always finds it.
            self._finish_log.write(f"{task.task_id} {task.planned_done:.6f}\n")
            self._finish_log.flush()

    def settle(self, task: GenerationTask) -> None:
        """Finish `task` if its planned finish has passed (its worker may not have woken yet)."""
        planned = task.planned_done
        if not task.finished and planned is not None and time.time() >= planned:
            self._finish(task)

    def wait_time(self, task: GenerationTask) -> int:
        """Return how many tasks are ahead of this one (0 once it runs or is done)."""
        if task.status != "queued":
            return 0
        for ahead, task_id in enumerate(self._unfinished):
            if task_id == task.task_id:
                return ahead
        return 0

    async def _work(self) -> None:
        while True:
            task = await self._queue.get()
            try:
                await self._run(task)
            finally:
                self._queue.task_done()

    async def _run(self, task: GenerationTask) -> None:
        if task.finished:  # settled by a poll before this worker got to it
            return
        task.status = "running"
        task.started_at = time.time()
        # Until the planned finish, not for `duration`: a worker that woke late for its
        # previous task must not push every later task of the plan back.
        planned = task.planned_done if task.planned_done is not None else time.time()
        await asyncio.sleep(max(0.0, planned - time.time()))
        if not task.finished:  # a poll may have settled it already
            self._finish(task)

    def _finish(self, task: GenerationTask) -> None:
        state = self._state
        if state.fault_rng.random() < state.settings.faults.task_failure_rate:
            task.error_msg = FAILURE_MESSAGE
            account = state.accounts.get(task.owner)
            if account is not None:
                account.points += task.n_images  # a failed task is not charged
        if task.started_at is None and task.planned_done is not None:
            task.started_at = task.planned_done - task.duration  # when the plan started it
        task.status = "done"
        task.done_at = task.planned_done if task.planned_done is not None else time.time()
        self._unfinished.pop(task.task_id, None)
        state.changed()
        log.debug("task %s done in %.3f s", task.task_id, task.done_at - task.submitted_at)


def _open_log(path: Path) -> TextIO:
    return path.open("a", encoding="utf-8")
