"""Figures of a benchmark scenario, percentiles, and the printed table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Figures:
    """Everything measured for one scenario."""

    scenario: str
    tasks: int
    delivered: int
    failed: int
    ack_p50_ms: float
    ack_p99_ms: float
    lag_p50_s: float
    lag_p95_s: float
    lag_max_s: float
    # From the finish to the first poll answered "done": the polling's part of the lag.
    seen_p50_s: float = 0.0
    seen_p95_s: float = 0.0
    calls_per_task: dict[str, float] = field(default_factory=dict)
    poll_calls_per_task: float = 0.0
    peak_calls_per_s_per_account: int = 0
    cpu_ms_per_task: float = 0.0
    peak_rss_mb: float = 0.0
    loop_lag_p99_ms: float | None = None
    load_average: float | None = None  # the machine's 1-minute load when the scenario ended
    # The machine's speed just before the commands: bench/machine_speed.py's loop, CPU ms.
    reference_loop_ms: float | None = None
    polling_learned: str = ""  # the bot's own account of its polling model, at shutdown
    discord_limits: bool = True
    # Of the delivery lag: time the result's channel (or the global) limit was exhausted.
    discord_wait_p50_s: float = 0.0
    discord_wait_p95_s: float = 0.0
    discord_wait_share: float = 0.0
    discord_429s: int = 0
    discord_429s_by_bucket: dict[str, int] = field(default_factory=dict)
    # "global" (Discord's 50 requests per second per bot) or "user" (a per-route bucket).
    discord_429s_by_scope: dict[str, int] = field(default_factory=dict)
    # Of the Discord wait: what results spent in the bot's own pacer (its share of the
    # global limit), p95 over the results that waited there.
    pacer_wait_p95_s: float = 0.0
    per_task: list[dict[str, Any]] = field(default_factory=list, repr=False)
    storage: str = "sqlite"  # the bot's database backend
    storage_version: str = ""  # SQLite's library version, or the PostgreSQL server's
    processes: int = 1  # sharded bot processes (CPU summed, RSS summed over them)
    # Throughput: results delivered per second, from the first command to the last result.
    tasks_per_s: float = 0.0
    run_s: float = 0.0
    # The PostgreSQL server's CPU (postmaster and backends) per task; 0 for SQLite.
    db_server_cpu_ms_per_task: float = 0.0
    peak_rss_mb_per_process: list[float] = field(default_factory=list)
    # Tasks delivered by each process: those of its shard's servers.
    delivered_per_process: list[int] = field(default_factory=list)
    # Requests the bot made to Discord per task, by method and route ("POST /channels/{id}/
    # messages"), 429s and their retries included.
    discord_requests_per_task: dict[str, float] = field(default_factory=dict)


def _rss(f: dict[str, Any]) -> str:
    """The peak RSS; with several processes, their sum and each one's."""
    each = f.get("peak_rss_mb_per_process", [])
    if len(each) > 1:
        return f"{f['peak_rss_mb']:.0f} (" + " + ".join(f"{v:.0f}" for v in each) + ")"
    return f"{f['peak_rss_mb']:.0f}"


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


ROWS = [
    (
        "storage, bot processes",
        lambda f: (
            f"{f.get('storage', 'sqlite')} {f.get('storage_version', '')}".rstrip()
            + f", {f.get('processes', 1)}"
        ),
    ),
    ("delivered / failed", lambda f: f"{f['delivered']} / {f['failed']}"),
    (
        "delivered per process (its shard's servers)",
        lambda f: " + ".join(map(str, f.get("delivered_per_process", []))) or "-",
    ),
    (
        "tasks per second (first command to last result)",
        lambda f: f"{f.get('tasks_per_s', 0.0):.2f}",
    ),
    ("ack p50 / p99 (ms)", lambda f: f"{f['ack_p50_ms']:.1f} / {f['ack_p99_ms']:.1f}"),
    (
        "delivery lag p50 / p95 / max (s)",
        lambda f: f"{f['lag_p50_s']:.2f} / {f['lag_p95_s']:.2f} / {f['lag_max_s']:.2f}",
    ),
    (
        "of which waiting for Discord p50 / p95 (s), share",
        lambda f: (
            f"{f.get('discord_wait_p50_s', 0.0):.2f} / {f.get('discord_wait_p95_s', 0.0):.2f}, "
            f"{f.get('discord_wait_share', 0.0):.0%}"
            if f.get("discord_limits", True)
            else "limits off"
        ),
    ),
    (
        "Discord 429s (global / per-route)",
        lambda f: (
            f"{f.get('discord_429s', 0)} ({f.get('discord_429s_by_scope', {}).get('global', 0)}"
            f" / {f.get('discord_429s_by_scope', {}).get('user', 0)})"
            if "discord_429s_by_scope" in f
            else str(f.get("discord_429s", 0))
        ),
    ),
    (
        "results waiting in the bot's pacer, p95 (s)",
        lambda f: f"{f.get('pacer_wait_p95_s', 0.0):.2f}",
    ),
    (
        "finish to first poll that sees it, p50 / p95 (s)",
        lambda f: f"{f.get('seen_p50_s', 0.0):.2f} / {f.get('seen_p95_s', 0.0):.2f}",
    ),
    ("poll calls per task", lambda f: f"{f['poll_calls_per_task']:.2f}"),
    (
        "calls per task by endpoint",
        lambda f: ", ".join(f"{k} {v:.2f}" for k, v in sorted(f["calls_per_task"].items())),
    ),
    ("peak calls/s per account", lambda f: str(f["peak_calls_per_s_per_account"])),
    (
        "Discord requests per task (the most frequent)",
        lambda f: (
            f"{sum(f.get('discord_requests_per_task', {}).values()):.1f}: "
            + ", ".join(
                f"{k} {v:.2f}" for k, v in list(f.get("discord_requests_per_task", {}).items())[:4]
            )
        ),
    ),
    ("bot CPU per task (ms)", lambda f: f"{f['cpu_ms_per_task']:.1f}"),
    (
        "database server CPU per task (ms)",
        lambda f: (
            f"{f['db_server_cpu_ms_per_task']:.1f}"
            if f.get("storage", "sqlite") != "sqlite"
            else "- (in the bot)"
        ),
    ),
    ("bot peak RSS (MB)", lambda f: _rss(f)),
    (
        "event-loop lag p99 (ms)",
        lambda f: "-" if f["loop_lag_p99_ms"] is None else f"{f['loop_lag_p99_ms']:.1f}",
    ),
    (
        "machine load average (1 min, at end)",
        lambda f: "-" if f.get("load_average") is None else f"{f['load_average']:.1f}",
    ),
    (
        "machine speed: a fixed Python loop, CPU (ms)",
        lambda f: "-" if f.get("reference_loop_ms") is None else f"{f['reference_loop_ms']:.1f}",
    ),
]


