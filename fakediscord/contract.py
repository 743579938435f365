"""Discord's API contract for the fake: every request the bot sends is checked against it.

Two layers:
- Discord's official OpenAPI spec (the subset in `discord_openapi_subset.json`, made by
  `spec_subset.py`): path and query parameters and request bodies, as JSON Schema 2020-12;
- the documented limits the spec does not encode (`limits.py`): message content, embed
  totals, component layout, autocomplete choices, modals, and the rules for command names,
  descriptions, options and localisations.

A request that breaks either is what the real Discord answers with 400 Invalid Form Body.
"""

from __future__ import annotations

import functools
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from fakediscord import limits

SUBSET_PATH = Path(__file__).with_name("discord_openapi_subset.json")
_BASE_URI = "urn:discord-openapi"
_SCHEMA_URN = "urn:discord-openapi:schema:"
_FILE_PART = re.compile(r"files\[(\d+)\]")
MAX_FILES = 10
_MAX_VERDICTS = 4096  # remembered body verdicts, more than any test run sends
Finding = tuple[str, str]  # (JSON path, the rule it breaks)


@dataclass(frozen=True)
class Violation:
    """One way a request breaks Discord's contract."""

    method: str
    path: str
    operation: str
    where: str
    rule: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.operation}) at {self.where}: {self.rule}"


@dataclass(frozen=True)
class Operation:
    """A spec operation: its id, template, parameters and request body schemas by media type."""

    method: str
    template: str
    operation_id: str
    pointer: str
    parameters: tuple[tuple[dict[str, Any], str], ...]  # (parameter, pointer to its schema)
    body_media: tuple[str, ...]
    body_required: bool


