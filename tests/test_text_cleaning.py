"""Invisible characters cannot hide blocked words, and lengths are checked after cleaning."""

from __future__ import annotations

import sys

import pytest
import regex

from bot.errors import UserFacingError
from bot.i18n import t
from bot.text import clean_prompt, clean_text
from tests.conftest import ADMIN_A, CH_A, GUILD_A
from tests.genutil import imagine
from tests.helpers import answer_text

# The invisible characters the hardening review hid blocked words with; none is in Cc/Cf/Cs/Co/Cn.
REPORTED = [
    0x034F,  # COMBINING GRAPHEME JOINER
    *range(0xFE00, 0xFE10),  # variation selectors 1-16
    *range(0xE0100, 0xE01F0),  # variation selectors 17-256
    0x115F, 0x1160, 0x3164, 0xFFA0,  # Hangul fillers
    0x2800,  # BRAILLE PATTERN BLANK
    0x17B4, 0x17B5,  # Khmer inherent vowels
]  # fmt: skip
# "# Total code points: 4174" under Default_Ignorable_Code_Point in DerivedCoreProperties.txt
# (unchanged from Unicode 6.1 up to 16.0).
DEFAULT_IGNORABLE_COUNT = 4174


def _default_ignorables() -> list[int]:
    prop = regex.compile(r"\p{Default_Ignorable_Code_Point}")
    return [cp for cp in range(sys.maxunicode + 1) if prop.match(chr(cp))]


def test_every_reported_invisible_character_is_dropped() -> None:
    for cp in REPORTED:
        assert clean_text(f"n{chr(cp)}itro") == "nitro", hex(cp)


def test_the_whole_default_ignorable_set_is_dropped() -> None:
    ignorables = _default_ignorables()
    assert len(ignorables) == DEFAULT_IGNORABLE_COUNT
    assert "".join(clean_text(f"a{chr(cp)}b") for cp in ignorables) == "ab" * len(ignorables)


def test_whitespace_still_separates_words() -> None:
    assert clean_text(" a\tb\u3000c\u00a0 d\n") == "a b c d"


def test_lengths_are_checked_after_normalisation() -> None:
    assert len(clean_text("\ufdfa")) == 18
    with pytest.raises(UserFacingError) as refused:
        clean_prompt("\ufdfa" * 100, max_length=1000, field="negative_prompt")
    assert refused.value.key == "text.too_long.negative_prompt"
    assert refused.value.params == {"length": 1800, "limit": 1000}


async def test_invisible_characters_do_not_hide_a_blocked_word(harness) -> None:
    await harness.bot.store.settings.update(GUILD_A, blocked_words=["nitro"])
    hidden = "free n\u034fi\ufe0ft\u3164r\u2800o\U000e0100 here"
    text = await answer_text(await imagine(harness, hidden))
    assert text == t("refused.blocked_word", "en-US", word="nitro")
    assert await harness.bot.store.tasks.recent(GUILD_A) == []


async def test_blocked_words_are_cleaned_when_added(harness) -> None:
    ix = await harness.fake.slash(
        "settings",
        subcommand="blocked-words",
        options={"action": "add", "word": "Ni\u200btro\u034f"},
        user_id=ADMIN_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
    )
    await answer_text(ix)
    assert (await harness.bot.store.settings.get(GUILD_A)).blocked_words == ("nitro",)


async def test_a_negative_prompt_that_expands_past_its_limit_is_refused(harness) -> None:
    ix = await imagine(harness, "a fox", negative_prompt="\ufdfa" * 1000)
    text = await answer_text(ix)
    assert text == t("text.too_long.negative_prompt", "en-US", length=18000, limit=1000)
    assert await harness.bot.store.tasks.recent(GUILD_A) == []


async def test_a_prompt_that_expands_past_the_limit_says_by_how_much(harness) -> None:
    text = await answer_text(await imagine(harness, "\ufdfa" * 100))
    assert text == t("refused.prompt_too_long", "en-US", length=1800, limit=1000)
