"""Discord's documented request limits that its OpenAPI spec does not encode (or gets wrong).

From the developer documentation: message content, embeds and their total, message component
layout, autocomplete choices, modals, and application command names, descriptions, options,
choices and localisations. Each check yields (JSON path, rule) pairs for `contract.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import regex

Found = Iterator[tuple[str, str]]

CONTENT = 2000
EMBEDS = 10
EMBED_TITLE, EMBED_DESCRIPTION, EMBED_FIELDS = 256, 4096, 25
FIELD_NAME, FIELD_VALUE, FOOTER_TEXT, AUTHOR_NAME = 256, 1024, 2048, 256
EMBEDS_TOTAL = 6000
ACTION_ROWS, ROW_BUTTONS, CUSTOM_ID, BUTTON_LABEL = 5, 5, 100, 80
CHOICES, CHOICE_NAME, CHOICE_VALUE = 25, 100, 100
MODAL_TITLE, MODAL_COMPONENTS = 45, 5
COMMAND_OPTIONS, COMMAND_DESCRIPTION, COMMAND_NAME, COMMAND_TOTAL = 25, 100, 32, 4000
CHAT_INPUT = 1
SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
IS_COMPONENTS_V2 = 1 << 15
BUTTON, ACTION_ROW = 2, 1

# Discord's documented rule for CHAT_INPUT command and option names.
NAME_PATTERN = regex.compile(r"^[-_\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$")

# Operations whose whole body is a message payload.
_MESSAGE_OPERATIONS = frozenset(
    {
        "create_message",
        "update_message",
        "execute_webhook",
        "update_webhook_message",
        "update_original_webhook_message",
    }
)
_COMMAND_OPERATIONS = frozenset(
    {"bulk_set_application_commands", "bulk_set_guild_application_commands"}
)


def check(operation_id: str, body: Any, locales: frozenset[str]) -> Found:
    """Documented limits for one request body of the given spec operation."""
    if operation_id in _MESSAGE_OPERATIONS and isinstance(body, dict):
        yield from message(body, "$")
    elif operation_id == "create_interaction_response" and isinstance(body, dict):
        yield from interaction_response(body)
    elif operation_id in _COMMAND_OPERATIONS and isinstance(body, list):
        yield from commands(body, locales)


def interaction_response(body: dict[str, Any]) -> Found:
    """Callback types 4/5/7 carry a message, 8 autocomplete choices, 9 a modal."""
    kind, data = body.get("type"), body.get("data")
    if not isinstance(data, dict):
        return
    if kind in (4, 5, 7):
        yield from message(data, "$.data")
    elif kind == 8:
        yield from choices(data.get("choices"), "$.data.choices")
    elif kind == 9:
        yield from modal(data, "$.data")


def message(body: dict[str, Any], at: str) -> Found:
    """Content, embeds and components of a message create or edit."""
    content = body.get("content")
    if isinstance(content, str) and len(content) > CONTENT:
        yield f"{at}.content", _too_long("content", content, CONTENT)
    embeds = body.get("embeds")
    if isinstance(embeds, list):
        yield from _embeds(embeds, f"{at}.embeds")
    components = body.get("components")
    v2 = int(body.get("flags") or 0) & IS_COMPONENTS_V2
    if isinstance(components, list) and not v2:
        yield from _components(components, f"{at}.components")


def _embeds(embeds: list[Any], at: str) -> Found:
    if len(embeds) > EMBEDS:
        yield at, f"{len(embeds)} embeds; Discord allows at most {EMBEDS}"
    total = 0
    for i, embed in enumerate(embeds):
        if not isinstance(embed, dict):
            continue
        here = f"{at}[{i}]"
        for key, limit in (("title", EMBED_TITLE), ("description", EMBED_DESCRIPTION)):
            text = embed.get(key)
            if isinstance(text, str):
                total += len(text)
                if len(text) > limit:
                    yield f"{here}.{key}", _too_long(f"embed {key}", text, limit)
        for key, sub, limit in (("footer", "text", FOOTER_TEXT), ("author", "name", AUTHOR_NAME)):
            text = (embed.get(key) or {}).get(sub)
            if isinstance(text, str):
                total += len(text)
                if len(text) > limit:
                    yield f"{here}.{key}.{sub}", _too_long(f"embed {key} {sub}", text, limit)
        fields = embed.get("fields") or []
        if len(fields) > EMBED_FIELDS:
            yield f"{here}.fields", f"{len(fields)} fields; Discord allows at most {EMBED_FIELDS}"
        for j, field in enumerate(fields):
            for key, limit in (("name", FIELD_NAME), ("value", FIELD_VALUE)):
                text = field.get(key) if isinstance(field, dict) else None
                if isinstance(text, str):
                    total += len(text)
                    if len(text) > limit:
                        where = f"{here}.fields[{j}].{key}"
                        yield where, _too_long(f"embed field {key}", text, limit)
    if total > EMBEDS_TOTAL:
        yield (
            at,
            (
                f"embeds hold {total} characters in all (titles, descriptions, field names and"
                f" values, footers, authors); Discord allows at most {EMBEDS_TOTAL}"
            ),
        )


def _components(rows: list[Any], at: str) -> Found:
    if len(rows) > ACTION_ROWS:
        yield at, f"{len(rows)} action rows; Discord allows at most {ACTION_ROWS}"
    seen: set[str] = set()
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            continue
        here = f"{at}[{i}]"
        if row.get("type") != ACTION_ROW:
            yield (
                f"{here}.type",
                "top-level components must be action rows without IS_COMPONENTS_V2",
            )
            continue
        children = [c for c in row.get("components") or [] if isinstance(c, dict)]
        buttons = [c for c in children if c.get("type") == BUTTON]
        if len(buttons) > ROW_BUTTONS:
            yield (
                f"{here}.components",
                (f"{len(buttons)} buttons in one row; Discord allows at most {ROW_BUTTONS}"),
            )
        if len(buttons) != len(children) and len(children) > 1:
            yield f"{here}.components", "a select menu must be alone in its action row"
        for j, child in enumerate(children):
            where = f"{here}.components[{j}]"
            custom_id, label = child.get("custom_id"), child.get("label")
            if isinstance(custom_id, str):
                if len(custom_id) > CUSTOM_ID:
                    yield f"{where}.custom_id", _too_long("custom_id", custom_id, CUSTOM_ID)
                elif custom_id in seen:
                    yield f"{where}.custom_id", f"custom_id {custom_id!r} used twice in a message"
                seen.add(custom_id)
            if isinstance(label, str) and len(label) > BUTTON_LABEL:
                yield f"{where}.label", _too_long("button label", label, BUTTON_LABEL)


def modal(data: dict[str, Any], at: str) -> Found:
    """A modal's title, custom_id and number of components."""
    title, custom_id = data.get("title"), data.get("custom_id")
    if isinstance(title, str) and not 1 <= len(title) <= MODAL_TITLE:
        yield f"{at}.title", _length("modal title", title, 1, MODAL_TITLE)
    if isinstance(custom_id, str) and not 1 <= len(custom_id) <= CUSTOM_ID:
        yield f"{at}.custom_id", _length("modal custom_id", custom_id, 1, CUSTOM_ID)
    components = data.get("components") or []
    if len(components) > MODAL_COMPONENTS:
        yield (
            f"{at}.components",
            (f"{len(components)} components; a modal holds at most {MODAL_COMPONENTS}"),
        )


