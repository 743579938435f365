"""What `run` refuses before it starts; `check-config` refuses the same, in the same words."""

from __future__ import annotations

from cryptography.fernet import Fernet

from bot.config import Settings
from bot.demo_accounts import DemoSecretUnusable, read_secret, secret_file_beside
from bot.emulator.persistence import StateFileUnusable, read_state_file, state_file_beside


def startup_refusal(settings: Settings, *, emulator: bool = False) -> str | None:
    """One line saying why the bot cannot start with these settings, or None when it can.

    `emulator`: started with `--emulator` (the setting `miaohua.emulator` counts too).
    """
    token = settings.discord.token
    if token is None or not token.get_secret_value().strip():
        return (
            "no Discord bot token: set MIAOHUA_BOT_DISCORD__TOKEN "
            "(or discord.token in the config file)"
        )
    if settings.security.secret_key is None and (refusal := _key_file_refusal(settings)):
        return refusal
    if emulator or settings.miaohua.emulator:
        return _demo_secret_refusal(settings) or _emulator_state_refusal(settings)
    return None


def _emulator_state_refusal(settings: Settings) -> str | None:
    try:
        read_state_file(state_file_beside(settings.storage.path))  # a missing file is fine
    except StateFileUnusable as exc:
        return str(exc)
    return None


def _demo_secret_refusal(settings: Settings) -> str | None:
    path = secret_file_beside(settings.storage.path)
    if not path.exists():  # created at start
        return None
    try:
        read_secret(path)
    except DemoSecretUnusable as exc:
        return str(exc)
    return None


def _key_file_refusal(settings: Settings) -> str | None:
    # A missing key file is fine (it is created at start); one that exists must be usable.
    key_file = settings.security.key_file
    try:
        key = key_file.read_bytes().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"security.key_file {key_file}: cannot be read ({exc.strerror or exc})"
    try:
        Fernet(key)
    except ValueError:
        return f"security.key_file {key_file}: does not hold a valid key"
    return None
