"""The fake Discord holds every request to Discord's API contract, and a breach fails the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import discord
import pytest
from aiohttp import web

from fakediscord import FakeDiscord
from fakediscord import spec_subset as subset_script
from fakediscord.contract import DiscordContract, Violation, default_contract
from fakediscord.rest import API_PREFIX, RestApi
from tests.conftest import ADMIN_A, CH_A, GUILD_A, MEMBER_A, Harness
from tests.genutil import imagine, task_id_of, wait_result
from tests.helpers import answer_text

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def contract() -> DiscordContract:
    return default_contract()


def only(violations: list[Violation]) -> Violation:
    assert len(violations) == 1, [str(v) for v in violations]
    return violations[0]


# the committed subset


def test_committed_subset_is_what_the_script_generates_from_the_full_spec() -> None:
    spec = subset_script.find_spec()
    assert spec is not None, "shared/spec/discord-openapi.json must be beside the repository"
    committed = subset_script.SUBSET.read_text(encoding="utf-8")
    assert committed == subset_script.render(spec), (
        "fakediscord/discord_openapi_subset.json is stale: run python fakediscord/spec_subset.py"
    )
    licence = spec.with_name("discord-openapi.LICENSE").read_text(encoding="utf-8")
    assert subset_script.LICENSE.read_text(encoding="utf-8") == licence


def _samples(canonical: str) -> list[str]:
    """Concrete paths for a route template, with the literal values Discord's paths use."""
    choices = {
        "user": ["@me", "5"],
        "message_id": ["@original", "5"],
        "token": ["tok"],
        "emoji": ["%F0%9F%94%81"],
    }
    paths = [""]
    for segment in canonical.strip("/").split("/"):
        name = segment[1:-1].split(":")[0] if segment.startswith("{") else None
        values = choices.get(name, ["5"]) if name else [segment]
        paths = [f"{p}/{v}" for p in paths for v in values]
    return paths


def test_every_route_the_fake_serves_is_an_operation_of_the_spec(
    contract: DiscordContract,
) -> None:
    app = web.Application()
    RestApi(FakeDiscord()).install(app)
    served = set()
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource else ""
        if not canonical.startswith(API_PREFIX) or "{tail" in canonical or route.method == "HEAD":
            continue
        paths = [p[len(API_PREFIX) :] for p in _samples(canonical)]
        found = [m for p in paths if (m := contract.match(route.method, p)) is not None]
        assert found, f"{route.method} {canonical} has no operation in the spec subset"
        served |= {(route.method, m[0].template) for m in found}
    listed = {(m.upper(), path) for path, methods in subset_script.SERVED.items() for m in methods}
    assert served == listed


# documented limits the spec does not encode


def test_content_over_2000_characters_is_refused(contract: DiscordContract) -> None:
    body = {"content": "x" * 2001}
    v = only(contract.check("POST", "/channels/1/messages", body=body))
    assert (v.operation, v.where) == ("create_message", "$.content")
    assert v.rule == "content is 2001 characters; Discord allows at most 2000"
    assert str(v).startswith("POST /channels/1/messages (create_message) at $.content:")
    assert contract.check("POST", "/channels/1/messages", body={"content": "x" * 2000}) == []


def test_embeds_over_6000_characters_in_all_are_refused(contract: DiscordContract) -> None:
    embed = {
        "title": "t" * 256,
        "description": "d" * 4096,
        "fields": [{"name": "n" * 200, "value": "v" * 1000}],
        "footer": {"text": "f" * 448},
    }
    assert contract.check("POST", "/channels/1/messages", body={"embeds": [embed]}) == []
    embed["footer"]["text"] += "f"  # 6001
    v = only(contract.check("POST", "/channels/1/messages", body={"embeds": [embed]}))
    assert v.where == "$.embeds"
    assert "6001 characters in all" in v.rule and "at most 6000" in v.rule


def test_autocomplete_choice_value_over_100_characters_is_refused(
    contract: DiscordContract,
) -> None:
    # The spec allows 6000 for string choice values; Discord enforces its documented 100.
    body = {"type": 8, "data": {"choices": [{"name": "m", "value": "v" * 101}]}}
    v = only(contract.check("POST", "/interactions/5/tok/callback", body=body))
    assert v.where == "$.data.choices[0].value"
    assert v.rule == "choice value is 101 characters; Discord allows at most 100"
    body["data"]["choices"] = [{"name": "", "value": "v"}]
    v = only(contract.check("POST", "/interactions/5/tok/callback", body=body))
    assert v.where == "$.data.choices[0].name" and "1 to 100" in v.rule


