"""Logging set-up: plain or JSON lines, with every known secret redacted before it is written."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Literal

_REDACTED = "***"


class SecretRedactor(logging.Filter):
    """Replaces registered secret strings in log records, as a last line of defence."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str | None) -> None:
        """Register a secret (ignored when empty or too short to be one)."""
        if secret and len(secret) >= 4:
            with self._lock:
                self._secrets.add(secret)

    def redact(self, text: str) -> str:
        """Return text with every registered secret replaced."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
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