def choices(items: Any, at: str) -> Found:
    """Option choices (static or from autocomplete): count, name 1-100, string value <= 100."""
    if not isinstance(items, list):
        return
    if len(items) > CHOICES:
        yield at, f"{len(items)} choices; Discord allows at most {CHOICES}"
    for i, choice in enumerate(items):
        if not isinstance(choice, dict):
            continue
        name, value = choice.get("name"), choice.get("value")
        if isinstance(name, str) and not 1 <= len(name) <= CHOICE_NAME:
            yield f"{at}[{i}].name", _length("choice name", name, 1, CHOICE_NAME)
        # The spec says 6000 for string values; Discord documents (and enforces) 100.
        if isinstance(value, str) and len(value) > CHOICE_VALUE:
            yield f"{at}[{i}].value", _too_long("choice value", value, CHOICE_VALUE)


def commands(items: list[Any], locales: frozenset[str]) -> Found:
    """A bulk overwrite of application commands: every command's documented rules."""
    seen: set[tuple[int, str]] = set()
    for i, command in enumerate(items):
        if not isinstance(command, dict):
            continue
        at = f"$[{i}]"
        kind = command.get("type") or CHAT_INPUT
        name = command.get("name")
        if isinstance(name, str):
            if (kind, name) in seen:
                yield f"{at}.name", f"two commands of type {kind} are named {name!r}"
            seen.add((kind, name))
        yield from _named(command, at, locales, chat_input=kind == CHAT_INPUT)
        if kind == CHAT_INPUT:
            yield from _described(command, at, locales)
        elif command.get("description"):
            yield f"{at}.description", "user and message commands must have an empty description"
        options = command.get("options") or []
        if kind != CHAT_INPUT and options:
            yield f"{at}.options", "only slash commands take options"
        yield from _options(options, f"{at}.options", locales)
        total = _characters(command)
        if total > COMMAND_TOTAL:
            yield (
                at,
                (
                    f"names, descriptions and choice values add up to {total} characters;"
                    f" Discord allows at most {COMMAND_TOTAL} per command"
                ),
            )


