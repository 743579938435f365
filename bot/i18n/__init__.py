"""Message catalogs (en-US, zh-CN): templates, locales and plural forms.

User-facing text lives in `<locale>.json`, flat `key -> template` maps using
`str.format` fields. Command names, descriptions, options and choices are
looked up under derived keys (see `bot.translator`), so cogs write plain English
and the catalogs carry every language, English included. Nothing here depends on
discord.py: a locale is a tag such as "zh-CN" or an enum member whose value is one
(discord.Locale).

A message that names a number of things is stored as plural forms, `<key>.one`,
`<key>.other` (and `few`, `many`, ... where a language needs them), and is chosen
by its `count` parameter under the language's CLDR plural rules (from Babel).
Both catalogs keep the same keys, so a Chinese message has a `.one` form too,
which Chinese rules (everything is `other`) never pick.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path
from typing import Protocol, TypeAlias

from babel import Locale
from babel.plural import PluralRule

log = logging.getLogger(__name__)

DEFAULT_LOCALE = "en-US"
LOCALES = ("en-US", "zh-CN")
_DIR = Path(__file__).parent


class LocaleEnum(Protocol):
    """A locale enum member (such as discord.Locale) whose value is the locale's tag."""

    @property
    def value(self) -> str: ...


LocaleLike: TypeAlias = str | LocaleEnum | None


@cache
def catalog(locale: str) -> dict[str, str]:
    """The flat message catalog of one supported locale."""
    with (_DIR / f"{locale}.json").open(encoding="utf-8") as fh:
        messages: dict[str, str] = json.load(fh)
    return messages


@cache
def _plural_rule(locale: str) -> PluralRule:
    return Locale.parse(locale, sep="-").plural_form


def plural_form(count: int, locale: str) -> str:
    """The CLDR plural category of `count` in a supported locale: 'one', 'few', ..., 'other'."""
    return _plural_rule(locale)(count)


def normalize(locale: LocaleLike) -> str | None:
    """Map a Discord locale to a supported catalog, or None when there is no match."""
    if locale is None:
        return None
    value = locale if isinstance(locale, str) else str(locale.value)
    if value.startswith("zh"):
        return "zh-CN"
    if value.startswith("en"):
        return "en-US"
    return value if value in LOCALES else None


def pick_locale(*candidates: LocaleLike) -> str:
    """The first supported locale among candidates (interaction, then guild), else en-US."""
    for candidate in candidates:
        found = normalize(candidate)
        if found:
            return found
    return DEFAULT_LOCALE


def template(key: str, locale: LocaleLike, count: object = None) -> str | None:
    """The template of a message in the given locale, else in en-US, else None.

    A plural message (`<key>.other` in the catalog) takes the form `count` needs in that
    language, or `other` when the catalog lacks that form.
    """
    lang = normalize(locale) or DEFAULT_LOCALE
    for language in dict.fromkeys((lang, DEFAULT_LOCALE)):
        messages = catalog(language)
        if key in messages:
            return messages[key]
        if isinstance(count, int) and f"{key}.other" in messages:
            form = plural_form(count, language)
            return messages.get(f"{key}.{form}") or messages[f"{key}.other"]
    return None


def t(key: str, locale: LocaleLike = None, /, **params: object) -> str:
    """Render a message in the given locale, falling back to en-US, then to the key itself.

    A plural message is chosen by the `count` parameter (see `template`).
    """
    found = template(key, locale, params.get("count"))
    if found is None:
        log.warning("missing message key %s", key)
        return key
    try:
        return found.format(**params)
    except (KeyError, IndexError, ValueError):
        log.warning("bad parameters for message key %s", key)
        return found


def tn(key: str, count: int, locale: LocaleLike = None, /, **params: object) -> str:
    """Render the plural form of a message that `count` needs in the locale's language."""
    return t(key, locale, count=count, **params)
