"""No member waits for a server's generation form once the bot has one: the forms of the
servers with an account are fetched after a start, and a stale copy is served while the
fresh one comes."""

from __future__ import annotations

import asyncio

from bot.forms import FormCache
from tests.conftest import GUILD_A, GUILD_B, MEMBER_A
from tests.genutil import eventually, imagine, is_accepted
from tests.helpers import answer_text


async def test_a_restart_fetches_the_forms_of_the_servers_with_an_account(harness):
    calls = harness.emu.state.calls
    await harness.restart()
    await eventually(lambda: len(harness.bot.forms) == 2)  # both servers' forms, unasked
    fetched = calls["get_generation_form"]
    ix = await imagine(harness, prompt="the first command after a start", user_id=MEMBER_A)
    assert is_accepted(await answer_text(ix))
    assert calls["get_generation_form"] == fetched  # it found the form there


async def test_no_form_is_fetched_at_start_when_warming_is_off(harness_factory):
    h = await harness_factory(miaohua={"warm_forms": False})
    await h.restart()
    await asyncio.sleep(0.3)
    assert len(h.bot.forms) == 0


async def test_a_server_whose_form_fails_does_not_stop_the_others():
    class Accounts:
        async def session_for(self, guild_id: int) -> object:
            if guild_id == GUILD_A:
                raise ConnectionError("the service is down for this account")
            return Session()

    class Session:
        async def generation_form(self) -> str:
            return "form"

    forms = FormCache(Accounts())
    assert await forms.warm([GUILD_A, GUILD_B]) == 1
    assert await forms.generation_form(GUILD_B) == "form"


async def test_a_stale_form_is_served_at_once_while_the_fresh_one_is_fetched():
    gate = asyncio.Event()
    fetches = 0

    class Accounts:
        async def session_for(self, guild_id: int) -> object:
            return Session()

    class Session:
        async def generation_form(self) -> str:
            nonlocal fetches
            fetches += 1
            if fetches > 1:
                await gate.wait()
            return f"form {fetches}"

    now = [0.0]
    forms = FormCache(Accounts(), ttl=10, clock=lambda: now[0])
    assert await forms.generation_form(GUILD_A) == "form 1"
    now[0] = 11.0  # stale
    assert await forms.generation_form(GUILD_A) == "form 1"  # not waiting for the refresh
    await eventually(lambda: fetches == 2)
    assert await forms.generation_form(GUILD_A) == "form 1"  # one refresh under way, not two
    await asyncio.sleep(0.05)
    assert fetches == 2
    gate.set()
    await eventually(lambda: forms._generation.entries[GUILD_A][1] == "form 2")
    assert await forms.generation_form(GUILD_A) == "form 2"
    assert fetches == 2


async def test_closing_cancels_every_fetch_under_way_even_an_invalidated_one():
    started, cancelled = asyncio.Event(), asyncio.Event()

    class Accounts:
        async def session_for(self, guild_id: int) -> object:
            return Session()

    class Session:
        async def train_form(self) -> str:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "never"

    forms = FormCache(Accounts())
    waiter = asyncio.create_task(forms.train_form(GUILD_A))
    await started.wait()
    forms.invalidate(GUILD_A)  # the fetch is no longer the guild's, but still under way
    await forms.close()
    assert cancelled.is_set()
    await asyncio.gather(waiter, return_exceptions=True)


async def test_a_form_fetch_under_way_at_shutdown_does_not_call_the_service_afterwards(harness):
    # A refresh in the background (an autocomplete's, a stale form's) used to outlive the
    # service client: closed under it, the client opened a new HTTP session for the retry,
    # and that session was never closed.
    bot = harness.bot
    bot.forms.invalidate(GUILD_A)
    harness.emu.state.settings.faults.latency = 0.5
    fetch = asyncio.create_task(bot.forms.train_form(GUILD_A))
    calls = harness.emu.state.calls
    await eventually(lambda: calls["get_train_form"] >= 1)
    await harness.stop()
    assert fetch.done()
    asked = calls["get_train_form"]
    await asyncio.sleep(1.5)  # the service's answer, and any retry's
    assert calls["get_train_form"] == asked
