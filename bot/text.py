"""Cleaning user text before it is stored, checked against blocked words or sent to the service."""

from __future__ import annotations

import re
import unicodedata

# The `regex` module ships the Unicode Character Database's properties, kept current with each
# Unicode release; Python's unicodedata has no Default_Ignorable_Code_Point. A hand-written
# list would silently fall behind (variation selectors, Hangul fillers, tag characters...).
import regex

from bot.errors import UserFacingError

_SPACES = re.compile(r"\s+")
# Dropped, as a renderer may draw them as nothing (whitespace is kept as word separators):
# - Default_Ignorable_Code_Point, complete (4,174 code points as of Unicode 15/16; the set
#   excludes whitespace by definition);
# - U+2800 BRAILLE PATTERN BLANK: a visible symbol by its properties, but drawn blank;
# - the rest of Cc/Cf/Cs/Co/Cn: controls, format characters outside the set (U+FFF9..FFFB),
#   lone surrogates, private use and unassigned code points have no business in a prompt.
#   These categories are read from unicodedata, whose Unicode version NFKC uses too, so a
#   character that Python cannot normalise yet (unassigned to it) is never kept.
_IGNORABLE = regex.compile(r"[\p{Default_Ignorable_Code_Point}\u2800]+")
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})

NEGATIVE_PROMPT_MAX = 1000
TRIGGER_WORD_MAX = 60
DESCRIPTION_MAX = 300  # of a trained model


def strip_invisible(text: str) -> str:
    """Drop every character that renders as nothing (see `_IGNORABLE`)."""
    return "".join(
        ch
        for ch in _IGNORABLE.sub("", text)
        if ch.isspace() or unicodedata.category(ch) not in _DROPPED_CATEGORIES
    )


def clean_text(text: str | None) -> str:
    """NFKC-normalise, drop invisible characters, collapse whitespace to single spaces.

    Invisible characters would otherwise let a prompt slip past blocked words and make stored
    text look different from what is shown. They are dropped both before normalising (so
    what they separated composes as it would on screen) and after (NFKC can produce some,
    e.g. U+FFA0 becomes U+3164).
    """
    normalised = unicodedata.normalize("NFKC", strip_invisible(text or ""))
    return _SPACES.sub(" ", strip_invisible(normalised)).strip()


def clean_prompt(
    text: str | None, *, required: bool = True, max_length: int | None = None, field: str = "prompt"
) -> str:
    """`clean_text`, refusing an empty result (when required) and one longer than max_length.

    The length is checked after cleaning because NFKC can expand text: one U+FDFA becomes
    18 characters, so 1,000 characters typed in Discord can be 18,000 once normalised.
    """
    cleaned = clean_text(text)
    if required and not cleaned:
        raise UserFacingError("generate.empty_prompt")
    if max_length is not None and len(cleaned) > max_length:
        raise UserFacingError(f"text.too_long.{field}", length=len(cleaned), limit=max_length)
    return cleaned
