"""Small helpers for end-to-end tests: reading what the bot answered, making images."""

from __future__ import annotations

import io

from PIL import Image

from fakediscord.reading import EPHEMERAL, answer, answer_text, is_ephemeral, message_text

__all__ = ["EPHEMERAL", "answer", "answer_text", "is_ephemeral", "message_text", "png_bytes"]


def png_bytes(width: int = 64, height: int = 64, color: str = "teal", fmt: str = "PNG") -> bytes:
    """A small valid image."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, fmt)
    return buf.getvalue()
