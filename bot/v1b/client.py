"""The v1b HTTP client: one shared aiohttp session, retries, and per-account sessions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import aiohttp

from . import envelope
from .account import AccountSession
from .errors import ConnectionFailed, ResponseTooLarge, ServiceError, V1bError
from .ratelimit import RateLimiter
from .request import Request
from .retry import RetryPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")

# Told of each HTTP attempt: endpoint, result ('ok' or the error's class name), seconds.
RequestObserver = Callable[[str, str, float], None]

DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
# Connections open to the service at once (aiohttp's default); requests beyond wait in turn.
CONNECTIONS = 100
_CHUNK = 64 * 1024


class V1bClient:
    """Client of one v1b service; hands out an AccountSession per Miaohua account."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        requests_per_second: float = 5.0,
        max_retries: int = 3,
        retry_budget: float = 20.0,
        session: aiohttp.ClientSession | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        observe: RequestObserver | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.requests_per_second = requests_per_second
        self.max_response_bytes = max_response_bytes
        self.retry = RetryPolicy(
            max_retries=max_retries, budget=retry_budget, base=backoff_base, cap=backoff_cap
        )
        self.batch_supported: bool | None = None
        self.train_form_path: str | None = None
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._session = session
        self._owns_session = session is None
        self._accounts: dict[str, AccountSession] = {}
        self._observe = observe
        # Requests wait here for a connection, outside the request's timeout: aiohttp's own
        # pool would count that wait, and a burst queued behind a busy bot's other calls
        # timed out as "the service is not answering" without ever reaching the service.
        self._connections: asyncio.Semaphore | None = None

    def __repr__(self) -> str:
        return f"<V1bClient base_url={self.base_url!r} accounts={len(self._accounts)}>"

    def account(
        self,
        email: str,
        password: str,
        *,
        token: str | None = None,
        on_token: Callable[[str], Awaitable[None]] | None = None,
        refresh: bool = True,
    ) -> AccountSession:
        """Return the session of this account, creating it on first use.

        An existing session takes the given password, token and callback unless `refresh`
        is False (the caller holds older credentials of the same account).
        """
        acct = self._accounts.get(email)
        if acct is None:
            acct = AccountSession(
                self,
                email,
                password,
                token=token,
                on_token=on_token,
                # Burst 1: no one-second window ever holds more than rate + 1 calls.
                rate_limiter=RateLimiter(self.requests_per_second, burst=1.0),
            )
            self._accounts[email] = acct
        elif refresh:
            acct.update(password, token=token, on_token=on_token)
        return acct

    async def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> V1bClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        # Created lazily so the client can be built outside a running event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit=CONNECTIONS)
            )
            self._owns_session = True
            self._connections = None
        return self._session

    def _connection_slots(self) -> asyncio.Semaphore | None:
        """One slot per connection the session may open (None: it sets no limit)."""
        if self._connections is None:
            connector = self._http().connector
            limit = connector.limit if connector is not None else 0
            if not limit:
                return None
            self._connections = asyncio.Semaphore(limit)
        return self._connections

    async def call(self, req: Request[T], limiter: RateLimiter, secrets: Iterable[str]) -> T:
        """Send a request, retrying transient failures as the retry policy allows."""
        secrets = tuple(secrets)
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempt = 0
        while True:
            try:
                return await self._attempt(req, limiter, secrets)
            except V1bError as exc:
                if not self.retry.should_retry(exc, read_only=req.read_only, attempt=attempt):
                    raise
                delay = self.retry.delay(attempt)
                if loop.time() - started + delay > self.retry.budget:
                    raise
                log.debug("v1b %s: retry %d in %.2f s (%s)", req.endpoint, attempt + 1, delay, exc)
                await asyncio.sleep(delay)
                attempt += 1

    async def _attempt(self, req: Request[T], limiter: RateLimiter, secrets: tuple[str, ...]) -> T:
        await limiter.acquire()
        if self._observe is None:
            return await self._send(req, secrets)
        started = time.perf_counter()
        result = "ok"
        try:
            return await self._send(req, secrets)
        except V1bError as exc:
            result = type(exc).__name__  # a fixed set of classes, never the message
            raise
        except asyncio.CancelledError:
            result = "cancelled"
            raise
        except Exception:
            result = "internal_error"
            raise
        finally:
            self._observe(req.endpoint, result, time.perf_counter() - started)

    async def _send(self, req: Request[T], secrets: tuple[str, ...]) -> T:
        slots = self._connection_slots()
        if slots is None:
            return await self._send_now(req, secrets)
        async with slots:
            return await self._send_now(req, secrets)

    async def _send_now(self, req: Request[T], secrets: tuple[str, ...]) -> T:
        headers = {"Authorization": f"Bearer {req.token}"} if req.token else None
        started = time.perf_counter()
        try:
            async with self._http().request(
                req.method,
                f"{self.base_url}/{req.path or req.endpoint}",
                json=req.json,
                data=req.form() if req.form else None,
                params=req.params,
                headers=headers,
                timeout=self._timeout,
            ) as resp:
                status = resp.status
                body = await read_capped(resp, self.max_response_bytes, req.endpoint)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise ConnectionFailed(req.endpoint, f"cannot connect ({type(exc).__name__})") from None
        except TimeoutError:
            raise ServiceError(req.endpoint, "timed out") from None
        except aiohttp.ClientError as exc:
            raise ServiceError(req.endpoint, f"connection error ({type(exc).__name__})") from None
        elapsed = (time.perf_counter() - started) * 1000
        log.debug("v1b %s -> HTTP %d in %.0f ms", req.endpoint, status, elapsed)
        return envelope.decode(req.endpoint, status, body, req.adapter, secrets)


async def read_capped(resp: aiohttp.ClientResponse, limit: int, endpoint: str) -> bytes:
    """The response body, read in chunks; ResponseTooLarge as soon as it exceeds `limit`.

    Reading stops there, so a huge or endless body costs at most `limit` bytes of memory
    (the connection is then closed instead of being drained).
    """
    if resp.content_length is not None and resp.content_length > limit:
        raise ResponseTooLarge(endpoint, f"answer larger than {describe_size(limit)}")
    body = bytearray()
    async for chunk in resp.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > limit:
            raise ResponseTooLarge(endpoint, f"answer larger than {describe_size(limit)}")
    return bytes(body)


def describe_size(size: int) -> str:
    """A byte count for people: '8 MiB', '512 KiB', '300 bytes'."""
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.3g} {unit}"
    return f"{size} bytes"
