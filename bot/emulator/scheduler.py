"""The generation queue: one FIFO for the whole service, drained by a fixed pool of workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

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

    def submit(self, task: GenerationTask) -> None:
        """Queue a task behind every unfinished one."""
        self._state.tasks[task.task_id] = task
        self._unfinished[task.task_id] = task
        self._queue.put_nowait(task)
        self._state.changed()

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
        task.status = "running"
        task.started_at = time.time()
        await asyncio.sleep(task.duration)
        self._finish(task)

    def _finish(self, task: GenerationTask) -> None:
        state = self._state
        if state.fault_rng.random() < state.settings.faults.task_failure_rate:
            task.error_msg = FAILURE_MESSAGE
            account = state.accounts.get(task.owner)
            if account is not None:
                account.points += task.n_images  # a failed task is not charged
        task.status = "done"
        task.done_at = time.time()
        self._unfinished.pop(task.task_id, None)
        state.changed()
        log.debug("task %s done in %.3f s", task.task_id, task.done_at - task.submitted_at)