def test_modal_title_over_45_characters_is_refused(contract: DiscordContract) -> None:
    row = {"type": 1, "components": [{"type": 4, "custom_id": "e", "style": 1, "label": "E"}]}
    data = {"custom_id": "account:set", "title": "t" * 46, "components": [row]}
    v = only(contract.check("POST", "/interactions/5/tok/callback", body={"type": 9, "data": data}))
    assert v.where == "$.data.title"
    assert v.rule == "modal title is 46 characters; Discord requires 1 to 45"


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("Imagine", "must use the lowercase variant"),
        ("two words", "does not match"),
        ("x" * 33, "does not match"),
        ("", "does not match"),
    ],
)
def test_bad_command_names_are_refused(contract: DiscordContract, name: str, rule: str) -> None:
    body = [{"name": name, "description": "Draw", "type": 1}]
    found = contract.check("PUT", "/applications/9/commands", body=body)
    ours = [v for v in found if v.where == "$[0].name"]
    assert ours and rule in ours[0].rule, [str(v) for v in found]


def test_command_rules_for_options_and_localisations(contract: DiscordContract) -> None:
    good = {
        "name": "绘图",
        "description": "Draw",
        "name_localizations": {"zh-CN": "绘图", "hi": "चित्र"},
        "description_localizations": {"zh-CN": "画图"},
        "options": [
            {"type": 3, "name": "prompt", "description": "What", "required": True},
            {"type": 4, "name": "count", "description": "How many"},
        ],
    }
    path = "/applications/9/guilds/7/commands"
    assert contract.check("PUT", path, body=[good]) == []
    bad = json.loads(json.dumps(good))
    bad["name_localizations"]["zh"] = "绘"
    bad["options"].reverse()
    bad["options"][0]["description"] = ""
    rules = {v.where: v.rule for v in contract.check("PUT", path, body=[bad])}
    assert rules == {
        "$[0].name_localizations.zh": "'zh' is not one of Discord's locales",
        "$[0].options[0].description": "description is 0 characters; Discord requires 1 to 100",
        "$[0].options[1].required": "required options must come before optional ones",
    }
    bad = dict(good, options=[dict(good["options"][1], name=f"o{i}") for i in range(26)])
    rules = {v.where: v.rule for v in contract.check("PUT", path, body=[bad])}
    assert "26 options" in rules["$[0].options"]


def test_components_layout_and_limits(contract: DiscordContract) -> None:
    def button(i: int, **extra: Any) -> dict[str, Any]:
        return {"type": 2, "style": 1, "custom_id": f"b{i}", "label": "Go", **extra}

    rows = [{"type": 1, "components": [button(5 * r + i) for i in range(5)]} for r in range(5)]
    assert contract.check("POST", "/channels/1/messages", body={"components": rows}) == []
    rows[0]["components"][0] = button(0, custom_id="c" * 101, label="l" * 81)
    rows[1]["components"].append(button(99))
    rows.append({"type": 1, "components": [button(100)]})
    rules = {
        v.where: v.rule
        for v in contract.check("POST", "/channels/1/messages", body={"components": rows})
    }
    assert rules["$.components"] == "6 action rows; Discord allows at most 5"
    assert "at most 100" in rules["$.components[0].components[0].custom_id"]
    assert "at most 80" in rules["$.components[0].components[0].label"]
    assert rules["$.components[1].components"] == "6 buttons in one row; Discord allows at most 5"


def test_spec_rules_query_parameters_and_file_parts(contract: DiscordContract) -> None:
    v = only(contract.check("GET", "/channels/1/messages", query={"limit": "101"}))
    assert (v.where, v.operation) == ("query.limit", "list_messages")
    v = only(contract.check("GET", "/channels/1/messages", query={"page": "2"}))
    assert v.rule == "query parameter not defined for this operation"
    assert (
        contract.check("POST", "/webhooks/1/tok", query={"wait": "1"}, body={"content": "x"}) == []
    )
    v = only(contract.check("GET", "/channels/abc"))
    assert v.where == "path.channel_id"
    v = only(contract.check("POST", "/channels/1/messages", body={"embeds": [{"color": -1}]}))
    assert v.where == "$.embeds[0].color" and "minimum" in v.rule
    files = [f"files[{i}]" for i in range(11)]
    body = {"attachments": [{"id": i, "filename": f"{i}.png"} for i in range(10)]}
    found = contract.check(
        "POST",
        "/channels/1/messages",
        content_type="multipart/form-data",
        body=body,
        file_parts=files,
    )
    assert [v.where for v in found] == ["files", "files.files[10]"]
    v = only(contract.check("DELETE", "/guilds/1"))
    assert (v.operation, v.where) == ("?", "route")


