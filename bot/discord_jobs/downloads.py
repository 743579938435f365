"""Downloading result images: concurrent, size-capped, and checked to really be images."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import aiohttp
import yarl

from bot.images import sniff_content_type

log = logging.getLogger(__name__)

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
_CHUNK = 64 * 1024


class DownloadError(Exception):
    """An image could not be downloaded or is not an acceptable image."""


class ImageFetcher:
    """Fetches service image URLs over one HTTP session, never more than `max_bytes` each."""

    def __init__(self, *, max_bytes: int, timeout: float = 30.0, concurrency: int = 4) -> None:
        self.max_bytes = max_bytes
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, url: str) -> bytes:
        """The image at `url`; raises DownloadError when it is missing, too big or not an image."""
        parsed = yarl.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise DownloadError("not an http(s) URL")
        async with self._limit:
            try:
                data = await self._get(parsed)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise DownloadError(f"{type(exc).__name__}") from None
        if sniff_content_type(data) not in IMAGE_TYPES:
            raise DownloadError("not a PNG, JPEG or WEBP image")
        return data

    async def fetch_many(self, urls: Sequence[str]) -> list[bytes | None]:
        """Fetch every URL concurrently; a failed one is None (and logged)."""
        results = await asyncio.gather(*(self.fetch(url) for url in urls), return_exceptions=True)
        out: list[bytes | None] = []
        for url, result in zip(urls, results, strict=True):
            if isinstance(result, DownloadError):
                log.warning("could not download %s: %s", yarl.URL(url).with_query(None), result)
                out.append(None)
            elif isinstance(result, BaseException):
                raise result
            else:
                out.append(result)
        return out

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get(self, url: yarl.URL) -> bytes:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        async with self._session.get(url, allow_redirects=True) as resp:
            if resp.status != 200:
                raise DownloadError(f"HTTP {resp.status}")
            if (resp.content_length or 0) > self.max_bytes:
                raise DownloadError("larger than the download limit")
            buf = bytearray()
            async for chunk in resp.content.iter_chunked(_CHUNK):
                buf += chunk
                if len(buf) > self.max_bytes:
                    raise DownloadError("larger than the download limit")
            return bytes(buf)
