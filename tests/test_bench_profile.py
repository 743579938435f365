"""`python -m bench --profile`: the bot child's profile covers its worker threads too."""

from __future__ import annotations

import pstats
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_benchmark_profile_covers_the_worker_threads_and_only_the_measured_window(tmp_path):
    prof = tmp_path / "bot.prof"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--scenarios", "adaptive", "--recovery", "0",
         "--profile", str(prof), "--out", str(tmp_path / "smoke.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    stats = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    calls = {name: nc for (_, _, name), (_, nc, *_) in stats.items()}
    assert calls.get("imagine", 0) > 0  # the commands, on the main thread's event loop
    assert calls.get("<method 'execute' of 'sqlite3.Connection' objects>", 0) > 0  # aiosqlite's
    # The window starts when the commands are fired: what ran only at startup is left out.
    assert "build_parser" not in calls and "load_settings" not in calls
