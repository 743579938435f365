"""Cleaning user text before it is stored, checked against blocked words or sent to the service."""

from __future__ import annotations

import re
import unicodedata

from bot.errors import UserFacingError

_SPACES = re.compile(r"\s+")


def clean_prompt(text: str | None, *, required: bool = True) -> str:
    """NFKC-normalise, drop control and invisible format characters, collapse whitespace.

    Invisible characters (zero-width spaces, bidi marks) would otherwise let a prompt slip
    past blocked words and make stored text look different from what is shown.
    """
    normalised = unicodedata.normalize("NFKC", text or "")
    kept = "".join(
        " " if ch.isspace() else ch
        for ch in normalised
        if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )
    cleaned = _SPACES.sub(" ", kept).strip()
    if required and not cleaned:
        raise UserFacingError("generate.empty_prompt")
    return cleaned
