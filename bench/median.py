"""The median of several runs of one scenario, figure by figure.

One run's figures vary with the machine and with chance (the emulator's durations, where
a burst of commands lands): `python -m bench --runs N` runs every scenario N times,
interleaved (all scenarios once, then again), and reports each figure's median.
"""

from __future__ import annotations

import statistics
from typing import Any

# Per-run detail, kept in each run's own figures rather than merged.
_PER_RUN = ("per_task", "polling_learned", "load_average")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _median(values: list[Any]) -> Any:
    """The median of numbers, a dict or a list of numbers merged key by key (or place by
    place), or the first run's value for anything else (names, flags, texts)."""
    first = values[0]
    if all(_number(v) for v in values):
        return statistics.median(values)
    if all(isinstance(v, dict) for v in values):
        keys = list(dict.fromkeys(k for v in values for k in v))
        return {k: _median([v.get(k, 0) for v in values]) for k in keys}
    if all(isinstance(v, list) and len(v) == len(first) for v in values) and all(
        _number(x) for v in values for x in v
    ):
        return [statistics.median(column) for column in zip(*values, strict=True)]
    return first


def median_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One scenario's figures over several runs: each figure's median; `runs` counts them
    and `per_run` keeps the figures the table's readers compare runs by."""
    merged = {
        key: _median([run.get(key) for run in runs])
        for key in runs[0]
        if key not in _PER_RUN and all(run.get(key) is not None for run in runs)
    }
    merged.update({key: runs[0].get(key) for key in runs[0] if key not in merged})
    merged["per_task"] = []  # each run's tasks are in the report's "runs"
    merged["runs"] = len(runs)
    merged["per_run"] = {
        key: [run.get(key) for run in runs]
        for key in (
            "lag_p95_s",
            "seen_p95_s",
            "poll_calls_per_task",
            "cpu_ms_per_task",
            "reference_loop_ms",
        )
    }
    return merged
