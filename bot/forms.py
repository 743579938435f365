"""Per-guild cache of the service's generation and training forms, refreshed on a TTL."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bot.v1b import GenerationForm, TrainForm

T = TypeVar("T")


# A stale copy is kept this many TTLs for when a refresh fails; then it is dropped, so the
# forms of guilds that stopped using the bot do not stay in memory.
KEEP_STALE_TTLS = 10


class FormCache:
    """Keeps each guild's forms for `ttl` seconds; a failed refresh serves the stale copy."""

    def __init__(
        self, accounts, *, ttl: float = 600.0, clock: Callable[[], float] = time.monotonic
    ):
        self._accounts = accounts
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[tuple[str, int], tuple[float, object]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def generation_form(self, guild_id: int) -> GenerationForm:
        """The generation form as the guild's account sees it (trained models included)."""
        return await self._cached("gen", guild_id, lambda s: s.generation_form())

    async def train_form(self, guild_id: int) -> TrainForm:
        """The training form of the guild's account."""
        return await self._cached("train", guild_id, lambda s: s.train_form())

    def forget_idle(self) -> int:
        """Drop the forms fetched more than `KEEP_STALE_TTLS` TTLs ago; return how many."""
        cutoff = self._clock() - self._ttl * KEEP_STALE_TTLS
        idle = [key for key, (fetched, _) in self._entries.items() if fetched < cutoff]
        for key in idle:
            del self._entries[key]
        return len(idle)

    def invalidate(self, guild_id: int) -> None:
        """Forget a guild's forms, e.g. after its account changed or a model was trained."""
        for kind in ("gen", "train"):
            self._entries.pop((kind, guild_id), None)

    async def _cached(self, kind: str, guild_id: int, fetch: Callable[..., Awaitable[T]]) -> T:
        key = (kind, guild_id)
        entry = self._entries.get(key)
        now = self._clock()
        if entry and now - entry[0] < self._ttl:
            return entry[1]  # type: ignore[return-value]
        session = await self._accounts.session_for(guild_id)
        try:
            value = await fetch(session)
        except Exception:
            if entry is not None:
                return entry[1]  # type: ignore[return-value]
            raise
        self._entries[key] = (now, value)
        return value


def size_label(aspect: str, size: str) -> str:
    """How a size is offered to users, grouped by aspect ratio: '1:1 512x512'."""
    return f"{aspect} {size}"


def size_choices(form: GenerationForm) -> list[tuple[str, str]]:
    """(label, size) for every resolution of the form, grouped by aspect ratio."""
    return [
        (size_label(aspect, size), size)
        for aspect, sizes in form.resolutions.items()
        for size in sizes
    ]
