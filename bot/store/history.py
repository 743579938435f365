"""A member's past results in one guild, newest first, a page at a time.

Pages are read by keyset on the task id (`id < cursor` / `id > cursor`), not by OFFSET: a
page costs the same however far back it is, and results delivered meanwhile never shift
an entry onto two pages.

The search is a case-insensitive substring of the prompt the member wrote. SQLite's
`lower()` and `LIKE` fold ASCII letters only, so both sides go through `fold` instead
(the SQL function `mh_fold`: Python's on SQLite, its equal on PostgreSQL, see
bot/store/dialect.py): NFKC (full-width Ａ reads as A) then Unicode case folding (É
matches é, STRASSE matches straße). `instr` takes the text
literally: `%` and `_` in a search are ordinary characters.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from bot.store.base import Repo
from bot.store.tasks import Task, _task

FOLD_FUNCTION = "mh_fold"
# Larger than any task id SQLite can hand out: the cursor of the first page.
_NEWEST = 2**63 - 1
_Params = tuple[int, int, str | None, int, int]

# Parameters: ?1 guild, ?2 member, ?3 folded search or NULL, ?4 cursor task id, ?5 page size.
# What a member sees as "their prompt": their own words when a style wrapped them.
_MATCHES = f"""
guild_id = ?1 AND user_id = ?2 AND state = 'delivered' AND removed_by IS NULL
AND (CAST(?3 AS TEXT) IS NULL OR instr({FOLD_FUNCTION}(COALESCE(member_prompt, prompt)), ?3) > 0)
"""

_OLDER = f"SELECT * FROM tasks WHERE {_MATCHES} AND id < ?4 ORDER BY id DESC LIMIT ?5"  # noqa: S608
_NEWER = f"SELECT * FROM tasks WHERE {_MATCHES} AND id > ?4 ORDER BY id ASC LIMIT ?5"  # noqa: S608
_COUNT = f"SELECT COUNT(*), COUNT(CASE WHEN id > ?4 THEN 1 END) FROM tasks WHERE {_MATCHES}"  # noqa: S608


def fold(text: str | None) -> str | None:
    """`text` as compared by the search: compatibility-normalized and case-folded."""
    if text is None:
        return None
    return unicodedata.normalize("NFKC", text).casefold()


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of results, newest first, and where it lies among all matching ones."""

    tasks: tuple[Task, ...]
    newer: int  # matching results newer than this page
    total: int  # matching results in all

    @property
    def has_newer(self) -> bool:
        """Whether a page of newer results comes before this one."""
        return self.newer > 0

    @property
    def has_older(self) -> bool:
        """Whether a page of older results comes after this one."""
        return self.newer + len(self.tasks) < self.total


class HistoryRepo(Repo):
    """Reads a member's delivered tasks for `/history`."""

    async def older(
        self,
        guild_id: int,
        user_id: int,
        *,
        before: int | None = None,
        search: str | None = None,
        size: int = 5,
    ) -> HistoryPage:
        """The page of results just older than task `before` (None: the newest page).

        When none is older any more (deleted by retention since the page was shown), the
        newest page is shown rather than an empty list.
        """
        params = (guild_id, user_id, fold(search) or None, before or _NEWEST, size)
        rows = await self._fetch_all(_OLDER, params)
        if not rows and before is not None:
            return await self.older(guild_id, user_id, search=search, size=size)
        return await self._page([_task(row) for row in rows], params)

    async def newer(
        self, guild_id: int, user_id: int, *, after: int, search: str | None = None, size: int = 5
    ) -> HistoryPage:
        """The page of results just newer than task `after`.

        Fewer than `size` newer results left means the list's start was reached: the newest
        page is shown then, full, rather than a short page above a shifted one.
        """
        params = (guild_id, user_id, fold(search) or None, after, size)
        rows = await self._fetch_all(_NEWER, params)
        if len(rows) < size:
            return await self.older(guild_id, user_id, search=search, size=size)
        return await self._page([_task(row) for row in reversed(rows)], params)

    async def _page(self, tasks: list[Task], params: _Params) -> HistoryPage:
        if not tasks:
            return HistoryPage((), 0, 0)
        guild_id, user_id, needle, _, _ = params
        row = await self._fetch_one(_COUNT, (guild_id, user_id, needle, tasks[0].id))
        assert row is not None
        return HistoryPage(tuple(tasks), newer=int(row[1]), total=int(row[0]))
