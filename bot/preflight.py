"""What `run` refuses before it starts; `check-config` refuses the same, in the same words."""

from __future__ import annotations

from cryptography.fernet import Fernet

from bot.config import Settings


def startup_refusal(settings: Settings) -> str | None:
    """One line saying why the bot cannot start with these settings, or None when it can."""
    token = settings.discord.token
    if token is None or not token.get_secret_value().strip():
        return (
            "no Discord bot token: set MIAOHUA_BOT_DISCORD__TOKEN "
            "(or discord.token in the config file)"
        )
    if settings.security.secret_key is None:
        return _key_file_refusal(settings)
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
