"""Discord's REST rate limits, enforced by the fake: per-route buckets and the global limit.

What Discord documents (https://discord.com/developers/docs/topics/rate-limits):
- Per-route limits, counted per top-level resource ("major parameter"): channel_id,
  guild_id, or webhook_id + webhook_token. Routes may share a limit, named by the
  `X-RateLimit-Bucket` header.
- Every limited response carries `X-RateLimit-Limit`, `-Remaining`, `-Reset` (epoch
  seconds), `-Reset-After` (seconds, decimals allowed) and `-Bucket`.
- A request over a limit gets 429 with a JSON body {"message", "retry_after" (seconds,
  float), "global" (bool), "code" (optional)}, a `Retry-After` header (seconds), and
  `X-RateLimit-Scope` (`user` for a per-route or the global limit, `shared` for a
  per-resource one); a global 429 also has `X-RateLimit-Global: true`.
- The global limit is 50 requests per second per bot; interaction endpoints (callbacks and
  the interaction webhook) are not bound to it.

Discord publishes no per-route numbers ("should not be hard coded"): the table below holds
the values bots observe in those headers, most importantly 5 message creates per 5 s per
channel. The windows are fixed, starting at a bucket's first request, like Discord's.
`scale` shortens every window (tests), keeping the shape of the limits.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

GLOBAL_LIMIT, GLOBAL_WINDOW = 50, 1.0
# discord.py treats a 429 without `Via` as a Cloudflare ban and does not retry; Discord's
# own 429s come through its proxy, so they carry it.
VIA = "1.1 google"
_ID = re.compile(r"/\d+(?=/|$)")
_INTERACTION_PATHS = ("/interactions/", "/webhooks/")


@dataclass(frozen=True, slots=True)
class RouteLimit:
    """`limit` requests per `window` seconds for requests matching `method` and `pattern`."""

    bucket: str
    method: str
    pattern: re.Pattern[str]
    limit: int
    window: float


def _route(bucket: str, method: str, pattern: str, limit: int, window: float) -> RouteLimit:
    return RouteLimit(bucket, method, re.compile(pattern), limit, window)


_MESSAGE = r"/channels/\d+/messages/\d+"
# Values observed in Discord's headers for the routes the bot uses (see module docstring).
ROUTE_LIMITS: tuple[RouteLimit, ...] = (
    _route("message-create", "POST", r"/channels/\d+/messages", 5, 5.0),
    _route("message-edit", "PATCH", _MESSAGE, 5, 5.0),
    _route("message-delete", "DELETE", _MESSAGE, 5, 5.0),
    # Adding and removing reactions: one per quarter second per channel.
    _route("reaction", "*", _MESSAGE + r"/reactions(/.*)?", 1, 0.25),
    _route("typing", "POST", r"/channels/\d+/typing", 5, 5.0),
    _route("webhook", "*", r"/webhooks/\d+/[^/]+(/messages/.+)?", 5, 2.0),
    _route("open-dm", "POST", r"/users/@me/channels", 5, 1.0),
)
# Routes not in the table: a bucket per route and major parameter, generous enough that
# only the limits above shape what the bot does.
DEFAULT_LIMIT, DEFAULT_WINDOW = 50, 1.0


def major_parameter(path: str) -> str:
    """The top-level resource a per-route limit is counted for (empty when none)."""
    parts = path.strip("/").split("/")
    if len(parts) >= 2 and parts[0] in ("channels", "guilds"):
        return f"{parts[0]}/{parts[1]}"
    if len(parts) >= 3 and parts[0] in ("webhooks", "interactions"):
        return f"{parts[0]}/{parts[1]}/{parts[2]}"  # id and token
    return ""


def route_template(path: str) -> str:
    """The path with ids replaced, naming a route whatever resource it is called on."""
    return _ID.sub("/{id}", path)


@dataclass(slots=True)
class Window:
    """One bucket's current fixed window."""

    limit: int
    length: float
    started: float
    used: int = 0

    @property
    def reset(self) -> float:
        return self.started + self.length


@dataclass(frozen=True, slots=True)
class Limited:
    """One request the fake answered 429."""

    at: float
    method: str
    path: str
    bucket: str
    major: str
    scope: str  # "user" (per-route) or "global"
    retry_after: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the limiter says about one request: headers to send, and a 429 body if refused."""

    headers: dict[str, str]
    refusal: dict[str, object] | None = None


@dataclass
class RateLimitStats:
    """What the limits did: requests counted, 429s sent, and when buckets were exhausted."""

    requests: int = 0
    limited: list[Limited] = field(default_factory=list)
    # bucket key ("<bucket>:<major>", or "global") -> [(exhausted at, reset at)]: while a
    # bucket is exhausted a client following the headers holds its requests back.
    exhausted: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def blocked(
        self,
        key: str,
        start: float,
        end: float,
        also: Sequence[tuple[float, float]] = (),
    ) -> float:
        """Seconds of [start, end] during which the bucket `key` or the global limit was
        exhausted: time a request for that bucket could not have been sent. `also`: more
        (from, to) spans to count (each second once), e.g. the client's own pacing."""
        spans = sorted(
            (max(a, start), min(b, end))
            for a, b in [*(s for k in (key, "global") for s in self.exhausted.get(k, [])), *also]
            if a < end and b > start
        )
        total, reached = 0.0, start
        for a, b in spans:
            if b > reached:
                total += b - max(a, reached)
                reached = b
        return total


