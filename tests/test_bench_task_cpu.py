"""`python -m bench --profiler tasks`: the bot's CPU split by what its event loop ran."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bench import task_cpu
from bot.background import Background

ROOT = Path(__file__).resolve().parent.parent


def test_each_step_is_charged_to_its_task_and_a_guarded_task_to_what_it_guards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(asyncio.Handle, "_run", task_cpu._timed(asyncio.Handle._run))
    monkeypatch.setattr(task_cpu, "_steps", Counter())
    monkeypatch.setattr(task_cpu, "_cpu_ns", Counter())

    async def polling() -> None:
        await asyncio.sleep(0)  # a second step

    async def main() -> None:
        background = Background(logging.getLogger(__name__), "test")
        await asyncio.gather(asyncio.create_task(polling()), background.spawn(polling()))

    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        runner.run(main())
    name = f"tests: {polling.__qualname__}"
    assert task_cpu._steps[name] == 4  # two steps of each task, the guarded one's included
    assert task_cpu._cpu_ns[name] > 0


@pytest.mark.slow
def test_the_benchmark_splits_the_bots_cpu_by_activity_within_the_measured_window(tmp_path):
    out = tmp_path / "tasks.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--scenarios", "adaptive", "--recovery", "0",
         "--profiler", "tasks", "--profile", str(out), "--out", str(tmp_path / "smoke.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    steps = json.loads(out.read_text())["steps"]
    # The commands, the deliveries (a guarded background task) and the polling rounds.
    assert steps["discord: CommandTree._from_interaction.<locals>.wrapper"] >= 6
    assert steps["bot: GenerationService._deliver"] >= 6
    assert steps["bot: Poller._poll_guild"] >= 1
    # The window starts when the commands are fired: the start-up's steps are left out.
    assert not any("setup_hook" in name or "login" in name for name in steps)
    assert "| `bot: GenerationService._deliver` |" in result.stderr  # the table
