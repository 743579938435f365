"""Start-up check that Discord (REST API and gateway) can be reached, retried for a bounded time.

discord.py raises a raw aiohttp error (a long traceback) when its first request cannot connect,
and crashes when its first gateway connection fails. The bot asks first, with its own short
requests: one clear line when Discord cannot be reached, retries with exponential backoff and
jitter, and a clear verdict when the time is up.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import yarl

log = logging.getLogger(__name__)

FIRST_DELAY = 1.0
MAX_DELAY = 30.0
ATTEMPT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Backoff:
    """Exponential delays with jitter: attempt n waits 50-100 % of min(cap, first * 2^n)."""

    first: float = FIRST_DELAY
    cap: float = MAX_DELAY

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after the `attempt`-th failure (0-based)."""
        ceiling = min(self.cap, self.first * 2.0 ** min(attempt, 32))
        return ceiling * rng.uniform(0.5, 1.0)


def public_address(url: str) -> str:
    """The URL without user info, query or fragment: safe to print."""
    parsed = yarl.URL(url)
    return str(parsed.with_user(None).with_query(None).with_fragment(None))


def describe_failure(exc: BaseException, timeout: float = ATTEMPT_TIMEOUT) -> str:
    """Why a connection failed, in a few words (no traceback, no secrets)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup of {exc.host} failed ({_os_reason(exc.os_error)})"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        error = exc.certificate_error
        reason = getattr(error, "verify_message", None) or _os_reason(error)
        return f"TLS certificate of {exc.host} rejected ({reason})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return f"connection to {exc.host}:{exc.port} refused"
        if isinstance(exc.os_error, ssl.SSLError):
            return f"TLS handshake failed ({_os_reason(exc.os_error)})"
        return f"cannot connect to {exc.host}:{exc.port} ({_os_reason(exc.os_error)})"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({_os_reason(exc)})"
    if isinstance(exc, OSError):
        return _os_reason(exc)
    return type(exc).__name__


def _os_reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError) and getattr(error, "reason", None):
        return error.reason.replace("_", " ").lower()
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


async def probe(
    session: aiohttp.ClientSession, url: str, seconds: float, *, any_answer: bool = False
) -> str | None:
    """None when `url` answers within `seconds` (below 500, or anything with `any_answer`)."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=seconds)) as response:
            if response.status >= 500 and not any_answer:
                return f"it answered HTTP {response.status}"
            return None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return describe_failure(exc, seconds)


@dataclass(frozen=True)
class _Target:
    address: str  # what the operator is told
    url: str  # what is asked
    any_answer: bool  # a websocket endpoint answers a plain GET with an error: still reachable


def _targets(api_base: str, gateway: str | None) -> list[_Target]:
    # GET /gateway answers without a token.
    targets = [_Target(public_address(api_base), f"{api_base.rstrip('/')}/gateway", False)]
    if gateway:
        ws = yarl.URL(gateway)
        http = ws.with_scheme({"ws": "http", "wss": "https"}.get(ws.scheme, ws.scheme))
        targets.append(_Target(public_address(gateway), str(http), True))
    return targets


async def wait_until_reachable(
    api_base: str,
    *,
    gateway: str | None = None,
    retry_for: float,
    say: Callable[[str], None],
    stop: asyncio.Event,
    backoff: Backoff = Backoff(),
    rng: random.Random | None = None,
) -> bool:
    """Return True once Discord's REST API and gateway answer; False after `retry_for` s or on stop.

    `say` gets one line when Discord cannot be reached, one more each time the failing address
    or the cause changes, and one when the bot gives up.
    """
    rng = rng or random.Random()
    targets = _targets(api_base, gateway)
    started = time.monotonic()
    deadline = started + retry_for
    said: tuple[str, str] | None = None
    attempt = 0
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        while True:
            remaining = deadline - time.monotonic()
            seconds = min(ATTEMPT_TIMEOUT, max(remaining, 1.0))
            failure = await _first_failure(session, targets, seconds)
            attempt += 1
            if failure is None:
                if said is not None:
                    log.info("reached Discord after %d attempts", attempt)
                return True
            address, cause = failure
            if failure != said:
                retrying = f"; retrying for up to {retry_for:g} s" if retry_for > 0 else ""
                say(f"cannot reach Discord at {address}: {cause}{retrying}")
                said = failure
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                elapsed = time.monotonic() - started
                tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
                say(
                    f"giving up after {tries} in {elapsed:.0f} s: "
                    f"Discord at {address} is still unreachable: {cause}"
                )
                return False
            delay = min(backoff.delay(attempt - 1, rng), remaining)
            log.debug("Discord unreachable (%s); next attempt in %.1f s", cause, delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                continue
            return False


async def _first_failure(
    session: aiohttp.ClientSession, targets: list[_Target], seconds: float
) -> tuple[str, str] | None:
    for target in targets:
        cause = await probe(session, target.url, seconds, any_answer=target.any_answer)
        if cause is not None:
            return target.address, cause
    return None
