"""Encryption of stored secrets (Miaohua emails, passwords and tokens) with Fernet."""

from __future__ import annotations

import base64
import logging
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

log = logging.getLogger(__name__)

# Fixed salt and info: the same passphrase must yield the same key on every start.
_HKDF_SALT = b"miaohua-bot/secretbox/salt/v1"
_HKDF_INFO = b"miaohua-bot/secretbox/fernet-key/v1"


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with the current key."""

    def __init__(self) -> None:
        super().__init__(
            "a stored secret cannot be decrypted: the secret key changed or was lost, "
            "so the secret must be set again"
        )


class SecretBox:
    """Symmetric encryption of short strings; the key never appears in repr or logs."""

    __slots__ = ("_fernet",)

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    @classmethod
    def from_passphrase(cls, passphrase: str) -> SecretBox:
        """Derive the key from any passphrase with HKDF-SHA256."""
        if not passphrase:
            raise ValueError("the secret key passphrase is empty")
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO)
        return cls(base64.urlsafe_b64encode(hkdf.derive(passphrase.encode("utf-8"))))

    @classmethod
    def from_key_file(cls, key_file: Path) -> SecretBox:
        """Read the Fernet key in `key_file`, creating the file (mode 0600) on first run."""
        key_file = Path(key_file)
        if not key_file.exists():
            _create_key_file(key_file)
        elif key_file.stat().st_mode & 0o077:
            log.warning("Key file %s is readable by other users; chmod 600 it", key_file)
        key = key_file.read_bytes().strip()
        try:
            return cls(key)
        except ValueError:
            raise ValueError(f"key file {key_file} does not hold a valid Fernet key") from None

    @classmethod
    def from_settings(cls, secret_key: str | None, key_file: Path) -> SecretBox:
        """Use `secret_key` when configured, else the key file (created when missing)."""
        if secret_key:
            return cls.from_passphrase(secret_key)
        return cls.from_key_file(key_file)

    def encrypt(self, plaintext: str) -> bytes:
        """Encrypt a string to an opaque token."""
        return self._fernet.encrypt(plaintext.encode("utf-8"))

    def decrypt(self, ciphertext: bytes) -> str:
        """Decrypt a token made by `encrypt`, raising SecretUnreadable when it cannot be."""
        try:
            return self._fernet.decrypt(ciphertext).decode("utf-8")
        except (InvalidToken, UnicodeDecodeError):
            raise SecretUnreadable() from None


def _create_key_file(key_file: Path) -> None:
    if create_private_file(key_file, Fernet.generate_key() + b"\n"):
        log.warning("Created a new secret key file %s: back it up", key_file)


def create_private_file(path: Path, content: bytes) -> bool:
    """Create `path` (mode 0600, folder 0700) holding `content`; False when it already exists.

    The file is written privately, then hard-linked into place: it appears complete and 0600
    at once, and of two concurrent first runs the one that linked first wins.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        return True
    finally:
        temp.unlink(missing_ok=True)


def mask_email(email: str) -> str:
    """Mask an email for display: first character of the name, then the domain."""
    email = email.strip()
    name, at, domain = email.rpartition("@")
    if not at:
        return f"{email[:1]}***" if email else "***"
    return f"{name[:1]}***@{domain}"
