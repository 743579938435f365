"""Errors that carry a localized message for the user who caused them."""

from __future__ import annotations

from discord import app_commands


class UserFacingError(app_commands.AppCommandError):
    """An error whose message key and parameters are shown to the user, translated."""

    def __init__(self, key: str, **params: object) -> None:
        self.key = key
        self.params = params
        super().__init__(key)