def test_a_valid_interaction_reply_passes(contract: DiscordContract) -> None:
    embed = {
        "title": "Task #12",
        "description": "a cat",
        "color": 0x5865F2,
        "fields": [{"name": "Seed", "value": "42", "inline": True}],
        "image": {"url": "attachment://grid.png"},
        "footer": {"text": "3.2 s"},
    }
    row = {
        "type": 1,
        "components": [{"type": 2, "style": 2, "custom_id": "rerun:12", "emoji": {"name": "🔁"}}],
    }
    data = {
        "content": "<@3002>",
        "embeds": [embed],
        "components": [row],
        "allowed_mentions": {"parse": [], "users": [3002]},
        "attachments": [{"id": 0, "filename": "grid.png"}],
        "flags": 64,
    }
    body = {"type": 4, "data": data}
    assert (
        contract.check(
            "POST",
            "/interactions/5/tok/callback",
            query={"with_response": "true"},
            content_type="multipart/form-data",
            body=body,
            file_parts=["files[0]"],
        )
        == []
    )
    assert contract.check("POST", "/interactions/5/tok/callback", body={"type": 5}) == []


# end to end: the bot's own HTTP client against the fake


async def test_a_bad_request_from_the_bot_is_answered_400_and_recorded(harness: Harness) -> None:
    channel = harness.bot.get_channel(CH_A)
    with pytest.raises(discord.HTTPException) as caught:
        await channel.send("x" * 2001)
    assert (caught.value.status, caught.value.code) == (400, 50035)
    assert "content is 2001 characters" in caught.value.text
    assert [str(v) for v in harness.fake.violations] == [
        f"POST /channels/{CH_A}/messages (create_message) at $.content:"
        " content is 2001 characters; Discord allows at most 2000"
    ]
    with pytest.raises(AssertionError, match=r"\(create_message\) at \$\.content"):
        harness.fake.verify_contract()
    harness.fake.violations.clear()  # seen; the point of the next test is the teardown


@pytest.mark.slow
def test_a_violation_fails_the_test_that_caused_it(tmp_path: Path) -> None:
    inner = tmp_path / "test_inner.py"
    inner.write_text(
        textwrap.dedent(
            """
            from tests.conftest import CH_A

            async def test_posts_too_much(harness):
                try:
                    await harness.bot.get_channel(CH_A).send("x" * 2001)
                except Exception:
                    pass  # the bot swallowing Discord's 400 does not hide the violation

            async def test_posts_fine(harness):
                await harness.bot.get_channel(CH_A).send("hello")
            """
        )
    )
    options = ["-p", "tests.conftest", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rE", *options, str(inner)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "2 passed, 1 warning, 1 error" in out or "2 passed, 1 error" in out, out
    assert "ERROR at teardown of test_posts_too_much" in out, out
    assert "requests the real Discord would reject" in out
    expected = "POST /channels/2001/messages (create_message) at $.content: content is 2001"
    assert expected in out


# the longest input members and admins can type still makes requests Discord accepts


@pytest.mark.slow
async def test_longest_inputs_stay_within_discord_limits(harness: Harness) -> None:
    fake = harness.fake

    async def admin(subcommand: str, **options: Any) -> str:
        ix = await fake.slash(
            "settings",
            subcommand=subcommand,
            options=options,
            user_id=ADMIN_A,
            guild_id=GUILD_A,
            channel_id=CH_A,
        )
        return await answer_text(ix)

    for i in range(12):
        await admin("blocked-words", action="add", word=f"{i:02d}" + "w" * 98)
    await admin("defaults", negative_prompt=("~_*`|>" * 200)[:1000])
    shown = await admin("show")
    assert "w" * 98 in shown
    prompt = ("[Free](https://x.test) **bold** ~~x~~ `c` " * 40)[:1000]
    ix = await imagine(harness, prompt, count=2)
    task_id = task_id_of(await answer_text(ix))
    result = await wait_result(harness, task_id)
    assert result["embeds"]
    for options in ({"task": task_id}, {}):
        ix = await fake.slash(
            "status", options=options, user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A
        )
        assert await answer_text(ix)
    assert fake.violations == []  # and the harness checks every request again at teardown
