"""`python -m bench --profile`: the bot child's profile covers its worker threads too."""

from __future__ import annotations

import pstats
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_benchmark_profile_covers_the_event_loop_and_the_worker_threads(tmp_path):
    prof = tmp_path / "bot.prof"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--scenarios", "adaptive", "--recovery", "0",
         "--profile", str(prof), "--out", str(tmp_path / "smoke.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    functions = {name for _, _, name in pstats.Stats(str(prof)).stats}  # type: ignore[attr-defined]
    assert "run_bot" in functions  # the main thread's event loop
    assert "_connection_worker_thread" in functions  # aiosqlite's own thread
    assert "_worker" in functions  # the thread pool images are decoded in
