"""Demo accounts on the built-in emulator: one per guild, with a password no other guild can guess.

Each guild's password is an HMAC of its id under a random secret kept in a 0600 file beside the
database, so it survives restarts, differs between data directories, and cannot be worked out
from the source (which would let one guild's admin `/account set` another guild's demo account).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from pathlib import Path

from bot.crypto import create_private_file

log = logging.getLogger(__name__)

DEMO_KEY_FILE = "demo-accounts.key"
SECRET_BYTES = 32

Register = Callable[[str, str], None]


class DemoSecretUnusable(Exception):
    """The demo secret file exists but cannot be used; the message is one line for the operator."""


class DemoAccounts:
    """Hands each guild its demo account on the emulator; the secret never appears in repr."""

    __slots__ = ("_register", "_secret")

    def __init__(self, secret: bytes, register: Register) -> None:
        if len(secret) < SECRET_BYTES:
            raise ValueError("the demo secret is too short")
        self._secret = secret
        self._register = register

    def __repr__(self) -> str:
        return "DemoAccounts(<secret hidden>)"

    @classmethod
    def beside(cls, database: Path, register: Register) -> DemoAccounts:
        """Use the secret file in the database's folder, creating it on first use."""
        return cls(load_or_create_secret(secret_file_beside(database)), register)

    @staticmethod
    def email(guild_id: int) -> str:
        """The guild's demo email (not secret: `/account status` shows it)."""
        return f"guild-{guild_id}@demo.miaohua.local"

    def credentials(self, guild_id: int) -> tuple[str, str]:
        """The guild's demo email and password."""
        password = hmac.new(self._secret, str(guild_id).encode(), hashlib.sha256).hexdigest()
        return self.email(guild_id), password

    def provision(self, guild_id: int) -> tuple[str, str]:
        """Create (or refresh) the guild's demo account on the emulator; return its credentials."""
        email, password = self.credentials(guild_id)
        self._register(email, password)
        return email, password


def load_or_create_secret(path: Path) -> bytes:
    """The random secret in `path`, written (mode 0600) on first use."""
    if create_private_file(path, secrets.token_hex(SECRET_BYTES).encode() + b"\n"):
        log.info("created the demo accounts' secret %s", path)
    elif path.stat().st_mode & 0o077:
        log.warning("Demo secret file %s is readable by other users; chmod 600 it", path)
    return read_secret(path)


def secret_file_beside(database: Path) -> Path:
    """Where the demo secret of the data directory holding `database` lives."""
    return database.parent / DEMO_KEY_FILE


def read_secret(path: Path) -> bytes:
    """The secret in an existing file; DemoSecretUnusable when it cannot be used."""
    try:
        secret = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a secret"
        raise DemoSecretUnusable(
            f"demo secret file {path}: {reason}; delete it to get new demo accounts"
        ) from None
    if len(secret) < SECRET_BYTES:
        raise DemoSecretUnusable(
            f"demo secret file {path}: too short; delete it to get new demo accounts"
        )
    return secret
