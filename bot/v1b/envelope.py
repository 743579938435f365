"""Decode v1b responses: HTTP status, optional {code, info, msg} envelope, payload model."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from . import errors

T = TypeVar("T")

MAX_MESSAGE = 200
_MASK = "***"

# code -> (error class, human message)
_CODES: dict[int, tuple[type[errors.V1bError], str]] = {
    600: (errors.InvalidCredentials, "unknown user, or the token is invalid or expired"),
    601: (errors.WrongPassword, "wrong password"),
    602: (errors.NotBusinessAccount, "not a business (tob) account"),
    603: (errors.AccountBusy, "too many tasks are running on this account"),
    604: (errors.NotEnoughPoints, "not enough points on this account"),
    400: (errors.InvalidRequest, "invalid request"),
    500: (errors.ServiceError, "internal error of the service"),
    501: (errors.ServiceError, "the service could not reach its backend"),
}

# Failures of a validator on hostile input that pydantic does not wrap itself.
_PARSE_ERRORS = (ValidationError, ValueError, TypeError, LookupError, AttributeError)


def scrub(text: object, secrets: Iterable[str] = ()) -> str:
    """Return text with every secret masked, truncated to MAX_MESSAGE characters."""
    result = str(text)
    # Longest first, so a secret containing another one is masked whole.
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        result = result.replace(secret, _MASK)
    if len(result) > MAX_MESSAGE:
        result = result[: MAX_MESSAGE - 1] + "…"
    return result


def _as_code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    digits = value.strip().lstrip("-") if isinstance(value, str) else ""
    if digits.isascii() and digits.isdigit():  # not "¹": isdigit() alone lets it through
        return int(value)
    return None


def _server_message(body: dict[str, Any]) -> str:
    for key in ("msg", "message", "info", "error_msg"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def error_for_code(
    endpoint: str, code: int, server_message: str = "", secrets: Iterable[str] = ()
) -> errors.V1bError:
    """Build the typed error for a non-zero envelope code."""
    cls, human = _CODES.get(code, (errors.ServiceError, "unexpected error code"))
    message = f"{human}: {scrub(server_message, secrets)}" if server_message else human
    return cls(endpoint, message, code=code)


def _check_status(endpoint: str, status: int, body: bytes, secrets: Iterable[str]) -> None:
    if status < 400:
        return
    text = scrub(body.decode("utf-8", "replace").strip(), secrets)
    detail = f"HTTP {status}" + (f": {text}" if text else "")
    if status == 404:
        raise errors.FeatureUnavailable(endpoint, f"endpoint not offered ({detail})")
    if status < 500:
        raise errors.InvalidRequest(endpoint, f"request rejected ({detail})")
    raise errors.ServiceError(endpoint, f"service unavailable ({detail})")


def unwrap(endpoint: str, status: int, body: bytes, secrets: Iterable[str] = ()) -> object:
    """Return the payload of a response (unvalidated JSON), raising the typed error it carries."""
    _check_status(endpoint, status, body, secrets)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise errors.ServiceError(endpoint, "response is not JSON") from None
    if not isinstance(data, dict) or "code" not in data:
        return data
    code = _as_code(data["code"])
    if code is None:
        raise errors.ServiceError(endpoint, "unexpected response: code is not a number")
    if code != 0:
        raise error_for_code(endpoint, code, _server_message(data), secrets)
    if "info" in data:
        return data["info"]
    # A success envelope without `info` carries its payload beside the code.
    return {k: v for k, v in data.items() if k not in ("code", "msg")}


def parse(endpoint: str, payload: object, adapter: TypeAdapter[T]) -> T:
    """Validate a payload, turning any mismatch into a ServiceError."""
    try:
        return adapter.validate_python(payload)
    except _PARSE_ERRORS as exc:
        raise errors.ServiceError(endpoint, f"unexpected response: {_describe(exc)}") from None


def _describe(exc: Exception) -> str:
    # Locations and pydantic's messages only: never echo the input, it may hold a token.
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        return scrub(f"{where}: {first['msg']}")
    return type(exc).__name__


def decode(
    endpoint: str, status: int, body: bytes, adapter: TypeAdapter[T], secrets: Iterable[str] = ()
) -> T:
    """Unwrap and validate a response in one step."""
    return parse(endpoint, unwrap(endpoint, status, body, secrets), adapter)
