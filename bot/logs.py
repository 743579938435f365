"""Logging set-up: plain or JSON lines, with every known secret redacted before it is written."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import Counter
from typing import Literal

_REDACTED = "***"
# Shorter strings are too likely to be ordinary words or ids ("task", a guild id) to mask.
SECRET_MIN_LENGTH = 8


class SecretRedactor(logging.Filter):
    """Replaces the secrets in use in log records, as a last line of defence.

    Secrets are registered under a key (e.g. one guild's account) and replaced as a group, so
    an account's old password and token stop being masked once it changes or is removed.
    A line is cut into its windows of SECRET_MIN_LENGTH characters, which are looked up among
    the secrets' prefixes: the cost per line does not grow with the number of secrets (one
    alternation regex of them all would be tried branch by branch at every position).
    """

    def __init__(self) -> None:
        super().__init__()
        self._by_key: dict[str, frozenset[str]] = {}
        self._uses: Counter[str] = Counter()
        # prefix -> the secrets starting with it. Changed in place under the lock, which
        # lines logged from other threads take too: a change costs what it changes, not the
        # size of the whole index (a thousand servers' accounts open one by one).
        self._index: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def set(self, key: str, *secrets: str | None) -> None:
        """Make `secrets` the ones masked for `key`, replacing what it had (short ones ignored)."""
        kept = frozenset(s for s in secrets if s and len(s) >= SECRET_MIN_LENGTH)
        with self._lock:
            old = self._by_key.pop(key, frozenset())
            if kept:
                self._by_key[key] = kept
            for secret in old - kept:
                self._uses[secret] -= 1
                if not self._uses[secret]:
                    del self._uses[secret]
                    prefix = secret[:SECRET_MIN_LENGTH]
                    self._index[prefix].discard(secret)
                    if not self._index[prefix]:
                        del self._index[prefix]
            for secret in kept - old:
                self._uses[secret] += 1
                self._index.setdefault(secret[:SECRET_MIN_LENGTH], set()).add(secret)

    def discard(self, key: str) -> None:
        """Stop masking the secrets registered under `key`."""
        self.set(key)

    @property
    def secret_count(self) -> int:
        """How many distinct secrets are masked now."""
        return len(self._uses)

    def redact(self, text: str) -> str:
        """Return text with every registered secret replaced."""
        size = SECRET_MIN_LENGTH
        with self._lock:
            index = self._index
            if not index or len(text) < size:
                return text
            windows = {text[i : i + size] for i in range(len(text) - size + 1)}
            if not any(window in index for window in windows):
                return text
            parts: list[str] = []
            start = pos = 0
            while pos <= len(text) - size:
                candidates = sorted(index.get(text[pos : pos + size], ()), key=len, reverse=True)
                found = next((s for s in candidates if text.startswith(s, pos)), None)
                if found is None:
                    pos += 1
                    continue
                parts += (text[start:pos], _REDACTED)
                pos = start = pos + len(found)
            parts.append(text[start:])
            return "".join(parts)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._index:
            return True
        message = self.redact(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


redactor = SecretRedactor()


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            payload["exc"] = record.exc_text
        return json.dumps(payload, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: Literal["plain", "json"] = "plain") -> None:
    """Configure the root logger once for the whole process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(redactor)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("discord").setLevel(max(logging.getLevelName(level), logging.INFO))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class GatewayPayloadFilter(logging.Filter):
    """Logs gateway events by opcode and type only: their payloads carry what users typed,
    modal fields with passwords included."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "WebSocket Event" in str(record.msg) and isinstance(record.args, tuple):
            event = record.args[-1]
            if isinstance(event, dict):
                summary = f"op={event.get('op')} t={event.get('t')} s={event.get('s')}"
                record.args = (*record.args[:-1], summary)
        return True


_gateway_filter = GatewayPayloadFilter()


def hide_gateway_payloads() -> None:
    """Install the gateway payload filter on discord.py's gateway logger (idempotent)."""
    gateway_log = logging.getLogger("discord.gateway")
    if _gateway_filter not in gateway_log.filters:
        gateway_log.addFilter(_gateway_filter)