def oracle_rows(scenarios: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """Every scenario against the oracle run (polls exactly at each finish), if there is one."""
    oracle = next((s for s in scenarios if s["scenario"] == "oracle"), None)
    if oracle is None:
        return []
    calls, p50, p95 = oracle["poll_calls_per_task"], oracle["lag_p50_s"], oracle["lag_p95_s"]
    return [
        (
            "poll calls per task vs oracle",
            [f"x{s['poll_calls_per_task'] / calls:.2f}" if calls else "-" for s in scenarios],
        ),
        (
            "lag p50 / p95 vs oracle (s)",
            [f"{s['lag_p50_s'] - p50:+.2f} / {s['lag_p95_s'] - p95:+.2f}" for s in scenarios],
        ),
        (
            "first poll that sees it, p50 / p95 vs oracle (s)",
            [
                f"{s.get('seen_p50_s', 0.0) - oracle.get('seen_p50_s', 0.0):+.2f} / "
                f"{s.get('seen_p95_s', 0.0) - oracle.get('seen_p95_s', 0.0):+.2f}"
                for s in scenarios
            ],
        ),
    ]


def render_table(scenarios: list[dict[str, Any]], recovery: dict[str, Any] | None) -> str:
    """A Markdown table, scenarios side by side, plus ratios against the adaptive run."""
    head = "| metric | " + " | ".join(s["scenario"] for s in scenarios) + " |"
    lines = [head, "|---" * (len(scenarios) + 1) + "|"]
    for label, cell in ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(s) for s in scenarios) + " |")
    for label, cells in oracle_rows(scenarios):
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    by_name = {s["scenario"]: s for s in scenarios}
    base = by_name.get("adaptive")
    if base:
        for other in ("fixed-1s", "fixed-5s"):
            if other in by_name:
                o = by_name[other]
                calls = (
                    base["poll_calls_per_task"] / o["poll_calls_per_task"]
                    if o["poll_calls_per_task"]
                    else 0
                )
                lines.append(
                    f"\nadaptive vs {other}: poll calls x{calls:.2f}, "
                    f"lag p95 {base['lag_p95_s'] - o['lag_p95_s']:+.2f} s, "
                    f"finish to poll p95 {base['seen_p95_s'] - o['seen_p95_s']:+.2f} s"
                )
    runs = scenarios[0].get("runs", 1) if scenarios else 1
    if runs > 1:
        lines.append(f"\nmedians of {runs} runs; each run's lag p95 / finish to poll p95 (s):")
        for s in scenarios:
            spread = zip(s["per_run"]["lag_p95_s"], s["per_run"]["seen_p95_s"], strict=True)
            lines.append(
                f"- {s['scenario']}: "
                + ", ".join(f"{lag:.2f} / {seen:.2f}" for lag, seen in spread)
            )
        lines.append("each run's bot CPU per task (ms) / the machine's fixed loop (ms):")
        for s in scenarios:
            cpu = zip(
                s["per_run"]["cpu_ms_per_task"], s["per_run"]["reference_loop_ms"], strict=True
            )
            lines.append(
                f"- {s['scenario']}: "
                + ", ".join(f"{ms:.1f} / {'-' if ref is None else f'{ref:.1f}'}" for ms, ref in cpu)
            )
    if recovery:
        lines.append(
            f"\nrecovery: {recovery['tracked_again']} of {recovery['pending']} pending tasks "
            f"tracked again {recovery['seconds']:.2f} s after restart"
        )
    return "\n".join(lines)
