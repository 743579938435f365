"""One error model: domain errors carry a message key, know nothing of discord.py, and reach
the member translated through one mapping (bot.tree.describe_error), however they arrive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from discord import AppCommandOptionType, app_commands

import bot.app  # noqa: F401  (loads every module, so every error class is known)
from bot.errors import AccountProblem, DomainError, ServiceFailure, UserFacingError
from bot.i18n import t
from bot.jobs.errors import AccountUnreadable, NoAccount, UserBusy
from bot.store import StoreUnavailable
from bot.tree import describe_error
from bot.v1b import errors as v1b
from tests.conftest import ADMIN_A, CH_A, GUILD_A
from tests.helpers import answer_text

ROOT = Path(__file__).resolve().parent.parent
ERROR_MODULES = ("bot.errors", "bot.jobs.errors", "bot.v1b.errors", "bot.store.errors")


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_error_modules_load_no_discord() -> None:
    code = (
        f"import sys, {', '.join(ERROR_MODULES)}\n"
        "print(sorted(m for m in sys.modules if m.partition('.')[0] == 'discord'))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_no_domain_error_is_a_discord_class() -> None:
    classes = {DomainError, *_subclasses(DomainError)}
    assert {UserFacingError, UserBusy, AccountUnreadable, StoreUnavailable, v1b.ServiceError} <= (
        classes
    )
    for cls in classes:
        foreign = [base for base in cls.__mro__ if base.__module__.partition(".")[0] == "discord"]
        assert not foreign, f"{cls.__qualname__} derives from {foreign}"


def test_errors_are_grouped_by_what_went_wrong() -> None:
    assert isinstance(NoAccount(), AccountProblem)
    assert isinstance(AccountUnreadable(), AccountProblem)
    assert isinstance(v1b.WrongPassword("login", "no"), AccountProblem)
    assert isinstance(StoreUnavailable("SQLITE_FULL"), ServiceFailure)
    assert isinstance(v1b.ConnectionFailed("login", "refused"), ServiceFailure)


def _command() -> app_commands.Command:
    async def callback(interaction: object) -> None:
        """A command."""

    return app_commands.Command(name="probe", description="probe", callback=callback)


class _Number(app_commands.Transformer):
    """A transformer, only for the name discord.py's error shows."""


def _transformed(cause: Exception) -> app_commands.TransformerError:
    """The error discord.py raises when a transformer fails with `cause`."""
    try:
        kind = AppCommandOptionType.string
        raise app_commands.TransformerError("bad", kind, _Number()) from cause
    except app_commands.TransformerError as error:
        return error


@pytest.mark.parametrize(
    "wrap",
    [
        lambda error: error,
        lambda error: app_commands.CommandInvokeError(_command(), error),
        _transformed,
    ],
    ids=["raised", "in-command-body", "in-transformer"],
)
def test_a_domain_error_reads_the_same_however_discord_wrapped_it(wrap) -> None:
    shown = describe_error(wrap(UserBusy(count=3)), "zh-CN")
    assert shown == t("refused.user_busy", "zh-CN", count=3)
    assert shown != t("refused.user_busy", "en-US", count=3)


def test_a_transformer_failing_for_its_own_reasons_reads_as_a_bad_option() -> None:
    shown = describe_error(_transformed(ValueError("not a number")), "en-US")
    assert shown == t("errors.bad_option", "en-US", value="bad")


async def test_each_kind_of_domain_error_reaches_the_member_translated(harness) -> None:
    """Raised inside a real command, every family is answered from the catalog, in zh-CN."""
    errors: list[tuple[DomainError, str]] = [
        (UserFacingError("train.busy", count=2), t("train.busy", "zh-CN", count=2)),
        (NoAccount(), t("refused.no_account", "zh-CN")),
        (AccountUnreadable(), t("account.unreadable", "zh-CN")),
        (StoreUnavailable("SQLITE_FULL"), t("errors.store_unavailable", "zh-CN")),
        (
            v1b.InvalidRequest("txt2img", "prompt too long"),
            t("v1b.invalid_request", "zh-CN", detail="prompt too long"),
        ),
        (v1b.WrongPassword("login", "wrong password", code=601), t("v1b.wrong_password", "zh-CN")),
    ]
    for error, expected in errors:

        async def failing(guild_id: int, error: DomainError = error) -> None:
            raise error

        harness.bot.accounts.status = failing
        ix = await harness.fake.slash(
            "account",
            subcommand="status",
            user_id=ADMIN_A,
            guild_id=GUILD_A,
            channel_id=CH_A,
            locale="zh-CN",
        )
        assert await answer_text(ix) == expected, type(error).__name__
