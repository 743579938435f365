"""Description of one v1b call, independent of the attempts that send it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiohttp
from pydantic import TypeAdapter

T = TypeVar("T")


@dataclass(frozen=True)
class Request(Generic[T]):
    """One v1b call: endpoint, body and the model (`T`) its payload is validated into."""

    endpoint: str
    adapter: TypeAdapter[T]
    method: str = "POST"
    path: str | None = None  # URL path below the base URL when it differs from endpoint
    json: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    form: Callable[[], aiohttp.FormData] | None = (
        None  # rebuilt per attempt: FormData is single-use
    )
    token: str | None = None  # also sent as `Authorization: Bearer`
    read_only: bool = True  # read-only calls are retried on transient errors
