"""A command answered after Discord's 3-second window: one warning, and the task still runs."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import CH_A
from tests.genutil import eventually, imagine, result_messages


async def test_an_answer_after_discords_window_is_one_warning_and_the_task_still_delivers(
    harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    h.fake.interaction_window = 0.0  # every answer comes too late, as from an overloaded bot
    ix = await imagine(h, prompt="a lighthouse at dusk")
    with caplog.at_level(logging.WARNING, logger="bot"):
        # The task was accepted before the answer failed: its result reaches the channel.
        await eventually(lambda: result_messages(h, CH_A), timeout=20)
        await eventually(lambda: ix.expired, timeout=5)
    assert ix.callback is None
    late = [r for r in caplog.records if "answered too late" in r.getMessage()]
    assert len(late) == 1 and str(ix.id) in late[0].getMessage()
    assert late[0].levelno == logging.WARNING and late[0].exc_info is None
    # No traceback, no "unexpected error" (the harness fails the test on ERROR records), and
    # no second try through the dead token (no error reply, no follow-up).
    through_token = [r for r in h.fake.requests if ix.token in r.path]
    assert [(r.method, r.status) for r in through_token] == [("POST", 404)]
