"""Per-guild Miaohua account credentials, stored only as ciphertext."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiosqlite import Row

from bot.store.base import Repo, build

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GuildAccount:
    """A guild's Miaohua account: encrypted credentials plus display-safe metadata."""

    guild_id: int
    email_encrypted: bytes
    password_encrypted: bytes
    token_encrypted: bytes | None
    email_hint: str
    last_login_at: float | None
    token_ok: bool
    created_at: float
    updated_at: float

    def __repr__(self) -> str:
        # Ciphertext is not secret without the key, but it is noise in logs.
        return (
            f"GuildAccount(guild_id={self.guild_id}, email_hint={self.email_hint!r}, "
            f"token_ok={self.token_ok}, last_login_at={self.last_login_at})"
        )


_GET = "SELECT * FROM guild_accounts WHERE guild_id = ?"

_UPSERT = """
INSERT INTO guild_accounts (guild_id, email_encrypted, password_encrypted, token_encrypted,
                            email_hint, last_login_at, token_ok, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (guild_id) DO UPDATE SET
    email_encrypted = excluded.email_encrypted,
    password_encrypted = excluded.password_encrypted,
    token_encrypted = excluded.token_encrypted,
    email_hint = excluded.email_hint,
    last_login_at = excluded.last_login_at,
    token_ok = excluded.token_ok,
    updated_at = excluded.updated_at
RETURNING *
"""

_UPDATE_LOGIN = """
UPDATE guild_accounts
SET token_encrypted = ?, token_ok = ?, last_login_at = COALESCE(?, last_login_at), updated_at = ?
WHERE guild_id = ?
RETURNING *
"""

_UPDATE_LOGIN_OK = """
UPDATE guild_accounts SET token_ok = ?, updated_at = ? WHERE guild_id = ? RETURNING *
"""

_DELETE = "DELETE FROM guild_accounts WHERE guild_id = ? RETURNING guild_id"


def _account(row: Row) -> GuildAccount:
    return build(GuildAccount, row, token_ok=bool(row["token_ok"]))


class AccountRepo(Repo):
    """Reads and writes `guild_accounts`; takes and returns ciphertext only."""

    async def get(self, guild_id: int) -> GuildAccount | None:
        """Return the guild's account, or None when none is set."""
        row = await self._fetch_one(_GET, (guild_id,))
        return _account(row) if row else None

    async def upsert(
        self,
        *,
        guild_id: int,
        email_encrypted: bytes,
        password_encrypted: bytes,
        email_hint: str,
        token_encrypted: bytes | None = None,
        last_login_at: float | None = None,
        token_ok: bool = False,
    ) -> GuildAccount:
        """Create or replace the guild's account (a new login replaces the old token)."""
        now = self._clock()
        params = (
            guild_id,
            email_encrypted,
            password_encrypted,
            token_encrypted,
            email_hint,
            last_login_at,
            int(token_ok),
            now,
            now,
        )
        row = await self._fetch_one(_UPSERT, params)
        assert row is not None
        log.info("Stored account %s for guild %s", email_hint, guild_id)
        return _account(row)

    async def set_token(
        self, guild_id: int, token_encrypted: bytes | None, last_login_at: float | None = None
    ) -> GuildAccount | None:
        """Store a freshly obtained token (None clears it); None when the guild has no account."""
        params = (token_encrypted, int(token_encrypted is not None), last_login_at, self._clock())
        row = await self._fetch_one(_UPDATE_LOGIN, (*params, guild_id))
        return _account(row) if row else None

    async def set_token_ok(self, guild_id: int, ok: bool) -> GuildAccount | None:
        """Record whether the stored token still works (e.g. False after the service rejects it)."""
        row = await self._fetch_one(_UPDATE_LOGIN_OK, (int(ok), self._clock(), guild_id))
        return _account(row) if row else None

    async def delete(self, guild_id: int) -> bool:
        """Forget the guild's account; True when there was one."""
        deleted = await self._fetch_one(_DELETE, (guild_id,)) is not None
        if deleted:
            log.info("Deleted account of guild %s", guild_id)
        return deleted
