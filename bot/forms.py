"""Per-guild cache of the service's generation and training forms, refreshed on a TTL."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

from bot.background import cancel_and_wait
from bot.errors import UserFacingError
from bot.v1b import GenerationForm, TrainForm

T = TypeVar("T")

log = logging.getLogger(__name__)


# A stale copy is kept this many TTLs for when a refresh fails; then it is dropped, so the
# forms of guilds that stopped using the bot do not stay in memory.
KEEP_STALE_TTLS = 10
# Forms fetched at once when warming the cache after a start: a steady trickle, not a burst.
WARM_AT_ONCE = 4
# The subject of a training when the member names none, if the form offers it.
DEFAULT_MAIN_BODY = "Style"


class FormSource(Protocol):
    """What the cache fetches forms from: a guild's account session."""

    async def generation_form(self) -> GenerationForm: ...

    async def train_form(self) -> TrainForm: ...


class Sessions(Protocol):
    """Finds the account session of a guild."""

    async def session_for(self, guild_id: int) -> FormSource: ...


class _Kept(Generic[T]):
    """One kind of form: how to fetch it, each guild's last copy, and the fetch under way."""

    def __init__(self, fetch: Callable[[FormSource], Awaitable[T]]) -> None:
        self.fetch = fetch
        self.entries: dict[int, tuple[float, T]] = {}
        self.fetching: dict[int, asyncio.Task[T]] = {}


class FormCache:
    """Keeps each guild's forms, refreshed once `ttl` seconds old.

    A command never waits for a refresh: the copy it finds stale is served while the fresh
    one is fetched (a failed refresh keeps the stale one). Only a guild with no copy at all
    waits, and `warm` spares that to the guilds with an account after a start.

    A guild's commands arriving while its form is being fetched wait for that one fetch
    rather than each asking the service (a burst after a restart would otherwise ask once
    per command, queueing behind each other at the account's rate limit).

    Whoever changes what a guild's forms show (its account, its trained models) calls
    `invalidate`; the bot wires that up, so commands never need to.
    """

    def __init__(
        self,
        accounts: Sessions,
        *,
        ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._accounts = accounts
        self._ttl = ttl
        self._clock = clock
        self._generation: _Kept[GenerationForm] = _Kept(lambda s: s.generation_form())
        self._training: _Kept[TrainForm] = _Kept(lambda s: s.train_form())
        # Every fetch under way, invalidated ones too: none may outlive the service client.
        self._under_way: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._generation.entries) + len(self._training.entries)

    async def generation_form(self, guild_id: int) -> GenerationForm:
        """The generation form as the guild's account sees it (trained models included)."""
        return await self._cached(self._generation, guild_id)

    async def train_form(self, guild_id: int) -> TrainForm:
        """The training form of the guild's account."""
        return await self._cached(self._training, guild_id)

    async def training_choices(
        self, guild_id: int, main_body: str | None, base_model: str | None
    ) -> tuple[str, str | None]:
        """The subject and base model of a training, checked against the training form.

        An omitted subject is "Style" (or the form's first); an omitted base model is left
        to the service. A form that offers nothing for a field rules nothing out.
        """
        form = await self.train_form(guild_id)
        default_body = DEFAULT_MAIN_BODY
        if form.main_bodies and default_body not in form.main_bodies:
            default_body = form.main_bodies[0]
        body = _pick(main_body, form.main_bodies, "train.bad_main_body") or default_body
        return body, _pick(base_model, form.base_models, "train.bad_base_model")

    def forget_idle(self) -> int:
        """Drop the forms fetched more than `KEEP_STALE_TTLS` TTLs ago; return how many."""
        cutoff = self._clock() - self._ttl * KEEP_STALE_TTLS
        dropped = 0
        for kept in (self._generation, self._training):
            idle = [key for key, (fetched, _) in kept.entries.items() if fetched < cutoff]
            for key in idle:
                del kept.entries[key]
            dropped += len(idle)
        return dropped

    def invalidate(self, guild_id: int) -> None:
        """Forget a guild's forms, e.g. after its account changed or a model was trained."""
        for kept in (self._generation, self._training):
            kept.entries.pop(guild_id, None)
            # A fetch under way may return the old account's form: later callers fetch afresh.
            kept.fetching.pop(guild_id, None)

    async def warm(self, guild_ids: Iterable[int]) -> int:
        """Fetch the generation forms of `guild_ids` that have no copy, `WARM_AT_ONCE` at a
        time; returns how many came. A guild whose fetch fails is left to its first command,
        which says what went wrong."""
        waiting = iter([g for g in guild_ids if g not in self._generation.entries])
        fetched = 0

        async def fetch_in_turn() -> None:
            nonlocal fetched
            for guild_id in waiting:
                try:
                    await self.generation_form(guild_id)
                except Exception as exc:  # the member's command reports it, if it recurs
                    log.info("guild %s: no generation form yet (%s)", guild_id, type(exc).__name__)
                else:
                    fetched += 1

        await asyncio.gather(*(fetch_in_turn() for _ in range(WARM_AT_ONCE)))
        return fetched

    async def _cached(self, kept: _Kept[T], guild_id: int) -> T:
        entry = kept.entries.get(guild_id)
        task = kept.fetching.get(guild_id)
        if entry is not None:
            if task is None and self._clock() - entry[0] >= self._ttl:
                self._start_fetch(kept, guild_id)  # for the next command
            return entry[1]
        if task is None:
            task = self._start_fetch(kept, guild_id)
        # Shielded: a caller giving up does not cancel the fetch the others wait for.
        return await asyncio.shield(task)

    def _start_fetch(self, kept: _Kept[T], guild_id: int) -> asyncio.Task[T]:
        task = asyncio.create_task(self._fetch(kept, guild_id))
        task.add_done_callback(_retrieve)
        self._under_way.add(task)
        task.add_done_callback(self._under_way.discard)
        kept.fetching[guild_id] = task
        return task

    async def close(self) -> None:
        """Cancel the fetches under way (background refreshes too) and wait until they end,
        so none calls the service after its client is closed."""
        await cancel_and_wait(self._under_way)

    async def _fetch(self, kept: _Kept[T], guild_id: int) -> T:
        me = asyncio.current_task()
        now = self._clock()
        try:
            session = await self._accounts.session_for(guild_id)
            value = await kept.fetch(session)
            if kept.fetching.get(guild_id) is me:  # else invalidated meanwhile: not cached
                kept.entries[guild_id] = (now, value)
            return value
        finally:
            if kept.fetching.get(guild_id) is me:
                del kept.fetching[guild_id]


def _retrieve(task: asyncio.Task[T]) -> None:
    """Mark a fetch's failure as seen: its waiters may all have given up."""
    if not task.cancelled():
        task.exception()


def _pick(value: str | None, offered: list[str], key: str) -> str | None:
    """Return value if the form offers it (or offers nothing to check against)."""
    if value is not None and offered and value not in offered:
        raise UserFacingError(key, value=value[:100], choices=", ".join(offered)[:1500])
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
