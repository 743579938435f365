"""Discord's documented message limits, checked on every request the bot sent to the fake."""

from __future__ import annotations

from typing import Any

CONTENT_MAX, EMBEDS_MAX, EMBED_TOTAL_MAX = 2000, 10, 6000
TITLE_MAX, DESCRIPTION_MAX, FIELDS_MAX = 256, 4096, 25
FIELD_NAME_MAX, FIELD_VALUE_MAX, FOOTER_MAX, AUTHOR_MAX = 256, 1024, 2048, 256
CHOICES_MAX, CHOICE_MAX = 25, 100


def _embed_problems(embed: dict[str, Any]) -> list[str]:
    problems = []
    title, description = embed.get("title") or "", embed.get("description") or ""
    footer = (embed.get("footer") or {}).get("text") or ""
    author = (embed.get("author") or {}).get("name") or ""
    fields = embed.get("fields") or []
    sized = [("title", title, TITLE_MAX), ("description", description, DESCRIPTION_MAX)]
    sized += [("footer", footer, FOOTER_MAX), ("author", author, AUTHOR_MAX)]
    for field in fields:
        sized += [("field name", field.get("name") or "", FIELD_NAME_MAX)]
        sized += [("field value", str(field.get("value") or ""), FIELD_VALUE_MAX)]
        if not field.get("name") or not field.get("value"):
            problems.append(f"empty field {field}")
    problems += [f"{what} {len(text)} > {cap}" for what, text, cap in sized if len(text) > cap]
    if len(fields) > FIELDS_MAX:
        problems.append(f"{len(fields)} fields")
    total = sum(len(text) for _, text, _ in sized)
    if total > EMBED_TOTAL_MAX:
        problems.append(f"embed total {total} > {EMBED_TOTAL_MAX}")
    return problems


def message_problems(data: dict[str, Any]) -> list[str]:
    """What breaks Discord's limits in one message body (content, embeds, choices)."""
    problems = []
    content = data.get("content") or ""
    if len(content) > CONTENT_MAX:
        problems.append(f"content {len(content)} > {CONTENT_MAX}")
    embeds = data.get("embeds") or []
    if len(embeds) > EMBEDS_MAX:
        problems.append(f"{len(embeds)} embeds")
    for embed in embeds:
        problems += _embed_problems(embed)
    if sum(sum(len(t) for t in _texts(e)) for e in embeds) > EMBED_TOTAL_MAX:
        problems.append("embeds together exceed 6000")
    choices = data.get("choices")
    if choices is not None:
        if len(choices) > CHOICES_MAX:
            problems.append(f"{len(choices)} choices")
        for choice in choices:
            name, value = choice.get("name") or "", str(choice.get("value") or "")
            if not 1 <= len(name) <= CHOICE_MAX or not name.strip():
                problems.append(f"choice name of {len(name)} characters: {name[:20]!r}")
            if not 1 <= len(value) <= CHOICE_MAX:
                problems.append(f"choice value of {len(value)} characters")
    return problems


def _texts(embed: dict[str, Any]) -> list[str]:
    texts = [embed.get("title") or "", embed.get("description") or ""]
    texts += [(embed.get("footer") or {}).get("text") or ""]
    texts += [(embed.get("author") or {}).get("name") or ""]
    for field in embed.get("fields") or []:
        texts += [field.get("name") or "", str(field.get("value") or "")]
    return texts


def sent_messages(fake: Any) -> list[dict[str, Any]]:
    """Every message body the bot sent: callbacks, followups, edits and channel posts."""
    bodies = []
    for request in fake.requests:
        body = request.json
        if request.method not in ("POST", "PATCH") or not isinstance(body, dict):
            continue
        if "/callback" in request.path:
            body = body.get("data") or {}
        bodies.append(body)
    return bodies


def assert_within_limits(fake: Any) -> None:
    """Fail with every request body the bot sent that Discord would have refused."""
    found = [(body, message_problems(body)) for body in sent_messages(fake)]
    bad = [(problems, str(body)[:300]) for body, problems in found if problems]
    assert not bad, bad
