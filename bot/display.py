"""Showing user- and service-supplied text in Discord: escaped, clipped, in one place.

Prompts, model names, trigger words and file names come from members or from the service;
rendered as they are, `[Free Nitro](https://…)` becomes a masked link under the bot's name
and a 65,535-character file name makes the whole reply invalid. Everything such text goes
through is here, in the Discord adapter layer; domain code keeps the text as it was given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import discord

from bot.i18n import t, template

ELLIPSIS = "…"
# Discord's limits (https://discord.com/developers/docs/resources/message).
CONTENT_MAX = 2000
EMBED_TOTAL_MAX = 6000
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELD_VALUE_MAX = 1024
CHOICE_MAX = 100
# A name quoted in a sentence (a file, a model): enough to recognise it.
QUOTED_MAX = 100
# Free text in a sentence (the service's explanation, a list of choices).
PROSE_MAX = 500


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in … when it was cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + ELLIPSIS


def shown(text: object, limit: int = PROSE_MAX) -> str:
    """Text shown literally in Discord markdown: no formatting, link or mention, then clipped."""
    value = str(text)
    if _MARKUP.search(value) is not None:
        value = escaped(value)
    return clip(value, limit)


# Every character that can start something `escaped` changes: markdown marks, a quote's ">",
# a heading's "#", a list's or subtext's "-", a masked link's "[", a mention's "@". Text with
# none of them (sizes, seeds, counts, most prompts) is left as it is, without the regexes.
_MARKUP = re.compile(r"[_\\~|*`>#\[@-]")


def escaped(value: str) -> str:
    """`value` with its markdown and mentions escaped (`shown` without the clipping)."""
    # escape_markdown escapes only the first of several masked links on a line, so every
    # bracket is escaped here: pieces without one are escaped, then joined by an escaped "[".
    marked = r"\[".join(discord.utils.escape_markdown(piece) for piece in value.split("["))
    return discord.utils.escape_mentions(marked)


def in_code(text: object, limit: int = QUOTED_MAX) -> str:
    """Text shown inside a `code span`: markdown is inert there, but a backtick would end it."""
    return clip(str(text).replace("`", "ˋ").replace("\n", " "), limit) or " "


def in_code_or_none(text: str | None, locale: str | None) -> str:
    """A value in a code span, or a localized "none" when empty (a `-` reads like a value)."""
    return f"`{in_code(text)}`" if text else t("train.trigger_none", locale)


def render(
    key: str,
    locale: str | None,
    /,
    trusted: Mapping[str, object] | None = None,
    **untrusted: object,
) -> str:
    """`t()` with each untrusted string shown literally and clipped (see `shown`, `in_code`).

    Whether a value sits in a code span is read from the template, so each catalog decides
    how its values look. `trusted` values (mentions, links the bot built) are used as is.
    """
    found = template(key, locale, untrusted.get("count", (trusted or {}).get("count"))) or ""
    params: dict[str, object] = dict(trusted or {})
    for name, value in untrusted.items():
        if not isinstance(value, str):
            params[name] = value
        elif re.search(rf"`\{{{re.escape(name)}\}}`", found):
            params[name] = in_code(value)
        else:
            params[name] = shown(value)
    return clip(t(key, locale, **params), CONTENT_MAX)


def fit_embed(embed: discord.Embed) -> discord.Embed:
    """Shorten the description so the embed stays within Discord's 6,000-character total."""
    description = embed.description or ""
    embed.description = None
    room = min(DESCRIPTION_MAX, EMBED_TOTAL_MAX - len(embed))
    embed.description = clip(description, max(0, room)) or None
    return embed
