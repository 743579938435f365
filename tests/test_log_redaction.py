"""The log redactor masks the secrets in use, and nothing an admin merely typed."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from bot.i18n import t
from bot.logs import SECRET_MIN_LENGTH, SecretRedactor, redactor
from tests.conftest import ACCOUNTS, ADMIN_A, CH_A, GUILD_A
from tests.helpers import answer_text, is_ephemeral

log = logging.getLogger("bot.redaction_test")


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """What the operator's log handler (with the global redactor, as set up at start) writes."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(redactor)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield out
    finally:
        log.removeHandler(handler)


async def _run_account(harness, sub: str, **modal: str) -> str:
    fake = harness.fake
    where = {"user_id": ADMIN_A, "guild_id": GUILD_A, "channel_id": CH_A}
    ix = await fake.slash("account", subcommand=sub, **where)
    if not modal:
        return await answer_text(ix)
    await ix.response()
    submitted = await fake.submit_modal("account:set", modal, **where)
    text = await answer_text(submitted)
    assert is_ephemeral(submitted)
    return text


async def test_wrong_passwords_never_mask_words_in_the_logs(harness, logged) -> None:
    before = redactor.secret_count
    wrong = ["task", str(GUILD_A), "guild", "snowfox-long-but-wrong"]
    for password in wrong:
        text = await _run_account(harness, "set", email="a@guild.test", password=password)
        assert "rejected the password" in text
    assert redactor.secret_count == before
    log.info("task 7 of guild %s: snowfox-long-but-wrong", GUILD_A)
    assert logged.getvalue() == f"task 7 of guild {GUILD_A}: snowfox-long-but-wrong\n"


async def test_only_the_current_password_of_an_account_is_masked(harness, logged) -> None:
    _, old = ACCOUNTS[GUILD_A]
    new = "second-Secret-3"
    harness.emu.add_account("a2@guild.test", new)
    log.info("before: %s", old)
    text = await _run_account(harness, "set", email="a2@guild.test", password=new)
    assert text == t("account.saved", "en-US")
    assert await harness.bot.store.accounts.get(GUILD_A) is not None
    log.info("after: %s %s", old, new)
    await _run_account(harness, "remove")
    log.info("removed: %s", new)
    assert logged.getvalue().splitlines() == [
        "before: ***",
        f"after: {old} ***",
        f"removed: {new}",
    ]


def test_secrets_are_replaced_per_key_and_short_ones_ignored() -> None:
    r = SecretRedactor()
    r.set("a", "x" * (SECRET_MIN_LENGTH - 1), "token-one-long")
    r.set("b", "token-two-long", "token-two-longer")
    assert r.redact("token-one-long token-two-longer xxxxxxx") == "*** *** xxxxxxx"
    r.set("a", "token-three-long")
    assert r.redact("token-one-long token-three-long") == "token-one-long ***"
    r.discard("b")
    assert r.secret_count == 1
    assert r.redact("token-two-long") == "token-two-long"
