"""How commands acknowledge their interaction: as few requests to Discord as it takes."""

from __future__ import annotations

import asyncio

from bot import replies
from tests.conftest import CH_A, GUILD_A
from tests.genutil import imagine, is_accepted, task_id_of
from tests.helpers import answer_text, is_ephemeral


async def test_imagine_answered_at_once_takes_one_request_to_discord(harness, monkeypatch):
    # A deferral and then a follow-up cost two requests for every /imagine; one answering
    # at once needs only its response (a third of a command's requests to Discord).
    # A window no busy test machine overruns: what is checked is the answer's shape.
    monkeypatch.setattr(replies, "ANSWER_WITHIN", 5.0, raising=False)
    ix = await imagine(harness, prompt="answered at once")
    text = await answer_text(ix)
    assert is_accepted(text)
    assert [kind for kind, _ in ix.log] == ["callback"]
    # The answer is the task's public status message: none is posted besides it.
    assert ix.callback["type"] == 4 and not is_ephemeral(ix)
    await harness.idle()
    task = await harness.bot.store.tasks.get(task_id_of(text))
    assert task.status_message_id == ix.original_id


async def test_imagine_slower_than_its_window_is_deferred_then_followed_up(harness, monkeypatch):
    # The guild's form is slow to come: the member sees "thinking..." in time, then the answer.
    session = await harness.bot.accounts.session_for(GUILD_A)
    fetch, gate = session.generation_form, asyncio.Event()

    async def held_fetch():
        await gate.wait()
        return await fetch()

    monkeypatch.setattr(session, "generation_form", held_fetch)
    harness.bot.forms.invalidate(GUILD_A)
    ix = await imagine(harness, prompt="answered late")
    assert (await ix.response())["type"] == 5  # deferred while the form was awaited
    gate.set()
    text = await answer_text(ix)
    assert text.startswith("Accepted as task #")  # the private note, the deferral's privacy
    assert [kind for kind, _ in ix.log] == ["callback", "followup"]
    assert is_ephemeral(ix)
    # So the task's status message is posted in the channel beside it.
    task_id = task_id_of(text)
    status = await harness.fake.wait_for_message(
        CH_A, lambda m: f"Task #{task_id} " in m["content"]
    )
    assert int(status["id"]) != ix.original_id


async def test_imagine_with_a_slow_moment_is_still_answered_in_one_request(harness, monkeypatch):
    # A command whose work takes a tenth of a second (a form fetched, a busy store) answers
    # directly: a deferral and a follow-up would double the requests of a busy bot.
    session = await harness.bot.accounts.session_for(GUILD_A)
    fetch = session.generation_form

    async def slow_fetch():
        await asyncio.sleep(0.1)
        return await fetch()

    monkeypatch.setattr(session, "generation_form", slow_fetch)
    harness.bot.forms.invalidate(GUILD_A)
    ix = await imagine(harness, prompt="a slow moment")
    assert is_accepted(await answer_text(ix))
    assert [kind for kind, _ in ix.log] == ["callback"]
    assert ix.callback["type"] == 4


def test_the_deferral_is_timed_from_the_interactions_creation():
    window = replies.ANSWER_WITHIN
    assert replies.defer_delay(window, age=0.0) == window
    assert replies.defer_delay(window, age=0.25 * window) == 0.75 * window
    # It waited in a lagging bot's queue: deferred at once, inside Discord's window.
    assert replies.defer_delay(window, age=2.5) == 0.0
    # A local clock behind Discord's never pushes the deferral past the window.
    assert replies.defer_delay(window, age=-30.0) == window
