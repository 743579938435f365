"""A few-second run of the benchmark harness, so it keeps working."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports (absolute names; relative ones start with a dot)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


@pytest.mark.parametrize("package", ["bench", "fakediscord"])
def test_the_benchmark_and_the_fake_discord_import_nothing_from_the_tests(package):
    files = sorted((ROOT / package).glob("*.py"))
    assert files
    for path in files:
        from_tests = {m for m in imported_modules(path) if m == "tests" or m.startswith("tests.")}
        assert not from_tests, f"{path.relative_to(ROOT)} imports {from_tests}"


@pytest.mark.slow
def test_benchmark_smoke_run(tmp_path):
    out = tmp_path / "smoke.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    by_name = {s["scenario"]: s for s in report["scenarios"]}
    assert list(by_name) == ["adaptive", "fixed-1s", "fixed-5s", "adaptive-batch", "oracle"]
    for scenario in report["scenarios"]:
        assert scenario["delivered"] == scenario["tasks"] > 0, scenario
        assert scenario["ack_p99_ms"] > 0 and scenario["cpu_ms_per_task"] > 0
        assert scenario["poll_calls_per_task"] > 0
        assert 0 <= scenario["seen_p50_s"] <= scenario["seen_p95_s"]
        # Discord's rate limits are on, and the wait they cause is part of the lag.
        assert scenario["discord_limits"] and scenario["discord_429s"] >= 0
        assert sum(scenario["discord_429s_by_scope"].values()) == scenario["discord_429s"]
        assert 0 <= scenario["discord_wait_share"] <= 1
        for task in scenario["per_task"]:
            assert 0 <= task["discord_wait_s"] <= max(task["lag_s"], 0)
    batch = by_name["adaptive-batch"]["calls_per_task"]
    assert batch.get("task_results", 0) > 0 and batch.get("task_result", 0) == 0
    # The oracle polls each task once, after its finish: the bot ran with it, fed by the
    # emulator's finish log.
    oracle = by_name["oracle"]
    assert oracle["calls_per_task"]["task_result"] == 1.0
    assert all(t["polls"] == 0 for t in oracle["per_task"])  # no poll found one pending
    assert "| poll calls per task vs oracle |" in result.stdout
    assert report["recovery"]["tracked_again"] == report["recovery"]["pending"]
    assert "| metric |" in result.stdout and "recovery:" in result.stdout
    assert "waiting for Discord" in result.stdout


@pytest.mark.slow
def test_benchmark_reports_the_median_of_several_runs(tmp_path):
    out = tmp_path / "runs.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--runs", "3", "--scenarios",
         "adaptive,fixed-1s", "--recovery", "0", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [[s["scenario"] for s in run] for run in report["runs"]] == [
        ["adaptive", "fixed-1s"]
    ] * 3
    for n, scenario in enumerate(report["scenarios"]):
        each = [run[n] for run in report["runs"]]
        assert scenario["runs"] == 3 and scenario["per_run"]["lag_p95_s"] == [
            r["lag_p95_s"] for r in each
        ]
        for key in ("lag_p95_s", "seen_p95_s", "cpu_ms_per_task", "poll_calls_per_task"):
            assert scenario[key] == sorted(r[key] for r in each)[1], key
        assert scenario["calls_per_task"]["task_submit"] == 1.0
        assert all(len(r["per_task"]) == r["delivered"] for r in each)
        # The machine's speed is timed beside every run, and listed with its CPU per task.
        references = scenario["per_run"]["reference_loop_ms"]
        assert references == [r["reference_loop_ms"] for r in each] and min(references) > 0
        cpu = ", ".join(f"{r['cpu_ms_per_task']:.1f} / {r['reference_loop_ms']:.1f}" for r in each)
        assert f"- {scenario['scenario']}: {cpu}" in result.stdout
    assert "medians of 3 runs" in result.stdout
    assert "| machine speed: a fixed Python loop, CPU (ms) |" in result.stdout


@pytest.mark.slow
def test_benchmark_soak_smoke_run(tmp_path):
    out = tmp_path / "soak.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--soak", "--tasks", "60", "--guilds", "3",
         "--inflight", "20", "--retention-seconds", "2", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["finished"] == report["tasks"] == 60 and report["failed"] == 0
    assert report["pruned_tasks"] > 0  # the bot's own periodic job ran during the soak
    for window in ("start", "middle", "end"):
        assert report[window]["rss_mb_median"] > 0 and report[window]["db_mb_max"] > 0
    assert report["lag_reports"], "no housekeeping line was seen"
    assert "| soak |" in result.stdout


@pytest.mark.slow
def test_scale_smoke_run(tmp_path):
    out = tmp_path / "scale.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--scale", "--pending", "20,50", "--scale-guilds", "10",
         "--seconds", "2", "--warmup", "2", "--rate", "10", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [level["pending"] for level in report["levels"]] == [20, 50]
    for level in report["levels"]:
        idle, load = level["idle"], level["load"]
        # The pending tasks were really submitted, and the bot polled them.
        assert idle["pending_start"] == level["pending"] and idle["polls"] > 0
        assert idle["cpu_ms_per_poll"] > 0 and idle["cpu_ms_per_pending_task_per_min"] > 0
        assert idle["lag_samples"] > 0 and 0 <= idle["loop_lag_p50_ms"] <= idle["loop_lag_p99_ms"]
        assert load["commands"] == 20 and load["refused"] == 0
        assert 0 < load["ack_p50_ms"] <= load["ack_p99_ms"]
        # The harness watched its own loop, which times the acks, in both windows.
        for window in (idle, load):
            assert 0 <= window["harness_lag_p99_ms"] <= window["harness_lag_max_ms"]
        assert load["pending_end"] >= level["pending"]
        assert level["rss_mb"] > 0 and level["peak_rss_mb"] >= level["rss_mb"]
        assert level["query_plans"] and not level["unindexed"]
    assert "| ack p50 / p99 under load (ms) |" in result.stdout
    assert "| the harness's own loop lag under load, p99 / max (ms) |" in result.stdout
    assert "every hot query uses an index" in result.stdout


def check_scenario_fields(scenario: dict, storage: str, processes: int) -> None:
    """The figures a run on any storage, with any number of processes, reports."""
    assert scenario["delivered"] == scenario["tasks"] > 0 and scenario["failed"] == 0, scenario
    assert scenario["storage"] == storage and scenario["storage_version"]
    assert scenario["processes"] == processes
    assert scenario["tasks_per_s"] > 0 and scenario["run_s"] > 0
    assert 0 <= scenario["lag_p50_s"] <= scenario["lag_p95_s"] <= scenario["lag_max_s"]
    assert scenario["ack_p99_ms"] > 0 and scenario["cpu_ms_per_task"] > 0
    assert len(scenario["peak_rss_mb_per_process"]) == processes
    assert all(rss > 0 for rss in scenario["peak_rss_mb_per_process"])
    assert scenario["peak_rss_mb"] == sum(scenario["peak_rss_mb_per_process"])
    assert sum(scenario["delivered_per_process"]) == scenario["tasks"]
    # Each task's result message was found, so its delivery lag is measured.
    assert len(scenario["per_task"]) == scenario["tasks"]


@pytest.mark.slow
def test_benchmark_smoke_run_on_postgresql(tmp_path):
    out = tmp_path / "smoke-postgresql.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--storage", "postgresql", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=420,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["storage"]["backend"] == "postgresql"
    assert report["storage"]["version"][:2].isdigit()
    assert report["workload"]["storage"] == "postgresql"
    names = [s["scenario"] for s in report["scenarios"]]
    assert names == ["adaptive", "fixed-1s", "fixed-5s", "adaptive-batch", "oracle"]
    for scenario in report["scenarios"]:
        check_scenario_fields(scenario, "postgresql", 1)
        # The bot's queries ran in the server, not in the bot.
        assert scenario["db_server_cpu_ms_per_task"] > 0
    assert report["recovery"]["tracked_again"] == report["recovery"]["pending"]
    assert f"| storage, bot processes | postgresql {report['storage']['version']}, 1 |" in (
        result.stdout
    )


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["postgresql", "sqlite"])
def test_benchmark_smoke_run_with_two_sharded_processes(tmp_path, storage):
    out = tmp_path / f"smoke-sharded-{storage}.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--storage", storage, "--processes", "2",
         "--scenarios", "adaptive", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["processes"] == 2 and report["storage"]["backend"] == storage
    (scenario,) = report["scenarios"]
    check_scenario_fields(scenario, storage, 2)
    # Both processes worked: each delivered the tasks of its own shard's server (the smoke
    # run has two servers, one per shard, and six tasks alternating between them).
    assert scenario["delivered_per_process"] == [3, 3]
    assert "| delivered per process (its shard's servers) | 3 + 3 |" in result.stdout
    assert report["recovery"]["tracked_again"] == report["recovery"]["pending"]
