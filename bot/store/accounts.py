"""Miaohua account credentials of the guilds, stored only as ciphertext.

A guild has at most one current account. Setting another one, or removing it, retires
the previous row instead of deleting it: tasks and trainings submitted with it keep its
id and finish on it. `prune` deletes retired rows once no unfinished work refers to them.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

from bot.store.base import Repo, build
from bot.store.database import Row

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GuildAccount:
    """A guild's Miaohua account: encrypted credentials plus display-safe metadata."""

    id: int
    guild_id: int
    email_encrypted: bytes
    password_encrypted: bytes
    token_encrypted: bytes | None
    email_hint: str
    last_login_at: float | None
    token_ok: bool
    created_at: float
    updated_at: float
    retired_at: float | None

    @property
    def current(self) -> bool:
        """Whether this is the guild's account for new work (not replaced or removed)."""
        return self.retired_at is None

    def __repr__(self) -> str:
        # Ciphertext is not secret without the key, but it is noise in logs.
        return (
            f"GuildAccount(id={self.id}, guild_id={self.guild_id}, "
            f"email_hint={self.email_hint!r}, token_ok={self.token_ok}, "
            f"last_login_at={self.last_login_at}, retired_at={self.retired_at})"
        )


@dataclass(frozen=True, slots=True)
class RunningWork:
    """Unfinished work submitted with one account."""

    tasks: int = 0
    trainings: int = 0

    def __bool__(self) -> bool:
        return bool(self.tasks or self.trainings)


# The newest current row wins, should an interrupted `replace` have left two.
_GET = """
SELECT * FROM accounts WHERE guild_id = ? AND retired_at IS NULL ORDER BY id DESC LIMIT 1
"""
_GET_BY_ID = "SELECT * FROM accounts WHERE id = ?"

_INSERT = """
INSERT INTO accounts (guild_id, email_encrypted, password_encrypted, token_encrypted,
                      email_hint, last_login_at, token_ok, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING *
"""

_RETIRE = """
UPDATE accounts SET retired_at = ?, updated_at = ?
WHERE guild_id = ? AND retired_at IS NULL AND id < ?
RETURNING id
"""

_RETIRE_CURRENT = """
UPDATE accounts SET retired_at = ?, updated_at = ?
WHERE guild_id = ? AND retired_at IS NULL
RETURNING id
"""

_UPDATE_LOGIN = """
UPDATE accounts
SET token_encrypted = ?, token_ok = ?, last_login_at = COALESCE(?, last_login_at), updated_at = ?
WHERE id = ?
RETURNING *
"""


# A retired account is kept while the service still runs work submitted with it: tasks in
# 'submitted' and unfinished trainings. (A queued task takes the current account when it is
# submitted; a finished one no longer calls the service.)
_PRUNE = """
DELETE FROM accounts
WHERE retired_at IS NOT NULL
  AND id NOT IN (SELECT value FROM json_each(?))
  AND NOT EXISTS (SELECT 1 FROM tasks AS t WHERE t.account_id = accounts.id
                  AND t.state = 'submitted')
  AND NOT EXISTS (SELECT 1 FROM trainings AS r WHERE r.account_id = accounts.id
                  AND r.state NOT IN ('done', 'failed', 'cancelled'))
  AND {scope}
RETURNING id
"""

_RETIRED_IDS = "SELECT id FROM accounts WHERE retired_at IS NOT NULL AND {scope} ORDER BY id"
_GUILDS_WITH_ACCOUNT = (
    "SELECT guild_id FROM accounts WHERE retired_at IS NULL AND {scope} ORDER BY guild_id"
)

_RUNNING_TASKS = """
SELECT COUNT(*) FROM tasks WHERE guild_id = ? AND account_id IS ? AND state = 'submitted'
"""
_RUNNING_TRAININGS = """
SELECT COUNT(*) FROM trainings
WHERE guild_id = ? AND account_id IS ? AND state NOT IN ('done', 'failed', 'cancelled')
"""


def _account(row: Row) -> GuildAccount:
    return build(GuildAccount, row, token_ok=bool(row["token_ok"]))


class AccountRepo(Repo):
    """Reads and writes `accounts`; takes and returns ciphertext only."""

    async def get(self, guild_id: int) -> GuildAccount | None:
        """Return the guild's current account, or None when none is set."""
        row = await self._fetch_one(_GET, (guild_id,))
        return _account(row) if row else None

    async def get_by_id(self, account_id: int) -> GuildAccount | None:
        """Return an account by id, current or retired; None once it was pruned."""
        row = await self._fetch_one(_GET_BY_ID, (account_id,))
        return _account(row) if row else None

    async def replace(
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
        """Make these credentials the guild's current account; the previous one is retired."""
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
        row = await self._fetch_one(_INSERT, params)
        assert row is not None
        account = _account(row)
        await self._fetch_all(_RETIRE, (now, now, guild_id, account.id))
        log.info("Stored account %s (id %s) for guild %s", email_hint, account.id, guild_id)
        return account

    async def retire(self, guild_id: int) -> int | None:
        """Retire the guild's current account (it has none afterwards); return its id."""
        now = self._clock()
        rows = await self._fetch_all(_RETIRE_CURRENT, (now, now, guild_id))
        if not rows:
            return None
        log.info("Retired the account of guild %s", guild_id)
        return max(int(row["id"]) for row in rows)

    async def set_token(
        self, account_id: int, token_encrypted: bytes | None, last_login_at: float | None = None
    ) -> GuildAccount | None:
        """Store a freshly obtained token (None clears it); None when the account is gone."""
        params = (token_encrypted, int(token_encrypted is not None), last_login_at, self._clock())
        row = await self._fetch_one(_UPDATE_LOGIN, (*params, account_id))
        return _account(row) if row else None

    async def running_work(self, guild_id: int, account_id: int | None) -> RunningWork:
        """Count the guild's unfinished work submitted with an account (None: the demo one)."""
        tasks = await self._fetch_one(_RUNNING_TASKS, (guild_id, account_id))
        trainings = await self._fetch_one(_RUNNING_TRAININGS, (guild_id, account_id))
        return RunningWork(int(tasks[0]) if tasks else 0, int(trainings[0]) if trainings else 0)

    async def prune(self, keep: Collection[int] = ()) -> list[int]:
        """Delete this process's retired accounts no unfinished work refers to (except
        `keep`); their ids."""
        keep_json = "[" + ",".join(str(int(i)) for i in keep) + "]"
        scope, params = self._scope.where()
        rows = await self._fetch_all(_PRUNE.format(scope=scope), (keep_json, *params))
        deleted = sorted(int(row["id"]) for row in rows)
        if deleted:
            log.info("Deleted the credentials of retired account(s) %s", deleted)
        return deleted

    async def guild_ids(self) -> list[int]:
        """The guilds of this process that have an account of their own."""
        scope, params = self._scope.where()
        rows = await self._fetch_all(_GUILDS_WITH_ACCOUNT.format(scope=scope), params)
        return [int(row["guild_id"]) for row in rows]

    async def retired_ids(self) -> list[int]:
        """Ids of retired accounts still kept for unfinished work."""
        scope, params = self._scope.where()
        return [
            int(row["id"])
            for row in await self._fetch_all(_RETIRED_IDS.format(scope=scope), params)
        ]
