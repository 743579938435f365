"""Miaohua accounts of the guilds: credentials at rest (encrypted) and their live sessions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.crypto import SecretBox, SecretUnreadable, mask_email
from bot.demo_accounts import DemoAccounts
from bot.jobs.errors import AccountUnreadable, NoAccount
from bot.jobs.protocols import BoundAccount
from bot.logs import redactor
from bot.store import GuildAccount, RunningWork, Store, StoreUnavailable
from bot.v1b import AccountSession, V1bClient
from bot.v1b import errors as v1b
from bot.v1b.ratelimit import RateLimiter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccountStatus:
    """What `/account status` shows: nothing secret."""

    email_hint: str
    last_login_at: float | None
    token_ok: bool
    demo: bool


@dataclass(frozen=True)
class BoundSession:
    """A session together with the accounts row it belongs to (None: the demo account)."""

    account_id: int | None
    session: AccountSession


class AccountManager:
    """Resolves v1b sessions: a guild's current account for new work, and the account that
    each running task or training was submitted with, which may since have been replaced.

    A replaced or removed account is retired, not deleted: its credentials stay (encrypted)
    until no unfinished work refers to it. Work that is about to record its account holds it
    with `acquire` ... `release`, so that it is not deleted in between.
    """

    def __init__(
        self,
        store: Store,
        client: V1bClient,
        box: SecretBox,
        *,
        demo_provisioner: DemoAccounts | None = None,
    ) -> None:
        self._store = store
        self._client = client
        self._box = box
        self._demo = demo_provisioner
        self._current: dict[int, BoundSession] = {}  # guild -> its account for new work
        self._by_id: dict[int, AccountSession] = {}  # accounts row -> session
        self._demo_sessions: dict[int, AccountSession] = {}
        # Demo accounts have no row: their logins are remembered here. A restarted bot logs
        # in afresh before its first call, so nothing older is lost that would still be true.
        self._demo_logins: dict[int, float] = {}
        self._masked: set[str] = set()  # redactor keys of the secrets in use
        self._retired: set[int] = set()  # retired accounts still kept for running work
        self._held: Counter[int] = Counter()
        self._changes: Counter[int] = Counter()  # guild -> account changes, to spot stale reads
        # Between reading the current account and holding it, no retired account is deleted.
        self._prune_lock = asyncio.Lock()
        self._listeners: list[Callable[[int], None]] = []

    def on_change(self, listener: Callable[[int], None]) -> None:
        """Call listener(guild_id) whenever a guild's account is set or removed."""
        self._listeners.append(listener)

    def _notify(self, guild_id: int) -> None:
        for listener in self._listeners:
            listener(guild_id)

    async def current(self, guild_id: int) -> BoundSession:
        """The guild's account for new work; raises NoAccount, or AccountUnreadable."""
        cached = self._current.get(guild_id)
        if cached is not None:
            return cached
        seen = self._changes[guild_id]
        row = await self._store.accounts.get(guild_id)
        if row is None:
            if self._demo is None:
                raise NoAccount()
            bound = BoundSession(None, self._demo_session(guild_id))
        else:
            bound = BoundSession(row.id, self._open(row))
        if self._changes[guild_id] == seen:  # else set or removed meanwhile: do not cache
            self._current[guild_id] = bound
        return bound

    async def session_for(self, guild_id: int) -> AccountSession:
        """The session of the guild's current account (see `current`)."""
        return (await self.current(guild_id)).session

    async def session_for_account(self, guild_id: int, account_id: int | None) -> AccountSession:
        """The session of the account some work was submitted with, current or retired.

        `None` is the guild's demo account. Raises NoAccount when the account is gone.
        """
        if account_id is None:
            if self._demo is None:
                raise NoAccount()
            return self._demo_session(guild_id)
        cached = self._by_id.get(account_id)
        if cached is not None:
            return cached
        row = await self._store.accounts.get_by_id(account_id)
        if row is None or row.guild_id != guild_id:
            log.warning("guild %s: account %s is gone", guild_id, account_id)
            raise NoAccount()
        return self._open(row)

    async def acquire(self, guild_id: int) -> BoundSession:
        """The guild's current account, kept until `release` even if replaced meanwhile."""
        async with self._prune_lock:
            bound = await self.current(guild_id)
            if bound.account_id is not None:
                self._held[bound.account_id] += 1
        return bound

    async def release(self, bound: BoundAccount) -> None:
        """End an `acquire`: the work has recorded its account (or never will)."""
        if bound.account_id is None:
            return
        self._held[bound.account_id] -= 1
        if self._held[bound.account_id] <= 0:
            del self._held[bound.account_id]
            await self.finished_with(bound.account_id)

    async def finished_with(self, account_id: int | None) -> None:
        """Work submitted with this account finished: delete it if retired and unused."""
        if account_id is None or account_id not in self._retired:
            return
        try:
            await self.prune()
        except Exception:
            # Only a deletion postponed: the next finished task, /account command or start prunes.
            log.warning("could not delete retired account %s yet", account_id, exc_info=True)

    async def prune(self) -> None:
        """Delete the credentials of retired accounts that no unfinished work refers to."""
        async with self._prune_lock:
            for account_id in await self._store.accounts.prune(keep=set(self._held)):
                self._by_id.pop(account_id, None)
                self._mask(f"account:{account_id}:password", None)  # no longer a secret in use
                self._mask(f"account:{account_id}:token", None)
            self._retired = set(await self._store.accounts.retired_ids())

    async def set_account(self, guild_id: int, email: str, password: str) -> RunningWork:
        """Log in with the credentials and store them only if the service accepts them.

        Returns the work still running on the previous account, which finishes on it.
        """
        tokens: list[str] = []

        async def keep(token: str) -> None:
            tokens.append(token)

        # A throwaway session, so a wrong password never touches a live session of the same email.
        probe = AccountSession(
            self._client,
            email,
            password,
            token=None,
            on_token=keep,
            rate_limiter=RateLimiter(self._client.requests_per_second),
        )
        await probe.login()  # raises WrongPassword / InvalidCredentials / NotBusinessAccount
        token = tokens[-1] if tokens else None
        previous = await self._store.accounts.get(guild_id)
        row = await self._store.accounts.replace(
            guild_id=guild_id,
            email_encrypted=self._box.encrypt(email),
            password_encrypted=self._box.encrypt(password),
            token_encrypted=self._box.encrypt(token) if token else None,
            email_hint=mask_email(email),
            last_login_at=time.time(),
            token_ok=True,
        )
        # Masked from here on, not before: a rejected password is no secret in use, and
        # masking one typed by mistake ("task", an id) would scramble every log line.
        self._mask(f"account:{row.id}:password", password)
        self._mask(f"account:{row.id}:token", token)
        session = self._client.account(
            email, password, token=token, on_token=self._token_saver(row.id)
        )
        self._by_id[row.id] = session
        self._changes[guild_id] += 1
        self._current[guild_id] = BoundSession(row.id, session)
        log.info("guild %s set its Miaohua account", guild_id)
        self._notify(guild_id)
        running = await self._store.accounts.running_work(
            guild_id, previous.id if previous else None
        )
        await self.prune()
        return running

    async def remove(self, guild_id: int) -> RunningWork | None:
        """Retire the guild's account; None when it had none, else the work still running on
        it (which finishes on it before its credentials are deleted)."""
        self._changes[guild_id] += 1
        self._current.pop(guild_id, None)
        account_id = await self._store.accounts.retire(guild_id)
        self._notify(guild_id)
        if account_id is None:
            return None
        running = await self._store.accounts.running_work(guild_id, account_id)
        await self.prune()
        return running

    async def status(self, guild_id: int) -> AccountStatus | None:
        """Masked state of the guild's account, checking that its token still works."""
        row = await self._store.accounts.get(guild_id)
        if row is None and self._demo is None:
            return None
        session = await self.session_for(guild_id)
        try:
            await session.generation_form()
            token_ok = True
        except v1b.AuthError:
            token_ok = False
        except v1b.ServiceError:
            token_ok = bool(row and row.token_ok)
        if row is None:
            last_login = self._demo_logins.get(guild_id)
            return AccountStatus(DemoAccounts.email(guild_id), last_login, token_ok, demo=True)
        row = await self._store.accounts.get(guild_id) or row
        return AccountStatus(row.email_hint, row.last_login_at, token_ok, demo=False)

    @property
    def has_demo(self) -> bool:
        """Whether guilds without an account get a demo account on the built-in emulator."""
        return self._demo is not None

    def _open(self, row: GuildAccount) -> AccountSession:
        """The session of a stored account; raises AccountUnreadable when the key changed."""
        try:
            email = self._box.decrypt(row.email_encrypted)
            password = self._box.decrypt(row.password_encrypted)
            token = self._box.decrypt(row.token_encrypted) if row.token_encrypted else None
        except SecretUnreadable:
            log.warning("guild %s: stored Miaohua account unreadable (key changed?)", row.guild_id)
            raise AccountUnreadable() from None
        self._mask(f"account:{row.id}:password", password)
        self._mask(f"account:{row.id}:token", token)
        # A retired account never overrides the credentials of a live session of the same
        # email: those are newer.
        session = self._client.account(
            email,
            password,
            token=token,
            on_token=self._token_saver(row.id),
            refresh=row.current,
        )
        self._by_id[row.id] = session
        return session

    def _mask(self, key: str, secret: str | None) -> None:
        """Mask `secret` in logs under `key` (None stops masking what the key held)."""
        redactor.set(key, secret)
        if secret is None:
            self._masked.discard(key)
        else:
            self._masked.add(key)

    async def stop(self) -> None:
        """Stop masking this manager's secrets: its sessions end with it."""
        for key in self._masked:
            redactor.discard(key)
        self._masked.clear()

    def _token_saver(self, account_id: int) -> Callable[[str], Awaitable[None]]:
        async def save(token: str) -> None:
            self._mask(f"account:{account_id}:token", token)
            try:
                await self._store.accounts.set_token(
                    account_id, self._box.encrypt(token), time.time()
                )
            except StoreUnavailable as exc:
                # The session holds the token; storing it only spares a login after a restart.
                log.warning("account %s: login token not stored (%s)", account_id, exc)

        return save

    def _demo_login_recorder(self, guild_id: int) -> Callable[[str], Awaitable[None]]:
        async def record(token: str) -> None:
            self._demo_logins[guild_id] = time.time()

        return record

    def _demo_session(self, guild_id: int) -> AccountSession:
        cached = self._demo_sessions.get(guild_id)
        if cached is not None:
            return cached
        assert self._demo is not None
        email, password = self._demo.provision(guild_id)
        self._mask(f"demo:{guild_id}", password)
        session = self._demo_sessions[guild_id] = self._client.account(
            email, password, on_token=self._demo_login_recorder(guild_id)
        )
        return session
