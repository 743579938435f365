"""Errors the emulator answers inside the body, as the live service does."""

from __future__ import annotations


class ApiError(Exception):
    """An error answered as {"code": code, "info": "", "msg": msg} with HTTP 200."""

    code: int = 500

    def __init__(self, msg: str, *, code: int | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        if code is not None:
            self.code = code


class InvalidInput(ApiError):
    """A request field is missing, ill-typed or out of range (400)."""

    code = 400


class UnknownUser(ApiError):
    """Unknown user, or a token that is invalid or expired (600)."""

    code = 600


class WrongPassword(ApiError):
    """The password does not match (601)."""

    code = 601


class NotBusiness(ApiError):
    """The account is not a business (tob) account (602)."""

    code = 602


class Busy(ApiError):
    """The account has too many unfinished tasks (603)."""

    code = 603


class NotEnoughPoints(ApiError):
    """The account's balance cannot pay for the task (604)."""

    code = 604
