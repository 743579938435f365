"""Modal submissions are bound to who opened the form, where, and the permissions it needs."""

from __future__ import annotations

import importlib
import pkgutil

import discord

import cogs
from bot.i18n import t
from bot.ui import BoundModal
from tests.conftest import (
    ACCOUNTS,
    ADMIN_A,
    ADMIN_B,
    CH_A,
    CH_B,
    GUILD_A,
    GUILD_B,
    MEMBER_A,
    MEMBER_A2,
)
from tests.genutil import FAST_POLLING, imagine, task_id_of, wait_result
from tests.helpers import answer_text, is_ephemeral

NOT_YOURS = t("errors.modal_not_yours", "en-US")
ATTACKER = ("evil@guild.test", "evil-Passw0rd")


async def open_account_form(harness, user_id: int = ADMIN_A) -> None:
    ix = await harness.fake.slash(
        "account", subcommand="set", user_id=user_id, guild_id=GUILD_A, channel_id=CH_A
    )
    await ix.response()
    assert ix.modal is not None, await answer_text(ix)


async def submit_account_form(
    harness, email: str, password: str, *, user_id: int, guild_id: int, shown_to: int
):
    return await harness.fake.submit_modal(
        "account:set",
        {"email": email, "password": password},
        user_id=user_id,
        guild_id=guild_id,
        channel_id=CH_A if guild_id == GUILD_A else CH_B,
        shown_to=shown_to,
    )


async def test_nobody_else_can_submit_an_admins_open_account_form(harness):
    harness.emu.add_account(*ATTACKER)  # credentials the service would accept
    await open_account_form(harness)
    logins = harness.emu.state.calls["get_token"]
    # A member of the guild, and another guild's admin (who has Manage Server there).
    for user_id, guild_id in ((MEMBER_A, GUILD_A), (ADMIN_B, GUILD_B)):
        forged = await submit_account_form(
            harness, *ATTACKER, user_id=user_id, guild_id=guild_id, shown_to=ADMIN_A
        )
        assert await answer_text(forged) == NOT_YOURS
        assert is_ephemeral(forged)
    assert harness.emu.state.calls["get_token"] == logins  # the service was never asked
    for guild_id, (email, _) in ACCOUNTS.items():
        row = await harness.bot.store.accounts.get(guild_id)
        assert row is not None and row.email_hint == email[0] + "***@guild.test"
    # The form is still open for the admin who opened it.
    email, password = ACCOUNTS[GUILD_A]
    done = await submit_account_form(
        harness, email, password, user_id=ADMIN_A, guild_id=GUILD_A, shown_to=ADMIN_A
    )
    assert t("account.saved", "en-US") in await answer_text(done)


async def test_losing_manage_server_while_the_form_is_open_refuses_the_submission(harness):
    harness.emu.add_account(*ATTACKER)
    harness.fake.set_permissions(GUILD_A, MEMBER_A, manage_guild=True)
    await open_account_form(harness, MEMBER_A)
    harness.fake.set_permissions(GUILD_A, MEMBER_A, manage_guild=False)
    refused = await submit_account_form(
        harness, *ATTACKER, user_id=MEMBER_A, guild_id=GUILD_A, shown_to=MEMBER_A
    )
    assert await answer_text(refused) == t("errors.missing_permissions", "en-US")
    assert is_ephemeral(refused)
    row = await harness.bot.store.accounts.get(GUILD_A)
    assert row is not None and row.email_hint == "a***@guild.test"


async def test_nobody_else_can_submit_a_members_open_init_image_form(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING)
    source = await wait_result(h, task_id_of(await answer_text(await imagine(h, count=1))))
    ix = await h.fake.context_menu(
        "Use as init image", user_id=MEMBER_A2, guild_id=GUILD_A, channel_id=CH_A,
        target_message=source,
    )  # fmt: skip
    await ix.response()
    before = [task.id for task in await h.bot.store.tasks.recent(GUILD_A, None, 50)]
    forged = await h.fake.submit_modal(
        "generate:init",
        {"prompt": "charged to someone else"},
        user_id=MEMBER_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        shown_to=MEMBER_A2,
    )
    assert await answer_text(forged) == NOT_YOURS
    assert [task.id for task in await h.bot.store.tasks.recent(GUILD_A, None, 50)] == before
    assert h.emu.state.calls["upload_imgs"] == 0


def test_every_modal_of_the_bot_is_bound_to_its_opener():
    for module in pkgutil.iter_modules(cogs.__path__, "cogs."):
        importlib.import_module(module.name)
    found, pending = [], list(discord.ui.Modal.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if cls.__module__.startswith(("bot.", "cogs.")) and cls is not BoundModal:
            found.append(cls)
    assert {cls.__name__ for cls in found} >= {"AccountModal", "InitImageModal"}
    assert all(issubclass(cls, BoundModal) for cls in found), found
