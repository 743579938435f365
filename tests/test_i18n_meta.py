"""Catalog completeness, command localizations, unique command names, unexpected errors."""

from __future__ import annotations

import re
from pathlib import Path

from babel import Locale

from bot.app import cog_modules
from bot.errors import DomainError
from bot.i18n import LOCALES, catalog, t, tn
from bot.jobs.models import FailReason
from bot.training.reasons import TrainingFailReason
from tests.conftest import ADMIN_A, CH_A, GUILD_A
from tests.helpers import answer_text

ROOT = Path(__file__).resolve().parent.parent
KEY_USE = re.compile(r"""(?:\bt|UserFacingError)\(\s*["']([a-z0-9_.-]+)["']""")
PLURAL_USE = re.compile(r"""\btn\(\s*["']([a-z0-9_.-]+)["']""")
PLURAL_FORM = re.compile(r"^(.+)\.(zero|one|two|few|many|other)$")


def test_catalogs_have_the_same_keys():
    en, zh = set(catalog("en-US")), set(catalog("zh-CN"))
    assert en - zh == set(), f"missing in zh-CN: {sorted(en - zh)}"
    assert zh - en == set(), f"missing in en-US: {sorted(zh - en)}"


def test_every_message_key_used_in_code_exists_in_both_catalogs():
    used: set[str] = set()
    for path in [*ROOT.glob("bot/**/*.py"), *ROOT.glob("cogs/**/*.py")]:
        if "emulator" in path.parts or "v1b" in path.parts:
            continue
        used |= set(KEY_USE.findall(path.read_text(encoding="utf-8")))
    assert used, "no message keys found"
    # Keys chosen at run time: errors and failure reasons.
    used |= error_keys()
    used |= reason_keys()
    for locale in LOCALES:
        missing = sorted(k for k in used if k not in catalog(locale) and k not in plural_keys())
        assert not missing, f"{locale} lacks {missing}"


def error_keys() -> set[str]:
    """The message key of every domain error whose class names one (the rest pass it in)."""
    return {vars(cls)["key"] for cls in _subclasses(DomainError) if "key" in vars(cls)}


def reason_keys() -> set[str]:
    """The message of every failure reason of generation and training, and their fallbacks."""
    return {
        "fail.unknown",
        "train.reason.unknown",
        *(f"fail.{reason.value}" for reason in FailReason),
        *(f"train.reason.{reason.value}" for reason in TrainingFailReason),
    }


def test_every_error_and_failure_reason_has_a_message_in_both_catalogs():
    errors = error_keys()
    # Every family is there: refusals, account problems, the service's and the store's errors.
    assert {"refused.user_busy", "account.unreadable", "v1b.wrong_password"} <= errors
    assert "errors.store_unavailable" in errors
    for locale in LOCALES:
        messages = catalog(locale)
        # A message with a count is stored as its plural forms, `<key>.other` among them.
        missing = sorted(
            k for k in errors | reason_keys() if k not in messages and f"{k}.other" not in messages
        )
        assert not missing, f"{locale} lacks {missing}"


def test_every_failure_reason_message_belongs_to_a_reason():
    """A reason message no enum member stores is dead text, or a reason the enum lost."""
    known = reason_keys() | {"fail.message"}
    stale = sorted(
        key
        for key in catalog("en-US")
        if key.startswith(("fail.", "train.reason.")) and key not in known
    )
    assert not stale, f"messages of no failure reason: {stale}"


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_templates_use_the_same_fields_in_both_languages():
    field = re.compile(r"\{(\w+)")
    en, zh = catalog("en-US"), catalog("zh-CN")
    for key, text in en.items():
        assert set(field.findall(text)) == set(field.findall(zh[key])), key


def test_zh_cn_text_is_really_chinese():
    zh = catalog("zh-CN")
    chinese = [k for k, v in zh.items() if re.search(r"[\u4e00-\u9fff]", v)]
    assert len(chinese) >= 0.8 * len(zh)


