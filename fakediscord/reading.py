"""Reading what the bot answered to a fake interaction: shared by the tests and the benchmark."""

from __future__ import annotations

from typing import Any

from fakediscord.interactions import FakeInteraction

EPHEMERAL = 1 << 6


def message_text(body: dict[str, Any]) -> str:
    """Content plus every embed's visible text of a message or callback body."""
    data = body.get("data", body) if "type" in body and "data" in body else body
    parts = [data.get("content") or ""]
    for embed in data.get("embeds") or []:
        parts += [embed.get("title") or "", embed.get("description") or ""]
        for field in embed.get("fields") or []:
            parts += [field.get("name", ""), str(field.get("value", ""))]
    return "\n".join(p for p in parts if p)


def _is_answer(kind: str, body: dict[str, Any]) -> bool:
    if kind == "callback":
        return body.get("type") in (4, 7) and bool(message_text(body))
    return kind in ("followup", "edit_original") and bool(message_text(body))


async def answer(ix: FakeInteraction, timeout: float = 10) -> dict[str, Any]:
    """The first visible answer to an interaction (message callback, followup or edit)."""
    return await ix.wait_for(_is_answer, timeout)


async def answer_text(ix: FakeInteraction, timeout: float = 10) -> str:
    """The text of the first visible answer to an interaction."""
    return message_text(await answer(ix, timeout))


def is_ephemeral(ix: FakeInteraction) -> bool:
    """Whether the interaction was answered ephemerally (callback or deferral flags)."""
    body = ix.callback or {}
    return bool((body.get("data") or {}).get("flags", 0) & EPHEMERAL)
