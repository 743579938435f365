"""A guild's named prompt templates ("styles"), unique per guild regardless of case."""

from __future__ import annotations

from dataclasses import dataclass

from bot.store.base import Repo, build
from bot.store.database import Row


@dataclass(frozen=True, slots=True)
class Style:
    """A server style: `prompt` holds `{prompt}` where the member's prompt goes."""

    guild_id: int
    name_key: str  # the casefolded name: what makes two names the same style
    name: str  # as the admin last typed it
    prompt: str
    negative_prompt: str
    model: str | None  # None: the member's choice, else the server's default
    size: str | None
    created_by: int | None
    created_at: float


def name_key(name: str) -> str:
    """The key two names share when they name the same style ("Anime" and "ANIME")."""
    return name.casefold()


# One statement, so two admins adding at once cannot both pass the cap: a new name is
# inserted only while the guild has fewer than `limit` styles; an existing one is replaced.
_SAVE = """
INSERT INTO styles (guild_id, name_key, name, prompt, negative_prompt, model, size,
                    created_by, created_at)
SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?
WHERE (SELECT COUNT(*) FROM styles WHERE guild_id = ?) < ?
   OR EXISTS (SELECT 1 FROM styles WHERE guild_id = ? AND name_key = ?)
ON CONFLICT (guild_id, name_key) DO UPDATE SET
    name = excluded.name,
    prompt = excluded.prompt,
    negative_prompt = excluded.negative_prompt,
    model = excluded.model,
    size = excluded.size,
    created_by = excluded.created_by,
    created_at = excluded.created_at
RETURNING *
"""

_GET = "SELECT * FROM styles WHERE guild_id = ? AND name_key = ?"
_LIST = "SELECT * FROM styles WHERE guild_id = ? ORDER BY name_key"
_REMOVE = "DELETE FROM styles WHERE guild_id = ? AND name_key = ? RETURNING *"


def _style(row: Row) -> Style:
    return build(Style, row)


class StyleRepo(Repo):
    """Reads and writes `styles`; names are looked up case-insensitively."""

    async def save(
        self,
        *,
        guild_id: int,
        name: str,
        prompt: str,
        negative_prompt: str = "",
        model: str | None = None,
        size: str | None = None,
        created_by: int | None = None,
        limit: int,
    ) -> Style | None:
        """Add a style, or replace the one of the same name; None when the guild has `limit`."""
        key = name_key(name)
        params = (
            *(guild_id, key, name, prompt, negative_prompt, model, size, created_by),
            self._clock(),
            *(guild_id, limit, guild_id, key),
        )
        row = await self._fetch_one(_SAVE, params)
        return _style(row) if row else None

    async def get(self, guild_id: int, name: str) -> Style | None:
        """The guild's style of that name in any case, or None."""
        row = await self._fetch_one(_GET, (guild_id, name_key(name)))
        return _style(row) if row else None

    async def for_guild(self, guild_id: int) -> list[Style]:
        """The guild's styles in alphabetical order."""
        return [_style(row) for row in await self._fetch_all(_LIST, (guild_id,))]

    async def remove(self, guild_id: int, name: str) -> Style | None:
        """Delete the guild's style of that name; return it, or None when there was none."""
        row = await self._fetch_one(_REMOVE, (guild_id, name_key(name)))
        return _style(row) if row else None
