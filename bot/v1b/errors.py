"""Typed errors of the Miaohua v1b API: one class per meaning.

Every error carries the endpoint it came from and a human message. None of them
ever holds a token or a password: messages are built from codes and server text,
and server text is scrubbed of anything that looks like a credential we sent.

Each class names the catalog message a member sees (`key`, most specific class wins by
inheritance); the service's message fills its `detail`.
"""

from __future__ import annotations

from bot.errors import AccountProblem, DomainError, ServiceFailure


class V1bError(DomainError):
    """Base of every error raised by the v1b client."""

    key = "v1b.service_error"
    transient: bool = False

    def __init__(
        self,
        endpoint: str,
        message: str,
        *,
        code: int | None = None,
        field: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.message = message
        self.code = code
        self.field = field
        detail = f" (code {code})" if code is not None else ""
        super().__init__(params={"detail": message}, text=f"{endpoint}: {message}{detail}")


class AuthError(V1bError, AccountProblem):
    """The account cannot log in or its token is no longer accepted (600-602)."""


class InvalidCredentials(AuthError):
    """Unknown user or token invalid/expired (600)."""

    key = "v1b.invalid_credentials"


class WrongPassword(AuthError):
    """The password is wrong (601)."""

    key = "v1b.wrong_password"


class NotBusinessAccount(AuthError):
    """The account exists but is not a business (tob) account (602)."""

    key = "v1b.not_business"


class AccountBusy(V1bError):
    """Too many tasks are running on this account (603): wait and submit again."""

    key = "v1b.account_busy"
    transient = True


class NotEnoughPoints(V1bError, AccountProblem):
    """The account's points balance cannot pay for the task (604)."""

    key = "v1b.not_enough_points"


class InvalidRequest(V1bError):
    """The request was rejected as invalid (400), or failed local validation."""

    key = "v1b.invalid_request"


class ServiceError(V1bError, ServiceFailure):
    """The service failed: 500/501, HTTP 5xx, a timeout or a body that is not JSON."""

    key = "v1b.service_error"
    transient = True


class ConnectionFailed(ServiceError):
    """The request never reached the server (connection refused or connect timeout)."""


class ResponseTooLarge(V1bError):
    """The answer's body exceeded the client's size cap; reading stopped there.

    Not retried: a service that answers this way does so again, and each try costs the cap.
    """

    key = "v1b.response_too_large"


class FeatureUnavailable(V1bError):
    """The server does not offer an optional endpoint (answered 404)."""


class TaskFailed(V1bError):
    """The service reported a generation or training failure (non-empty error_msg)."""

    key = "v1b.task_failed"

    def __init__(
        self,
        endpoint: str,
        message: str,
        *,
        code: int | None = None,
        field: str | None = None,
        result: object | None = None,
    ) -> None:
        super().__init__(endpoint, message, code=code, field=field)
        self.result = result
