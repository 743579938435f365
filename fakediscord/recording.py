"""Records of REST traffic and scripted failures for the fake Discord."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fakediscord.contract import Violation

RecordedFile = tuple[str, bytes, str]


@dataclass
class RecordedRequest:
    """One REST request the bot made, with its parsed body."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[RecordedFile]
    headers: dict[str, str]
    status: int = 0
    violations: list[Violation] = field(default_factory=list)


_DEFAULT_BODIES: dict[int, dict[str, Any]] = {
    403: {"code": 50013, "message": "Missing Permissions"},
    404: {"code": 10003, "message": "Unknown Channel"},
    500: {"code": 0, "message": "500: Internal Server Error"},
    502: {"code": 0, "message": "502: Bad Gateway"},
    503: {"code": 0, "message": "503: Service Unavailable"},
}


@dataclass
class FailureRule:
    """Answer the next `times` requests matching method and path regex with `status`."""

    method: str
    path_pattern: re.Pattern[str]
    status: int
    times: int
    retry_after: float
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        """Return whether this rule applies to a request (the pattern must match the whole path)."""
        return (
            self.times > 0
            and self.method in (method.upper(), "*")
            and self.path_pattern.fullmatch(path) is not None
        )

    def answer(self) -> tuple[Any, dict[str, str]]:
        """Consume one use and return the (body, headers) to answer with."""
        self.times -= 1
        if self.status == 429:
            body = self.body or {
                "message": "You are being rate limited.",
                "retry_after": self.retry_after,
                "global": False,
            }
            # discord.py treats a 429 without `Via` as a Cloudflare ban and does not retry.
            headers = {
                "Via": "1.1 google",
                "Retry-After": str(max(1, round(self.retry_after))),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset-After": str(self.retry_after),
                "X-RateLimit-Scope": "user",
            }
            return body, headers
        body = self.body or _DEFAULT_BODIES.get(
            self.status, {"code": 0, "message": f"{self.status}: Error"}
        )
        return body, {}