def _options(options: list[Any], at: str, locales: frozenset[str]) -> Found:
    if len(options) > COMMAND_OPTIONS:
        yield at, f"{len(options)} options; Discord allows at most {COMMAND_OPTIONS}"
    names: set[str] = set()
    optional_seen = False
    for i, option in enumerate(options):
        if not isinstance(option, dict):
            continue
        here = f"{at}[{i}]"
        name = option.get("name")
        if isinstance(name, str):
            if name in names:
                yield f"{here}.name", f"option name {name!r} used twice"
            names.add(name)
        yield from _named(option, here, locales, chat_input=True)
        yield from _described(option, here, locales)
        kind = option.get("type")
        if kind in (SUB_COMMAND, SUB_COMMAND_GROUP):
            yield from _options(option.get("options") or [], f"{here}.options", locales)
            continue
        if option.get("required"):
            if optional_seen:
                yield f"{here}.required", "required options must come before optional ones"
        else:
            optional_seen = True
        if option.get("autocomplete") and option.get("choices"):
            yield f"{here}.choices", "an autocomplete option cannot have choices"
        yield from choices(option.get("choices"), f"{here}.choices")
        for j, choice in enumerate(option.get("choices") or []):
            if isinstance(choice, dict):
                where = f"{here}.choices[{j}].name_localizations"
                yield from _localizations(choice.get("name_localizations"), where, locales)


def _named(node: dict[str, Any], at: str, locales: frozenset[str], *, chat_input: bool) -> Found:
    name = node.get("name")
    if isinstance(name, str):
        yield from _name(name, f"{at}.name", chat_input=chat_input)
    localized = node.get("name_localizations")
    yield from _localizations(localized, f"{at}.name_localizations", locales)
    if isinstance(localized, dict):
        for locale, text in localized.items():
            if isinstance(text, str):
                where = f"{at}.name_localizations.{locale}"
                yield from _name(text, where, chat_input=chat_input)


def _name(name: str, at: str, *, chat_input: bool) -> Found:
    if not chat_input:
        if not 1 <= len(name) <= COMMAND_NAME:
            yield at, _length("command name", name, 1, COMMAND_NAME)
        return
    if NAME_PATTERN.match(name) is None:
        yield at, f"name {name[:40]!r} does not match {NAME_PATTERN.pattern}"
    elif any(c.lower() != c for c in name):
        yield at, f"name {name!r} must use the lowercase variant of its letters"


def _described(node: dict[str, Any], at: str, locales: frozenset[str]) -> Found:
    text = node.get("description")
    if not isinstance(text, str) or not 1 <= len(text) <= COMMAND_DESCRIPTION:
        yield f"{at}.description", _length("description", text or "", 1, COMMAND_DESCRIPTION)
    localized = node.get("description_localizations")
    yield from _localizations(localized, f"{at}.description_localizations", locales)
    if isinstance(localized, dict):
        for locale, value in localized.items():
            if isinstance(value, str) and not 1 <= len(value) <= COMMAND_DESCRIPTION:
                where = f"{at}.description_localizations.{locale}"
                yield where, _length("description", value, 1, COMMAND_DESCRIPTION)


def _localizations(localized: Any, at: str, locales: frozenset[str]) -> Found:
    if not isinstance(localized, dict):
        return
    for locale in localized:
        if locale not in locales:
            yield f"{at}.{locale}", f"{locale!r} is not one of Discord's locales"


def _characters(node: Any) -> int:
    # Discord counts name, description and value of the command, its options and choices.
    if isinstance(node, list):
        return sum(_characters(item) for item in node)
    if not isinstance(node, dict):
        return 0
    own = sum(len(str(node.get(k) or "")) for k in ("name", "description", "value"))
    return own + _characters(node.get("options") or []) + _characters(node.get("choices") or [])


def _too_long(what: str, text: str, limit: int) -> str:
    return f"{what} is {len(text)} characters; Discord allows at most {limit}"


def _length(what: str, text: str, low: int, high: int) -> str:
    return f"{what} is {len(text)} characters; Discord requires {low} to {high}"
