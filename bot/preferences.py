"""Which of a member's stored preferences the guild's form still offers.

A preference is checked when it is set, but the form (or the guild's trained models) can
change afterwards; one that no longer fits is set aside for that request, so the next
source (the server's default, then the form's) applies instead of every command failing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from bot.display import render
from bot.store.preferences import MemberPreferences
from bot.v1b import GenerationForm
from bot.v1b.validation import offers_model, offers_size, within


@dataclass(frozen=True, slots=True)
class SetAside:
    """A stored preference not used for a request because the form no longer offers it."""

    name: str  # "model", "size" or "count"
    value: str


def usable_preferences(
    form: GenerationForm,
    trained: Iterable[str],
    prefs: MemberPreferences,
    *,
    settled: Collection[str] = (),
) -> tuple[MemberPreferences, tuple[SetAside, ...]]:
    """The preferences with those the form no longer offers unset, and those set aside.

    Only a preference the request would have used is reported: one whose option is in
    `settled` (given with the command) is not, since it changed nothing.
    """
    stale: list[SetAside] = []
    if prefs.model is not None and not offers_model(form, prefs.model, trained):
        stale.append(SetAside("model", prefs.model))
    if prefs.size is not None and not offers_size(form, prefs.size):
        stale.append(SetAside("size", prefs.size))
    if prefs.count is not None and not within(prefs.count, form.n_images):
        stale.append(SetAside("count", str(prefs.count)))
    names = {s.name for s in stale}
    stale = [s for s in stale if s.name not in settled]
    usable = dataclasses.replace(
        prefs,
        model=None if "model" in names else prefs.model,
        size=None if "size" in names else prefs.size,
        count=None if "count" in names else prefs.count,
    )
    return usable, tuple(stale)


def set_aside_notes(stale: Iterable[SetAside], locale: str | None) -> list[str]:
    """One line per preference passed over, saying what to do about it."""
    return [render(f"preferences.set_aside.{s.name}", locale, value=s.value) for s in stale]
