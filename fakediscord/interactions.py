"""Interaction payloads sent to the bot, and the record of how the bot answered each one."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

from fakediscord import payloads as p
from fakediscord.signals import Changes
from fakediscord.world import World

log = logging.getLogger(__name__)

SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = (
    3, 4, 5, 6, 7, 8, 9, 10, 11,
)  # fmt: skip

LogEntry = tuple[str, dict[str, Any]]


class FakeInteraction:
    """An interaction the fake sent, with every callback, edit and followup the bot made."""

    def __init__(self, payload: dict[str, Any], world: World, changes: Changes):
        self.payload = payload
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.type: int = payload["type"]
        self.log: list[LogEntry] = []
        # time.monotonic() when the fake dispatched it and when its callback arrived (in time
        # or not): Discord drops an interaction not acknowledged within 3 seconds.
        self.sent_at: float | None = None
        self.callback_at: float | None = None
        self.expired = False  # its callback came after Discord's window and was refused
        self.original_id: int | None = None
        self.followup_ids: list[int] = []
        self._world = world
        self._changes = changes

    def __repr__(self) -> str:
        return f"<FakeInteraction id={self.id} type={self.type} log={[k for k, _ in self.log]}>"

    @property
    def callback(self) -> dict[str, Any] | None:
        """The callback body the bot posted, if any."""
        return next((body for kind, body in self.log if kind == "callback"), None)

    @property
    def modal(self) -> dict[str, Any] | None:
        """The modal data (callback type 9) the bot answered with, if any."""
        body = self.callback
        return body.get("data") if body and body.get("type") == 9 else None

    @property
    def followups(self) -> list[dict[str, Any]]:
        """Current state of the followup messages the bot sent."""
        found = (self._world.find_message(mid) for mid in self.followup_ids)
        return [m for m in found if m is not None]

    def original(self) -> dict[str, Any] | None:
        """Return the current original response message, or None if none exists."""
        if self.original_id is None:
            return None
        return self._world.find_message(self.original_id)

    async def response(self, timeout: float = 5) -> dict[str, Any]:
        """Wait for the callback body the bot posted (`{"type": ..., "data": ...}`)."""
        return await self._changes.wait(lambda: self.callback, timeout, f"a response to {self!r}")

    async def wait_for(
        self,
        predicate: Callable[..., bool] | None = None,
        timeout: float = 5,
    ) -> dict[str, Any]:
        """Wait for a logged body matching `predicate(body)` or `predicate(kind, body)`."""
        two_args = predicate is not None and _arity(predicate) >= 2

        def check() -> dict[str, Any] | None:
            for kind, body in self.log:
                if predicate is None:
                    return body
                if predicate(kind, body) if two_args else predicate(body):
                    return body
            return None

        return await self._changes.wait(check, timeout, f"a matching entry in {self!r}")

    async def record(self, kind: str, body: dict[str, Any]) -> None:
        """Append to the log and wake waiters."""
        if kind == "callback" and self.callback_at is None:
            self.callback_at = time.monotonic()
        self.log.append((kind, body))
        await self._changes.notify()


def _arity(func: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return 1
    return sum(1 for prm in params if prm.kind in (prm.POSITIONAL_ONLY, prm.POSITIONAL_OR_KEYWORD))


class PayloadBuilder:
    """Build INTERACTION_CREATE payloads from the fake's world."""

    def __init__(self, world: World, attachment_size_limit: int):
        self.world = world
        self.attachment_size_limit = attachment_size_limit

    def interaction(
        self,
        ix_type: int,
        data: dict[str, Any] | None,
        *,
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        locale: str,
        message: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Build an interaction of any type in a guild (member) or DM (user) context."""
        w = self.world
        ix_id = w.ids.next()
        payload: dict[str, Any] = {
            "id": str(ix_id),
            "application_id": str(w.application_id),
            "type": ix_type,
            "token": f"ixtoken-{ix_id}",
            "version": 1,
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": self.attachment_size_limit,
        }
        if data is not None:
            payload["data"] = data
        if message is not None:
            payload["message"] = message
        if guild_id is None:
            channel = w.open_dm(user_id, channel_id)
            payload.update(
                user=w.users[user_id],
                channel=channel,
                channel_id=channel["id"],
                context=1,
                app_permissions=str(p.EVERYONE_PERMISSIONS),
                authorizing_integration_owners={"1": str(user_id)},
            )
            return payload
        guild = w.guild(guild_id)
        if channel_id not in guild.channels:
            raise LookupError(f"channel {channel_id} was not added to guild {guild_id}")
        member = w.member_payload(guild_id, user_id)
        member["permissions"] = str(w.permissions(guild_id, user_id))
        app_permissions = w.permissions(guild_id, w.bot_user_id)
        channel = dict(guild.channels[channel_id], permissions=str(app_permissions))
        payload.update(
            guild_id=str(guild_id),
            guild={"id": str(guild_id), "locale": guild.locale, "features": []},
            guild_locale=guild.locale,
            member=member,
            channel=channel,
            channel_id=str(channel_id),
            context=0,
            app_permissions=str(app_permissions),
            authorizing_integration_owners={"0": str(guild_id)},
        )
        return payload

    def command_options(
        self,
        command: dict[str, Any],
        values: dict[str, Any],
        *,
        guild_id: int | None,
        subcommand: str | None,
        group: str | None,
        focused: str | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Encode option values by the registered command's types; return (options, resolved)."""
        defs = command.get("options") or []
        path = []
        if group is not None:
            defs = _option_def(command, defs, group, SUB_COMMAND_GROUP).get("options") or []
            path.append((SUB_COMMAND_GROUP, group))
        if subcommand is not None:
            defs = _option_def(command, defs, subcommand, SUB_COMMAND).get("options") or []
            path.append((SUB_COMMAND, subcommand))
        resolved: dict[str, dict[str, Any]] = {}
        if focused is not None:
            values = {focused: "", **values}
        leaf = []
        for name, value in values.items():
            opt_type = _option_def(command, defs, name)["type"]
            option: dict[str, Any] = {"name": name, "type": opt_type}
            if name == focused:
                option.update(value=value, focused=True)
            else:
                option["value"] = self._encode(opt_type, value, guild_id, resolved)
            leaf.append(option)
        options = leaf
        for kind, name in reversed(path):
            options = [{"type": kind, "name": name, "options": options}]
        return options, {k: v for k, v in resolved.items() if v}

    def _encode(
        self, opt_type: int, value: Any, guild_id: int | None, resolved: dict[str, dict[str, Any]]
    ) -> Any:
        w = self.world
        if opt_type == ATTACHMENT:
            att = value if isinstance(value, dict) else None
            if att is None:
                raise TypeError("attachment options take the dict returned by add_attachment()")
            resolved.setdefault("attachments", {})[att["id"]] = att
            return att["id"]
        if opt_type == MENTIONABLE:
            opt_type = ROLE if int(value) in self._roles(guild_id) else USER
        if opt_type == USER:
            user_id = int(value)
            resolved.setdefault("users", {})[str(user_id)] = w.users.get(
                user_id, p.user(user_id, f"user{user_id}")
            )
            if guild_id is not None:
                member = w.member_payload(guild_id, user_id)
                member.pop("user")
                member["permissions"] = str(w.permissions(guild_id, user_id))
                resolved.setdefault("members", {})[str(user_id)] = member
            return str(user_id)
        if opt_type == ROLE:
            roles = self._roles(guild_id)
            resolved.setdefault("roles", {})[str(value)] = roles[int(value)]
            return str(value)
        if opt_type == CHANNEL:
            channel = dict(w.channels[int(value)])
            if guild_id is not None:
                channel["permissions"] = str(w.permissions(guild_id, w.bot_user_id))
            resolved.setdefault("channels", {})[str(value)] = channel
            return str(value)
        if opt_type == INTEGER:
            return int(value)
        if opt_type == NUMBER:
            return float(value)
        if opt_type == BOOLEAN:
            return bool(value)
        return str(value)

    def _roles(self, guild_id: int | None) -> dict[int, dict[str, Any]]:
        return self.world.guild(guild_id).roles if guild_id is not None else {}


def _option_def(
    command: dict[str, Any], defs: list[dict[str, Any]], name: str, kind: int | None = None
) -> dict[str, Any]:
    for opt in defs:
        if opt["name"] == name and (kind is None or opt["type"] == kind):
            return opt
    known = [o["name"] for o in defs]
    raise LookupError(f"command {command['name']!r} has no option {name!r} here; known: {known}")


def modal_submit_components(modal: dict[str, Any], values: dict[str, Any]) -> list[dict[str, Any]]:
    """Mirror a modal's component tree as a MODAL_SUBMIT `components` list filled with values."""
    used: set[str] = set()

    def mirror(comp: dict[str, Any]) -> dict[str, Any]:
        ctype = comp["type"]
        out: dict[str, Any] = {"type": ctype}
        if "id" in comp:
            out["id"] = comp["id"]
        if ctype == 1:
            out["components"] = [mirror(c) for c in comp.get("components", [])]
        elif ctype == 18:
            out["component"] = mirror(comp["component"])
        elif "custom_id" in comp:
            custom_id = comp["custom_id"]
            out["custom_id"] = custom_id
            used.add(custom_id)
            value = values.get(custom_id)
            if ctype == 4:
                out["value"] = "" if value is None else str(value)
            else:
                value = [] if value is None else value
                out["values"] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        return out

    components = [mirror(c) for c in modal.get("components", [])]
    unknown = set(values) - used
    if unknown:
        raise LookupError(f"modal {modal.get('custom_id')!r} has no inputs {sorted(unknown)}")
    return components


def find_component(components: list[Any], custom_id: str) -> dict[str, Any] | None:
    """Find a component with `custom_id` anywhere in a (possibly nested) component tree."""
    for comp in components:
        if not isinstance(comp, dict):
            continue
        if comp.get("custom_id") == custom_id:
            return comp
        children = list(comp.get("components") or [])
        for key in ("accessory", "component"):
            if isinstance(comp.get(key), dict):
                children.append(comp[key])
        found = find_component(children, custom_id)
        if found is not None:
            return found
    return None


def component_ids(components: list[Any]) -> list[str]:
    """List every custom_id in a component tree, for error messages."""
    ids: list[str] = []
    for comp in components:
        if isinstance(comp, dict):
            if "custom_id" in comp:
                ids.append(comp["custom_id"])
            nested = list(comp.get("components") or [])
            nested += [comp[k] for k in ("accessory", "component") if isinstance(comp.get(k), dict)]
            ids += component_ids(nested)
    return ids
