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
    calls_per_task: dict[str, float] = field(default_factory=dict)
    poll_calls_per_task: float = 0.0
    peak_calls_per_s_per_account: int = 0
    cpu_ms_per_task: float = 0.0
    peak_rss_mb: float = 0.0
    loop_lag_p99_ms: float | None = None
    discord_limits: bool = True
    # Of the delivery lag: time the result's channel (or the global) limit was exhausted.
    discord_wait_p50_s: float = 0.0
    discord_wait_p95_s: float = 0.0
    discord_wait_share: float = 0.0
    discord_429s: int = 0
    discord_429s_by_bucket: dict[str, int] = field(default_factory=dict)
    per_task: list[dict[str, Any]] = field(default_factory=list, repr=False)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


ROWS = [
    ("delivered / failed", lambda f: f"{f['delivered']} / {f['failed']}"),
    ("ack p50 / p99 (ms)", lambda f: f"{f['ack_p50_ms']:.1f} / {f['ack_p99_ms']:.1f}"),
    (
        "delivery lag p50 / p95 / max (s)",
        lambda f: f"{f['lag_p50_s']:.2f} / {f['lag_p95_s']:.2f} / {f['lag_max_s']:.2f}",
    ),
    (
        "of which waiting for Discord p50 / p95 (s), share",
        lambda f: (
            f"{f['discord_wait_p50_s']:.2f} / {f['discord_wait_p95_s']:.2f}, "
            f"{f['discord_wait_share']:.0%}"
            if f["discord_limits"]
            else "limits off"
        ),
    ),
    ("Discord 429s", lambda f: str(f["discord_429s"])),
    ("poll calls per task", lambda f: f"{f['poll_calls_per_task']:.2f}"),
    (
        "calls per task by endpoint",
        lambda f: ", ".join(f"{k} {v:.2f}" for k, v in sorted(f["calls_per_task"].items())),
    ),
    ("peak calls/s per account", lambda f: str(f["peak_calls_per_s_per_account"])),
    ("bot CPU per task (ms)", lambda f: f"{f['cpu_ms_per_task']:.1f}"),
    ("bot peak RSS (MB)", lambda f: f"{f['peak_rss_mb']:.0f}"),
    (
        "event-loop lag p99 (ms)",
        lambda f: "-" if f["loop_lag_p99_ms"] is None else f"{f['loop_lag_p99_ms']:.1f}",
    ),
]


def render_table(scenarios: list[dict[str, Any]], recovery: dict[str, Any] | None) -> str:
    """A Markdown table, scenarios side by side, plus ratios against the adaptive run."""
    head = "| metric | " + " | ".join(s["scenario"] for s in scenarios) + " |"
    lines = [head, "|---" * (len(scenarios) + 1) + "|"]
    for label, cell in ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(s) for s in scenarios) + " |")
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
                    f"lag p95 {base['lag_p95_s'] - o['lag_p95_s']:+.2f} s"
                )
    if recovery:
        lines.append(
            f"\nrecovery: {recovery['tracked_again']} of {recovery['pending']} pending tasks "
            f"tracked again {recovery['seconds']:.2f} s after restart"
        )
    return "\n".join(lines)
