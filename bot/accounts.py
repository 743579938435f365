"""Per-guild Miaohua accounts: credentials at rest (encrypted) and one live session each."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.crypto import SecretBox, SecretUnreadable, mask_email
from bot.jobs.errors import AccountUnreadable, NoAccount
from bot.logs import redactor
from bot.store import Store
from bot.v1b import AccountSession, V1bClient
from bot.v1b import errors as v1b
from bot.v1b.ratelimit import RateLimiter

log = logging.getLogger(__name__)

DemoProvisioner = Callable[[str, str], None]


@dataclass(frozen=True)
class AccountStatus:
    """What `/account status` shows: nothing secret."""

    email_hint: str
    last_login_at: float | None
    token_ok: bool
    demo: bool


class AccountManager:
    """Resolves the v1b session of a guild; each guild uses its own account and no other."""

    def __init__(
        self,
        store: Store,
        client: V1bClient,
        box: SecretBox,
        *,
        demo_provisioner: DemoProvisioner | None = None,
    ) -> None:
        self._store = store
        self._client = client
        self._box = box
        self._demo = demo_provisioner
        self._sessions: dict[int, AccountSession] = {}

    async def session_for(self, guild_id: int) -> AccountSession:
        """The guild's session; raises NoAccount, or AccountUnreadable when the key changed."""
        cached = self._sessions.get(guild_id)
        if cached is not None:
            return cached
        row = await self._store.accounts.get(guild_id)
        if row is None:
            if self._demo is None:
                raise NoAccount()
            session = self._demo_session(guild_id)
        else:
            try:
                email = self._box.decrypt(row.email_encrypted)
                password = self._box.decrypt(row.password_encrypted)
                token = self._box.decrypt(row.token_encrypted) if row.token_encrypted else None
            except SecretUnreadable:
                log.warning("guild %s: stored Miaohua account unreadable (key changed?)", guild_id)
                raise AccountUnreadable() from None
            _mask_password(guild_id, password)
            _mask_token(guild_id, token)
            session = self._client.account(
                email, password, token=token, on_token=self._token_saver(guild_id)
            )
        self._sessions[guild_id] = session
        return session

    async def set_account(self, guild_id: int, email: str, password: str) -> None:
        """Log in with the credentials and store them only if the service accepts them."""
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
        # Masked from here on, not before: a rejected password is no secret in use, and
        # masking one typed by mistake ("task", an id) would scramble every log line.
        _mask_password(guild_id, password)
        _mask_token(guild_id, token)
        await self._store.accounts.upsert(
            guild_id=guild_id,
            email_encrypted=self._box.encrypt(email),
            password_encrypted=self._box.encrypt(password),
            token_encrypted=self._box.encrypt(token) if token else None,
            email_hint=mask_email(email),
            last_login_at=time.time(),
            token_ok=True,
        )
        self._sessions[guild_id] = self._client.account(
            email, password, token=token, on_token=self._token_saver(guild_id)
        )
        log.info("guild %s set its Miaohua account", guild_id)

    async def remove(self, guild_id: int) -> bool:
        """Forget the guild's account; True when there was one."""
        self._sessions.pop(guild_id, None)
        removed = await self._store.accounts.delete(guild_id)
        _mask_password(guild_id, None)
        _mask_token(guild_id, None)
        return removed

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
            return AccountStatus(_demo_email(guild_id), None, token_ok, demo=True)
        row = await self._store.accounts.get(guild_id) or row
        return AccountStatus(row.email_hint, row.last_login_at, token_ok, demo=False)

    @property
    def has_demo(self) -> bool:
        """Whether guilds without an account get a demo account on the built-in emulator."""
        return self._demo is not None

    def forget_session(self, guild_id: int) -> None:
        """Drop the cached session, e.g. after the account's credentials stopped working."""
        self._sessions.pop(guild_id, None)

    def _token_saver(self, guild_id: int) -> Callable[[str], Awaitable[None]]:
        async def save(token: str) -> None:
            _mask_token(guild_id, token)
            await self._store.accounts.set_token(guild_id, self._box.encrypt(token), time.time())

        return save

    def _demo_session(self, guild_id: int) -> AccountSession:
        email = _demo_email(guild_id)
        password = hmac.new(b"miaohua-bot-demo", str(guild_id).encode(), hashlib.sha256).hexdigest()
        assert self._demo is not None
        self._demo(email, password)
        return self._client.account(email, password)


def _mask_password(guild_id: int, password: str | None) -> None:
    redactor.set(f"account:{guild_id}:password", password)


def _mask_token(guild_id: int, token: str | None) -> None:
    redactor.set(f"account:{guild_id}:token", token)


def _demo_email(guild_id: int) -> str:
    return f"guild-{guild_id}@demo.miaohua.local"