class RateLimits:
    """Counts requests per bucket and globally; says when Discord would answer 429."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        scale: float = 1.0,
        routes: tuple[RouteLimit, ...] = ROUTE_LIMITS,
        global_limit: int = GLOBAL_LIMIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.enabled = enabled
        self.scale = scale
        self.routes = routes
        self.global_limit = global_limit
        self.clock = clock  # epoch seconds: X-RateLimit-Reset is a Unix timestamp
        self.stats = RateLimitStats()
        self._windows: dict[str, Window] = {}

    def bucket_key(self, method: str, path: str) -> str:
        """`<bucket>:<major parameter>`: requests sharing it share one limit."""
        return f"{self._route(method, path)[0]}:{major_parameter(path)}"

    def check(self, method: str, path: str, *, bot_token: bool) -> Verdict | None:
        """Count a request; None when limits are off. `bot_token`: made with the bot token
        (interaction endpoints are not bound to the global limit)."""
        if not self.enabled:
            return None
        now = self.clock()
        name, limit, length = self._route(method, path)
        key = f"{name}:{major_parameter(path)}"
        bucket = self._window(key, limit, length * self.scale, now)
        if bucket.used >= bucket.limit:
            return self._refuse(now, method, path, name, key, bucket, "user")
        glob = None
        if bot_token and not path.startswith(_INTERACTION_PATHS):
            glob = self._window("global", self.global_limit, GLOBAL_WINDOW * self.scale, now)
            if glob.used >= glob.limit:
                return self._refuse(now, method, path, name, key, glob, "global")
        self.stats.requests += 1
        for window, window_key in ((bucket, key), (glob, "global")):
            if window is None:
                continue
            window.used += 1
            if window.used == window.limit:
                self.stats.exhausted.setdefault(window_key, []).append((now, window.reset))
        return Verdict(_headers(bucket, name, now))

    def _route(self, method: str, path: str) -> tuple[str, int, float]:
        for route in self.routes:
            if route.method in (method, "*") and route.pattern.fullmatch(path):
                return route.bucket, route.limit, route.window
        return f"{method} {route_template(path)}", DEFAULT_LIMIT, DEFAULT_WINDOW

    def _window(self, key: str, limit: int, length: float, now: float) -> Window:
        window = self._windows.get(key)
        if window is None or now >= window.reset:
            window = self._windows[key] = Window(limit, length, now)
        return window

    def _refuse(
        self,
        now: float,
        method: str,
        path: str,
        name: str,
        key: str,
        window: Window,
        scope: str,
    ) -> Verdict:
        retry_after = max(_ms_up(window.reset - now), 0.001)
        self.stats.limited.append(
            Limited(now, method, path, name, key.partition(":")[2], scope, retry_after)
        )
        is_global = scope == "global"
        headers = {
            "Via": VIA,
            # Retry-After is whole seconds, rounded up; the body's retry_after is exact.
            "Retry-After": str(max(1, int(-(-retry_after // 1)))),
            "X-RateLimit-Scope": scope,
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        else:
            headers.update(_headers(window, name, now))
        body: dict[str, object] = {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": is_global,
        }
        return Verdict(headers, body)


def _ms_up(seconds: float) -> float:
    """`seconds` rounded up to the millisecond the headers carry. Rounded to the nearest, a
    reset would be announced up to half a millisecond early, and a client sleeping exactly
    that long over loopback could be refused at the edge of the window."""
    return math.ceil(round(max(seconds, 0.0) * 1000, 6)) / 1000


def _headers(window: Window, bucket: str, now: float) -> dict[str, str]:
    return {
        "Via": VIA,
        "X-RateLimit-Limit": str(window.limit),
        "X-RateLimit-Remaining": str(max(window.limit - window.used, 0)),
        "X-RateLimit-Reset": f"{_ms_up(window.reset):.3f}",
        "X-RateLimit-Reset-After": f"{_ms_up(window.reset - now):.3f}",
        # Discord's bucket ids are opaque hashes, not route names.
        "X-RateLimit-Bucket": hashlib.sha1(bucket.encode()).hexdigest()[:32],
    }