def test_unknown_key_falls_back_to_the_key():
    assert t("no.such.key", "zh-CN") == "no.such.key"


async def test_every_command_is_unique_and_fully_localized(harness):
    assert {m for m in harness.bot.extensions} == set(cog_modules())
    put = [r for r in harness.fake.requests if r.method == "PUT" and r.path.endswith("/commands")][
        -1
    ]
    commands = put.json
    names = [(c.get("type", 1), c["name"]) for c in commands]
    assert len(names) == len(set(names)), f"duplicate command names: {names}"

    def check(node: dict, where: str) -> None:
        if node.get("description"):
            assert "zh-CN" in (node.get("description_localizations") or {}), where
        if node.get("type", 1) != 3 or "options" in node:
            assert "zh-CN" in (node.get("name_localizations") or {}), f"{where} name"
        for choice in node.get("choices") or []:
            assert "zh-CN" in (choice.get("name_localizations") or {}), f"{where} choice"
        for option in node.get("options") or []:
            check(option, f"{where} {option['name']}")

    for command in commands:
        check(command, command["name"])


async def test_unexpected_error_gets_an_id_shown_to_the_user_and_logged(harness, caplog):
    bot = harness.bot

    async def broken(guild_id):
        raise RuntimeError("boom")

    bot.accounts.status = broken  # an unexpected failure inside a command
    ix = await harness.fake.slash(
        "account", subcommand="status", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
    )
    text = await answer_text(ix)
    error_id = re.search(r"error id `([0-9a-f]{8})`", text).group(1)
    records = [r for r in caplog.records if error_id in r.getMessage()]
    assert records and records[0].exc_info and "boom" in str(records[0].exc_info[1])
    harness.check.ignore(lambda r: error_id in r.getMessage())


def plural_keys() -> set[str]:
    """Messages stored as plural forms (`<key>.one`, `<key>.other`, ...) in either catalog."""
    return {
        found.group(1)
        for locale in LOCALES
        for key in catalog(locale)
        if (found := PLURAL_FORM.match(key))
    }


def test_every_plural_message_has_the_forms_its_language_needs():
    assert plural_keys(), "no plural messages found"
    for locale in LOCALES:
        needed = set(Locale.parse(locale, sep="-").plural_form.tags) | {"other"}
        for key in plural_keys():
            forms = {form for form in needed if f"{key}.{form}" in catalog(locale)}
            assert forms == needed, f"{locale} {key} lacks {sorted(needed - forms)}"
            assert key not in catalog(locale), f"{key} is both a message and a plural"


def test_every_plural_key_used_in_code_is_a_plural_message():
    used: set[str] = set()
    for path in [*ROOT.glob("bot/**/*.py"), *ROOT.glob("cogs/**/*.py")]:
        used |= set(PLURAL_USE.findall(path.read_text(encoding="utf-8")))
    assert used, "no plural message keys found"
    assert used <= plural_keys(), f"not plural messages: {sorted(used - plural_keys())}"


def test_no_message_spells_a_plural_with_parentheses():
    for locale in LOCALES:
        spelled = sorted(k for k, v in catalog(locale).items() if re.search(r"\w\(s\)", v))
        assert not spelled, f"{locale}: {spelled}"


def test_a_count_picks_the_plural_form_of_its_language():
    assert tn("result.missing", 1, "en-US").startswith("1 image could not")
    assert tn("result.missing", 0, "en-US").startswith("0 images could not")
    assert tn("result.missing", 2, "en-US").startswith("2 images could not")
    assert tn("result.missing", 1, "zh-CN").startswith("有 1 张图片")
    # Errors name their number `count`, and the plain lookup picks the form from it.
    assert t("train.busy", "en-US", count=1).startswith("This server already runs 1 training;")
    assert t("train.busy", "fr", count=3).startswith("This server already runs 3 trainings;")
