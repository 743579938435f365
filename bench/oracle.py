"""The oracle: polling that is told when each task finishes, to measure the others against.

No client of a real service can know this, so the bot's configuration cannot name it: the
benchmark starts the bot through this module (`python -m bench.oracle FINISH_LOG ARGS...`,
ARGS as for `miaohua-bot`), which runs `miaohua-bot` with this strategy in place of the
configured one. The emulator, started with `--finish-log FINISH_LOG`, plans each task's
finish when it is submitted and appends `TASK_ID EPOCH` to that file before it answers
`task_submit`, so the line is always there when the bot asks for a task's first poll. Each
task is then polled once, `epsilon` after its finish: the least polling and delivery lag
any strategy can get from this service.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from bot.store import Task


class FinishTimes:
    """Reads the emulator's finish log incrementally: task id -> planned finish (epoch s)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._times: dict[str, float] = {}

    def get(self, task_id: str) -> float | None:
        """The planned finish of a task, reading lines appended since the last miss."""
        if task_id not in self._times:
            self._read_new()
        return self._times.get(task_id)

    def forget(self, task_id: str) -> None:
        """Drop a task's finish time (it will not be asked for again)."""
        self._times.pop(task_id, None)

    def _read_new(self) -> None:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
        self._offset += len(complete)
        for line in complete.decode().splitlines():
            task_id, _, at = line.partition(" ")
            self._times[task_id] = float(at)


class OracleStrategy:
    """Polls each task `epsilon` after the finish the emulator planned for it."""

    def __init__(
        self,
        finish_times: FinishTimes,
        *,
        # The poller fires timers up to its 50 ms coalescing window early: stay past it.
        epsilon: float = 0.06,
        retry: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.finish_times = finish_times
        self.epsilon = epsilon
        self.retry = retry  # if a poll still finds it pending (should not happen)
        self._clock = clock

    def next_interval(
        self, task: Task, wait_time: int | None, polls_so_far: int, elapsed: float
    ) -> float:
        """Seconds until just after the task's planned finish."""
        finish = self.finish_times.get(task.service_task_id or "")
        if finish is None:
            return self.retry
        return max(self.retry if polls_so_far else 0.0, finish + self.epsilon - self._clock())

    def completed(self, task: Task, elapsed: float) -> None:
        """Nothing to learn; drop its finish time."""
        self.finish_times.forget(task.service_task_id or "")

    def forget(self, task_id: int) -> None:
        """Nothing kept by the bot's task id."""

    def summary(self) -> str:
        """For the bot's shutdown log."""
        return f"oracle from {self.finish_times.path}"


def main(argv: list[str]) -> int:
    """`python -m bench.oracle FINISH_LOG ARGS...`: `miaohua-bot ARGS` with the oracle."""
    import bot.app
    from bot.__main__ import main as bot_main

    finish_times = FinishTimes(Path(argv[0]))
    # The one place the strategy is chosen; replaced in this process only.
    bot.app.poll_strategy = lambda _settings: OracleStrategy(finish_times)
    return bot_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
