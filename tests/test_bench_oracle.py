"""The benchmark's oracle polling: told each finish by the emulator, never an operator's choice."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.oracle import FinishTimes, OracleStrategy
from bench.report import render_table
from bot.config import ConfigError, load_settings


def test_finish_times_are_read_as_the_emulator_appends_them(tmp_path: Path) -> None:
    log = tmp_path / "finish.log"
    times = FinishTimes(log)
    assert times.get("a") is None  # no file yet
    log.write_text("a 100.5\nb 101.25\nc 10")  # "c" is still being written
    assert times.get("b") == 101.25
    assert times.get("c") is None
    with log.open("a") as fh:
        fh.write("2.0\n")
    assert times.get("c") == 102.0
    times.forget("a")
    assert times.get("a") is None


def test_the_oracle_polls_just_after_the_planned_finish(tmp_path: Path) -> None:
    log = tmp_path / "finish.log"
    log.write_text("svc-1 110.0\n")
    now = [100.0]
    oracle = OracleStrategy(FinishTimes(log), epsilon=0.02, retry=0.05, clock=lambda: now[0])
    task = SimpleNamespace(id=1, service_task_id="svc-1")
    assert oracle.next_interval(task, None, 0, 0.0) == pytest.approx(10.02)
    now[0] = 110.03  # polled then and still pending (a late clock): look again shortly
    assert oracle.next_interval(task, 0, 1, 10.03) == pytest.approx(0.05)
    unknown = SimpleNamespace(id=2, service_task_id="svc-2")
    assert oracle.next_interval(unknown, None, 0, 0.0) == 0.05


def test_operators_cannot_configure_the_oracle(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[miaohua]\npoll_strategy = "oracle"\n')
    with pytest.raises(ConfigError, match="poll_strategy"):
        load_settings(config)


def figures(name: str, calls: float, p50: float, p95: float) -> dict[str, object]:
    return {
        "scenario": name,
        "delivered": 10,
        "failed": 0,
        "ack_p50_ms": 1.0,
        "ack_p99_ms": 2.0,
        "lag_p50_s": p50,
        "lag_p95_s": p95,
        "lag_max_s": p95,
        "seen_p50_s": p50 / 2,
        "seen_p95_s": p95 / 2,
        "calls_per_task": {"task_result": calls},
        "poll_calls_per_task": calls,
        "peak_calls_per_s_per_account": 1,
        "cpu_ms_per_task": 1.0,
        "peak_rss_mb": 100.0,
        "loop_lag_p99_ms": None,
        "load_average": 1.5,
        "reference_loop_ms": 52.25,
    }


def test_the_table_sets_every_scenario_against_the_oracle() -> None:
    table = render_table(
        [figures("adaptive", 2.0, 0.5, 1.5), figures("oracle", 1.0, 0.25, 0.5)], None
    )
    assert "| poll calls per task vs oracle | x2.00 | x1.00 |" in table
    assert "| lag p50 / p95 vs oracle (s) | +0.25 / +1.00 | +0.00 / +0.00 |" in table
    assert "| first poll that sees it, p50 / p95 vs oracle (s) | +0.12 / +0.50 |" in table
    assert "| machine load average (1 min, at end) | 1.5 | 1.5 |" in table
    assert "| machine speed: a fixed Python loop, CPU (ms) | 52.2 | 52.2 |" in table