class DiscordContract:
    """Validate requests against Discord's OpenAPI subset plus its documented limits."""

    def __init__(self, subset_path: Path = SUBSET_PATH) -> None:
        self.spec: dict[str, Any] = json.loads(subset_path.read_text(encoding="utf-8"))
        _accept_integer_snowflakes(self.spec)
        _enums_as_enum(self.spec)
        # Each component schema is its own resource, so a $ref is one dictionary lookup rather
        # than a JSON pointer walk through the whole document on every use.
        _refs_to_urns(self.spec)
        _dispatch_unions_on_type(self.spec)
        resources = [(_BASE_URI, _resource(self.spec))] + [
            (f"{_SCHEMA_URN}{name}", _resource(schema))
            for name, schema in self.spec["components"]["schemas"].items()
        ]
        self._registry: Registry[Any] = Registry().with_resources(resources).crawl()
        self._validators: dict[str, Draft202012Validator] = {}
        self._verdicts: dict[tuple[str, str | None, str, tuple[str, ...]], tuple[Finding, ...]] = {}
        self._routes = list(self._operations())
        self.locales = frozenset(self.spec["components"]["schemas"]["AvailableLocalesEnum"]["enum"])

    # routing

    def _operations(self) -> Iterator[tuple[re.Pattern[str], int, Operation]]:
        for template, item in self.spec["paths"].items():
            where = f"/paths/{_escape(template)}"
            shared = _parameters(item, where)
            segments = template.strip("/").split("/")
            regex = "/" + "/".join(
                f"(?P<{s[1:-1]}>[^/]+)" if s.startswith("{") else re.escape(s) for s in segments
            )
            literal = sum(not s.startswith("{") for s in segments)
            for method, op in item.items():
                if method == "parameters":
                    continue
                body = op.get("requestBody") or {}
                yield (
                    re.compile(regex),
                    literal,
                    Operation(
                        method=method.upper(),
                        template=template,
                        operation_id=op["operationId"],
                        pointer=f"{where}/{method}",
                        parameters=shared + _parameters(op, f"{where}/{method}"),
                        body_media=tuple(body.get("content", {})),
                        body_required=bool(body.get("required")),
                    ),
                )

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The spec operation for a request (literal segments win over parameters)."""
        found = [
            (literal, op, m.groupdict())
            for regex, literal, op in self._routes
            if op.method == method.upper() and (m := regex.fullmatch(path))
        ]
        if not found:
            return None
        _, op, params = max(found, key=lambda x: x[0])
        return op, params

    # checking

    def check(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        content_type: str | None = None,
        body: Any = None,
        file_parts: Iterable[str] = (),
    ) -> list[Violation]:
        """Every way this request breaks the contract (empty when Discord would accept it).

        `path` is relative to /api/v10; `body` is the JSON body or the multipart `payload_json`;
        `file_parts` are the names of the multipart parts that carry files.
        """
        matched = self.match(method, path)
        if matched is None:
            rule = "no such operation in Discord's API spec"
            return [Violation(method.upper(), path, "?", "route", rule)]
        op, path_params = matched
        found = list(self._check_parameters(op, path_params, query or {}))
        found += self._check_body(op, content_type, body, list(file_parts))
        documented = list(limits.check(op.operation_id, body, self.locales))
        # Where a documented limit and the schema flag the same spot, say it once, in the
        # documented limit's words.
        flagged = {where for where, _ in documented}
        found = [item for item in found if item[0] not in flagged] + documented
        return [Violation(op.method, path, op.operation_id, w, r) for w, r in found]

    def _check_parameters(
        self, op: Operation, path_params: dict[str, str], query: dict[str, str]
    ) -> Iterator[tuple[str, str]]:
        declared = {(p["in"], p["name"]): (p, pointer) for p, pointer in op.parameters}
        for name, value in path_params.items():
            yield from self._check_parameter(declared, "path", name, value)
        for name, value in query.items():
            if ("query", name) not in declared:
                yield f"query.{name}", "query parameter not defined for this operation"
                continue
            yield from self._check_parameter(declared, "query", name, value)
        for (where, name), (param, _) in declared.items():
            if param.get("required") and where == "query" and name not in query:
                yield f"query.{name}", "required query parameter missing"

    def _check_parameter(
        self,
        declared: dict[tuple[str, str], tuple[dict[str, Any], str]],
        where: str,
        name: str,
        raw: str,
    ) -> Iterator[tuple[str, str]]:
        if (where, name) not in declared:
            yield f"{where}.{name}", "parameter not declared in the spec"
            return
        param, pointer = declared[where, name]
        value = _coerce(raw, self._types(param.get("schema", {})))
        for error in self._validator({"$ref": f"{_BASE_URI}#{pointer}"}).iter_errors(value):
            yield f"{where}.{name}", _describe(_leaf(error))

    def _types(self, schema: dict[str, Any]) -> set[str]:
        while "$ref" in schema:
            schema = self._registry.resolver(_BASE_URI).lookup(schema["$ref"]).contents
        kinds = schema.get("type", "string")
        return {kinds} if isinstance(kinds, str) else set(kinds)

    def _check_body(
        self, op: Operation, content_type: str | None, body: Any, file_parts: list[str]
    ) -> tuple[Finding, ...]:
        # The same body gets the same verdict. Every test syncs the same command tree, the
        # costliest payload to check, so remembering verdicts halves the checks' CPU time.
        key = (op.pointer, content_type, json.dumps(body, sort_keys=True), tuple(file_parts))
        verdict = self._verdicts.get(key)
        if verdict is None:
            if len(self._verdicts) >= _MAX_VERDICTS:
                self._verdicts.clear()
            verdict = tuple(self._body_findings(op, content_type, body, file_parts))
            self._verdicts[key] = verdict
        return verdict

    def _body_findings(
        self, op: Operation, content_type: str | None, body: Any, file_parts: list[str]
    ) -> Iterator[tuple[str, str]]:
        if body is None and not file_parts:
            if op.body_required:
                yield "body", "request body required"
            return
        if not op.body_media:
            yield "body", "this operation takes no request body"
            return
        media = content_type or "application/json"
        if media not in op.body_media:
            yield "body", f"content type {media} not accepted (spec: {', '.join(op.body_media)})"
            return
        if media == "multipart/form-data":
            yield from _check_file_parts(file_parts)
            body = {} if body is None else body  # files alone, without payload_json
        pointer = f"{op.pointer}/requestBody/content/{_escape(media)}/schema"
        for error in self._validator({"$ref": f"{_BASE_URI}#{pointer}"}).iter_errors(body):
            leaf = _leaf(error)
            yield leaf.json_path, _describe(leaf)

    def _validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        key = json.dumps(schema, sort_keys=True)
        validator = self._validators.get(key)
        if validator is None:
            validator = Draft202012Validator(schema, registry=self._registry)
            self._validators[key] = validator
        return validator


@functools.cache
def default_contract() -> DiscordContract:
    """The contract from the committed subset, loaded once per test session."""
    return DiscordContract()


def format_violations(violations: Iterable[Violation]) -> str:
    """A readable block for a failing test: one violation a line."""
    lines = [f"  {v}" for v in violations]
    return "requests the real Discord would reject (400 Invalid Form Body):\n" + "\n".join(lines)


def _resource(contents: dict[str, Any]) -> Resource[Any]:
    return Resource.from_contents(contents, default_specification=DRAFT202012)


def _refs_to_urns(node: Any) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            node["$ref"] = _SCHEMA_URN + ref.rsplit("/", 1)[1]
        for value in node.values():
            _refs_to_urns(value)
    elif isinstance(node, list):
        for value in node:
            _refs_to_urns(value)


def _dispatch_unions_on_type(spec: dict[str, Any]) -> None:
    # Same meaning, much faster and clearer: a oneOf/anyOf whose branches are objects told apart
    # by a required `type` with disjoint values (components, interaction callbacks, options)
    # validates only the branch the instance's `type` selects, instead of every branch.
    schemas = spec["components"]["schemas"]

    def discriminator(branch: Any) -> list[Any] | None:
        ref = branch.get("$ref", "") if isinstance(branch, dict) else ""
        target = schemas.get(ref.removeprefix(_SCHEMA_URN)) if ref.startswith(_SCHEMA_URN) else None
        if not target or "type" not in target.get("required", []):
            return None
        kind = target.get("properties", {}).get("type", {})
        values = kind.get("enum", [kind["const"]] if "const" in kind else None)
        return list(values) if values else None

    def rewrite(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                rewrite(item)
            return
        if not isinstance(node, dict):
            return
        for value in node.values():
            rewrite(value)
        for keyword in ("oneOf", "anyOf"):
            branches = node.get(keyword)
            if not isinstance(branches, list) or len(branches) < 2:
                continue
            values = [discriminator(b) for b in branches]
            flat = [v for vs in values if vs is not None for v in vs]
            if any(v is None for v in values) or len(flat) != len(set(flat)):
                continue
            del node[keyword]
            guard = {"type": "object", "required": ["type"], "properties": {"type": {"enum": flat}}}
            node["allOf"] = [
                *node.get("allOf", []),
                guard,
                *(
                    {
                        "if": {"type": "object", "properties": {"type": {"enum": vs}}},
                        "then": branch,
                    }
                    for vs, branch in zip(values, branches, strict=True)
                ),
            ]

    rewrite(spec)


def _enums_as_enum(spec: dict[str, Any]) -> None:
    # Same meaning, much faster: the spec writes enums as `oneOf` of documented `const`s, which
    # jsonschema evaluates branch by branch for every component type in a message.
    for schema in spec["components"]["schemas"].values():
        branches = schema.get("oneOf")
        if isinstance(branches, list) and branches and all("const" in b for b in branches):
            values = [b["const"] for b in branches]
            if len(set(map(json.dumps, values))) == len(values):
                del schema["oneOf"]
                schema["enum"] = values


def _accept_integer_snowflakes(spec: dict[str, Any]) -> None:
    # Where the spec is wrong: it types snowflakes as decimal strings only, but Discord reads a
    # snowflake from a JSON integer too, and discord.py sends integers (attachment ids in
    # payload_json, allowed_mentions users and roles, the DM recipient_id).
    schemas = spec["components"]["schemas"]
    schemas["SnowflakeType"] = {
        "anyOf": [schemas["SnowflakeType"], {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}]
    }


def _check_file_parts(names: list[str]) -> Iterator[tuple[str, str]]:
    if len(names) > MAX_FILES:
        yield "files", f"{len(names)} files; Discord accepts at most {MAX_FILES} per message"
    for name in names:
        m = _FILE_PART.fullmatch(name)
        if m is None or int(m[1]) >= MAX_FILES:
            yield f"files.{name}", f"file part must be named files[0]..files[{MAX_FILES - 1}]"


def _parameters(node: dict[str, Any], pointer: str) -> tuple[tuple[dict[str, Any], str], ...]:
    params = node.get("parameters", [])
    return tuple((p, f"{pointer}/parameters/{i}/schema") for i, p in enumerate(params))


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _coerce(raw: str, types: set[str]) -> Any:
    # Query and path values arrive as text; read them the way Discord does (booleans as
    # true/false or 1/0: discord.py sends `wait=1`, `with_response=1`).
    if "boolean" in types and raw.lower() in ("true", "false", "1", "0"):
        return raw.lower() in ("true", "1")
    if types & {"integer", "number"}:
        try:
            return int(raw)
        except ValueError:
            return raw
    return raw


def _leaf(error: ValidationError) -> ValidationError:
    """The most specific cause, following the union branch the payload's `type` selects."""
    while error.context:
        branches: dict[Any, list[ValidationError]] = defaultdict(list)
        for sub in error.context:
            branches[sub.relative_schema_path[0]].append(sub)
        plausible = [errs for errs in branches.values() if not any(map(_ruled_out, errs))]
        candidates = [e for errs in plausible for e in errs] or list(error.context)
        chosen = best_match(candidates)
        if chosen is None:
            break
        error = chosen
    return error


def _ruled_out(error: ValidationError) -> bool:
    # A branch whose discriminator (its `type` const/enum, or its JSON type) does not match.
    path = list(error.relative_path)
    if path == ["type"] and error.validator in ("enum", "const"):
        return True
    return not path and error.validator in ("type", "const")


def _describe(error: ValidationError) -> str:
    kind, limit, value = error.validator, error.validator_value, error.instance
    if kind in ("maxLength", "minLength") and isinstance(value, str):
        return f"{kind} {limit}: got a string of {len(value)} characters"
    if kind in ("maxItems", "minItems") and isinstance(value, list):
        return f"{kind} {limit}: got {len(value)} items"
    if kind == "required":
        return error.message
    text = error.message
    return f"{kind}: {text if len(text) <= 200 else text[:200] + '…'}"
