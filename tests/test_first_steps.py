"""What a new user or admin meets first: start-up and delivery logs, login time, quotas."""

from __future__ import annotations

import logging

from tests.conftest import GUILD_A
from tests.genutil import FAST_POLLING, imagine, task_id_of, wait_result
from tests.helpers import answer_text


async def test_start_up_logs_one_ready_line_and_each_delivery(harness_factory, caplog):
    caplog.set_level(logging.INFO)
    h = await harness_factory(miaohua=FAST_POLLING)
    ready = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ready:")]
    assert ready == [f"ready: logged in as {h.bot.user.name}, 2 servers, commands synced"]
    assert all(r.levelno == logging.INFO for r in caplog.records if r.getMessage() in ready)
    task_id = task_id_of(await answer_text(await imagine(h, count=1)))
    await wait_result(h, task_id)
    await h.idle()
    delivered = [
        r for r in caplog.records if r.getMessage().startswith(f"task {task_id} delivered")
    ]
    assert len(delivered) == 1 and delivered[0].levelno == logging.INFO
    text = delivered[0].getMessage()
    assert f"task {task_id} delivered in guild {GUILD_A}, " in text
    seconds = float(text.split(", ")[1].split(" s ")[0])
    assert seconds >= 0 and text.endswith(" s after acceptance")
