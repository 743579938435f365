"""The benchmark's account of waiting for Discord: its limits, and the bot's own pacing."""

from __future__ import annotations

import logging
import time

import pytest

from bench.run import _count_by_scope, _pacer_waits
from bot.discord_jobs.events import _log_budget_wait
from bot.discord_pacing import PacedRequest, Priority
from fakediscord.ratelimits import Limited, RateLimitStats


def test_the_bench_reads_the_wait_the_bot_logs_for_a_result(
    caplog: pytest.LogCaptureFixture,
) -> None:
    paced = PacedRequest(Priority.RESULT, waits=[(1_700_000_000.25, 1.5), (1_700_000_003.0, 0.5)])
    with caplog.at_level(logging.INFO, logger="bot.discord_jobs.events"):
        _log_budget_wait(42, paced)
        _log_budget_wait(42, PacedRequest(Priority.RESULT))  # no wait: no line
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert _pacer_waits([f"2026-12-01 INFO bot.discord_jobs.events {lines[0]}"]) == {
        42: [(1_700_000_000.25, 1.5), (1_700_000_003.0, 0.5)]
    }


def test_pacer_waits_count_with_discords_own_limits_each_second_once() -> None:
    stats = RateLimitStats()
    stats.exhausted["message-create:channels/1"] = [(10.0, 12.0)]
    stats.exhausted["global"] = [(20.0, 21.0)]
    key = "message-create:channels/1"
    assert stats.blocked(key, 10.0, 30.0) == 3.0
    # The bot's pacer held the result from 11 to 13 (overlapping the channel's limit) and
    # from 25 to 26: one second more, and one.
    assert stats.blocked(key, 10.0, 30.0, also=[(11.0, 13.0), (25.0, 26.0)]) == 5.0


def test_429s_are_split_by_scope() -> None:
    now = time.time()

    def refused(scope: str) -> Limited:
        return Limited(now, "POST", "/channels/1/messages", "message-create", "1", scope, 0.1)

    assert _count_by_scope([refused("global"), refused("user"), refused("global")]) == {
        "global": 2,
        "user": 1,
    }
