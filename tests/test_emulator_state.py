"""The emulator's state file: a demo on `run --emulator` survives restarts, seeds never repeat."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import sqlite3
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pytest
from PIL import Image
from pydantic import SecretStr

from bot.config import (
    DiscordSettings,
    EmulatorSection,
    MiaohuaSettings,
    SecuritySettings,
    Settings,
    StorageSettings,
)
from bot.emulator import EmulatorServer, EmulatorSettings, add_emulator_arguments
from bot.emulator.cli import settings_from_args
from bot.emulator.persistence import (
    EMBEDDED_STATE_FILE,
    FINISHED_TASKS_KEPT,
    StateFileUnusable,
    snapshot,
)
from bot.emulator.state import EmulatorState, GenerationTask
from bot.preflight import startup_refusal
from bot.runner import _embedded_emulator
from fakediscord import FakeDiscord
from tests.conftest import ADMIN_A, CH_A, GUILD_A, MEMBER_A
from tests.genutil import eventually, is_result_of, task_id_of
from tests.helpers import answer_text, png_bytes

EMAIL, PASSWORD = "keep@x.io", "pw-keep"
GUILD = GUILD_A
PROMPT = {
    "model_name": "Artist_V0.1.3",
    "prompt": "a lighthouse at dusk",
    "neg_prompt": "",
    "n_images": 1,
    "scale": 7,
    "output_size": "512x512",
}
TRAINING = {
    "name": "Kept Style",
    "description": "",
    "base_model": "",
    "trigger_word": "kept",
    "main_body": "Style",
    "nsfw": 0,
}


class Client:
    """Raw v1b calls against one emulator base URL."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http, self.base_url, self.token = http, base_url, ""

    async def post(self, endpoint: str, /, **body: Any) -> Any:
        async with self.http.post(f"{self.base_url}/{endpoint}", json=body) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def call(self, endpoint: str, /, **body: Any) -> Any:
        answer = await self.post(endpoint, token=self.token, **body)
        assert not (isinstance(answer, dict) and answer.get("code")), answer
        return answer.get("info", answer) if "code" in answer else answer

    async def login(self, email: str, password: str) -> None:
        self.token = (await self.post("get_token", email=email, password=password))["token"]

    async def form_models(self) -> list[str]:
        url = f"{self.base_url}/get_generation_form"
        async with self.http.get(url, params={"token": self.token}) as resp:
            return list((await resp.json())["info"][0]["choices"])

    async def generate(self, **fields: Any) -> tuple[int, bytes]:
        """Submit, wait until done, return the seed used and the first image's bytes."""
        task_id = (await self.call("task_submit", **{**PROMPT, **fields}))["task_id"]
        result = await self.done("task_result", task_id)
        assert result["error_msg"] == "", result
        async with self.http.get(result["images"][0]["large"]) as resp:
            assert resp.status == 200
            return result["select_seed"], await resp.read()

    async def train(self) -> str:
        """Train a model on a new dataset; return its model name once it is done."""
        dataset = await self.call("dataset", name="kept-set", images=["http://x/1.png"])
        task_id = (await self.call("train_submit", **TRAINING, dataset=[dataset["dataset_id"]]))[
            "task_id"
        ]
        return str((await self.done("train_progress", task_id))["model_name"])

    async def done(self, endpoint: str, task_id: str) -> dict[str, Any]:
        """Poll a task or training until the service reports it done; return that report."""
        async with asyncio.timeout(20):
            while True:
                report: dict[str, Any] = await self.call(endpoint, task_id=task_id)
                if report["state"] == "done":
                    return report
                await asyncio.sleep(0.02)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _bot_settings(data: Path) -> Settings:
    """Settings of `run --emulator` on a data folder, with a quick embedded emulator."""
    embedded = EmulatorSection(generation_time=0.05, training_time=0.2)
    return Settings(
        discord=DiscordSettings(token=SecretStr("state-test-token.AbC.123")),
        storage=StorageSettings(path=data / "bot.sqlite3"),
        security=SecuritySettings(secret_key=SecretStr("state-test-key")),
        miaohua=MiaohuaSettings(embedded=embedded),
    )


def _standalone(state_file: Path, **overrides: Any) -> EmulatorSettings:
    values: dict[str, Any] = {
        "accounts": {EMAIL: PASSWORD},
        "generation_time": 0.05,
        "generation_noise": 0.0,
        "training_time": 0.2,
        "state_file": state_file,
    }
    return EmulatorSettings(**{**values, **overrides})


async def _demo_client(http: aiohttp.ClientSession, wiring: Any) -> Client:
    """A client logged in to the guild's demo account, as the bot hands it out."""
    client = Client(http, wiring["emulator_base_url"])
    await client.login(*wiring["demo"].provision(GUILD))
    return client


def _demo_points(state_file: Path) -> int:
    (account,) = json.loads(state_file.read_text())["accounts"]
    return int(account["points"])


async def test_the_embedded_emulator_keeps_trained_models_across_a_restart(tmp_path, http):
    settings = _bot_settings(tmp_path)
    async with _embedded_emulator(settings) as wiring:
        client = await _demo_client(http, wiring)
        model = await client.train()
        await client.generate()
    state_file = tmp_path / EMBEDDED_STATE_FILE
    points = _demo_points(state_file)
    assert points == EmulatorSettings().points - 1
    async with _embedded_emulator(settings) as wiring:  # the bot restarted
        client = await _demo_client(http, wiring)
        assert model in await client.form_models()
        _, image = await client.generate(model_name=model)
        assert Image.open(io.BytesIO(image)).size == (512, 512)
        datasets = await client.call("dataset_all", page=1)
        assert [d["name"] for d in datasets["items"]] == ["kept-set"]
    assert _demo_points(state_file) == points - 1  # handing the account out again kept them
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600  # it holds demo passwords
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


async def test_random_seeds_differ_across_restarts_and_explicit_seeds_do_not(tmp_path, http):
    settings = _bot_settings(tmp_path)
    runs: list[tuple[tuple[int, bytes], tuple[int, bytes]]] = []
    for _ in range(2):  # the same bot started twice on the same data folder
        async with _embedded_emulator(settings) as wiring:
            client = await _demo_client(http, wiring)
            runs.append(
                (await client.generate(select_seed=-1), await client.generate(select_seed=42))
            )
    (random_1, fixed_1), (random_2, fixed_2) = runs
    assert random_1[0] != random_2[0] and random_1[1] != random_2[1]
    assert fixed_1 == fixed_2 and fixed_1[0] == 42
    # Other data folders, other runs: the first random seed differs too.
    async with _embedded_emulator(_bot_settings(tmp_path / "other")) as wiring:
        client = await _demo_client(http, wiring)
        assert (await client.generate(select_seed=-1))[0] not in (random_1[0], random_2[0])


async def test_a_restart_keeps_points_and_datasets_but_not_tokens(tmp_path, http):
    state_file = tmp_path / "state.json"
    async with EmulatorServer(_standalone(state_file)) as emu:
        client = Client(http, emu.base_url)
        await client.login(EMAIL, PASSWORD)
        await client.generate(n_images=3)
        await client.call("dataset", name="first", images=["http://x/1.png"])
        old_token = client.token
    points = json.loads(state_file.read_text())["accounts"][0]["points"]
    assert points == EmulatorSettings().points - 3
    async with EmulatorServer(_standalone(state_file)) as emu:
        assert emu.state.accounts[EMAIL].points == points
        client = Client(http, emu.base_url)
        client.token = old_token
        refused = await client.post("task_result", token=old_token, task_id="x")
        assert refused["code"] == 600  # tokens are not kept: clients log in again
        await client.login(EMAIL, PASSWORD)
        second = await client.call("dataset", name="second", images=["http://x/2.png"])
        assert second["dataset_id"] == 2  # ids go on where they were
        page = await client.call("dataset_all", page=1)
        assert [d["name"] for d in page["items"]] == ["first", "second"]


async def test_a_generation_running_when_the_emulator_stops_finishes_after_the_restart(
    tmp_path, http
):
    state_file = tmp_path / "state.json"
    async with EmulatorServer(_standalone(state_file, generation_time=0.5)) as emu:
        client = Client(http, emu.base_url)
        await client.login(EMAIL, PASSWORD)
        task_id = (await client.call("task_submit", **PROMPT, select_seed=5))["task_id"]
        assert (await client.call("task_result", task_id=task_id))["state"] == "pending"
    async with EmulatorServer(_standalone(state_file, generation_time=0.5)) as emu:
        client = Client(http, emu.base_url)
        await client.login(EMAIL, PASSWORD)
        result = await client.done("task_result", task_id)
        assert result["error_msg"] == "" and result["select_seed"] == 5
        assert len(result["images"]) == 1


async def test_a_seeded_emulator_goes_on_with_its_sequence_after_a_restart(tmp_path, http):
    state_file = tmp_path / "state.json"
    seeds = []
    for _ in range(2):
        async with EmulatorServer(_standalone(state_file, seed=9)) as emu:
            client = Client(http, emu.base_url)
            await client.login(EMAIL, PASSWORD)
            seeds.append((await client.generate(select_seed=-1))[0])
    assert seeds[0] != seeds[1]
    async with EmulatorServer(_standalone(tmp_path / "fresh.json", seed=9)) as emu:
        client = Client(http, emu.base_url)
        await client.login(EMAIL, PASSWORD)
        assert (await client.generate(select_seed=-1))[0] == seeds[0]  # still reproducible


@pytest.mark.parametrize(
    "content", [b"{not json", b'{"version": 99}', b"\xff\xfe", b'{"version": 1, "accounts": 3}']
)
async def test_a_broken_state_file_is_refused_in_one_line_and_kept(tmp_path, content):
    state_file = tmp_path / EMBEDDED_STATE_FILE
    state_file.write_bytes(content)
    settings = _bot_settings(tmp_path)
    refusal = startup_refusal(settings, emulator=True)
    assert refusal is not None and str(state_file) in refusal and "\n" not in refusal
    assert startup_refusal(settings) is None  # only the emulator reads it
    with pytest.raises(StateFileUnusable) as err:
        async with _embedded_emulator(settings):
            pass
    assert str(err.value) == refusal
    assert state_file.read_bytes() == content  # never silently replaced


def test_the_standalone_emulator_takes_a_state_file_and_draws_a_seed_per_start(tmp_path):
    parser = argparse.ArgumentParser()
    add_emulator_arguments(parser)
    settings = settings_from_args(parser.parse_args(["--state", str(tmp_path / "s.json")]))
    assert settings.state_file == tmp_path / "s.json" and settings.seed is None
    assert settings_from_args(parser.parse_args([])).state_file is None


# The real `miaohua-bot run --emulator` process, stopped and started again


PROCESS_TOKEN = "state-process-token.XyZ.42"


class RunWithEmulator:
    """`python -m bot run --emulator` on a data folder, as an operator starts it."""

    def __init__(self, fake: FakeDiscord, data: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MIAOHUA_BOT_")}
        settings = {
            "DISCORD__TOKEN": PROCESS_TOKEN,
            "DISCORD__API_BASE_URL": fake.api_base_url,
            "DISCORD__GATEWAY_URL": fake.gateway_url,
            "STORAGE__PATH": str(data / "bot.sqlite3"),
            "STORAGE__STAGING_DIR": str(data / "staging"),
            "SECURITY__KEY_FILE": str(data / "secret.key"),
            "MIAOHUA__POLL_STRATEGY": "fixed",
            "MIAOHUA__POLL_INTERVAL": "0.1",
            "MIAOHUA__TRAINING_POLL_INTERVAL": "0.2",
            "MIAOHUA__EMBEDDED__GENERATION_TIME": "2",
            "MIAOHUA__EMBEDDED__TRAINING_TIME": "1",
        }
        self.env.update({f"MIAOHUA_BOT_{k}": v for k, v in settings.items()})
        self.data = data
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", "--emulator",
            env=self.env, cwd=self.data,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    async def stop(self) -> str:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(self.proc.communicate(), 60)
        assert self.proc.returncode == 0, err.decode()
        return err.decode()


async def _slash_answer(fake: FakeDiscord, command: str, user: int, /, **options: Any) -> str:
    attachments = options.pop("attachments", None)
    ix = await fake.slash(
        command, options=options, attachments=attachments,
        user_id=user, guild_id=GUILD_A, channel_id=CH_A,
    )  # fmt: skip
    return await answer_text(ix, 60)


async def _imagine(fake: FakeDiscord, prompt: str, **options: Any) -> int:
    """Run /imagine; return the bot's task number."""
    text = await _slash_answer(fake, "imagine", MEMBER_A, prompt=prompt, count=1, **options)
    return task_id_of(text)


async def _seed_of(fake: FakeDiscord, task_id: int) -> int:
    """Wait for the task's result (failing on its failure); return the seed it shows."""
    failed = f"task #{task_id} failed"

    def ended(message: dict[str, Any]) -> bool:
        return is_result_of(message, task_id) or failed in (message["content"] or "")

    result = await fake.wait_for_message(CH_A, ended, 60)
    assert failed not in (result["content"] or ""), result["content"]
    (seed,) = [f["value"] for e in result["embeds"] for f in e["fields"] if f["name"] == "Seed"]
    return int(seed)


def _at_the_service(db: Path, task_id: int) -> bool:
    """Whether the bot has submitted the task to the service (it has the service's id)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        sql = "SELECT service_task_id FROM tasks WHERE id = ?"
        row = conn.execute(sql, (task_id,)).fetchone()
    return bool(row and row[0])


@pytest.mark.slow  # two real bot processes
async def test_a_demo_on_run_emulator_keeps_its_model_tasks_and_new_seeds_across_a_restart(
    tmp_path,
):
    fake = FakeDiscord(
        application_id=900, bot_user_id=900, bot_token=PROCESS_TOKEN, wait_timeout=60
    )
    fake.add_guild(GUILD_A, "Guild A", owner_id=ADMIN_A)
    fake.add_channel(GUILD_A, CH_A, "art")
    fake.add_member(GUILD_A, ADMIN_A, "admin", manage_guild=True)
    fake.add_member(GUILD_A, MEMBER_A, "member")
    async with fake:
        bot = RunWithEmulator(fake, tmp_path)  # the fake's addresses exist once it runs
        await bot.start()
        try:
            before = await _seed_of(fake, await _imagine(fake, "a lighthouse at dusk"))
            images = {
                f"image{i + 1}": fake.add_attachment(png_bytes(40, 40, c), f"{c}.png", "image/png")
                for i, c in enumerate(("red", "green", "blue"))
            }
            accepted = await _slash_answer(
                fake, "train", ADMIN_A, name="Kept Style", attachments=images
            )
            assert "#1" in accepted
            await fake.wait_for_message(CH_A, lambda m: "is ready" in (m["content"] or ""), 60)
            # Stopped while the emulator generates this one (a generation takes 2 s there).
            in_flight = await _imagine(fake, "still running at the restart")
            await eventually(lambda: _at_the_service(tmp_path / "bot.sqlite3", in_flight), 30)
        finally:
            await bot.stop()
        await bot.start()
        try:
            assert await _seed_of(fake, in_flight) >= 0  # finished after the restart
            after = await _seed_of(fake, await _imagine(fake, "a lighthouse at dusk"))
            assert after != before  # a random seed never repeats the previous run's
            trained = await _imagine(fake, "in the kept style", model="Kept_Style")
            assert await _seed_of(fake, trained) >= 0
        finally:
            log = await bot.stop()
    assert "Traceback" not in log and PROCESS_TOKEN not in log
    fake.verify_contract()


def test_the_state_file_keeps_every_unfinished_task_and_only_the_last_finished_ones():
    state = EmulatorState(EmulatorSettings(accounts={EMAIL: PASSWORD}))

    def task(n: int, status: Literal["queued", "running", "done"]) -> GenerationTask:
        return GenerationTask(
            task_id=f"t{n}", owner=EMAIL, model_name="m", prompt="p", neg_prompt="",
            n_images=1, scale=7, seed=n, size=(512, 512), init_upload=None, duration=1.0,
            status=status, done_at=float(n) if status == "done" else None,
        )  # fmt: skip

    extra = 5
    for n in range(FINISHED_TASKS_KEPT + extra):
        state.tasks[f"t{n}"] = task(n, "done")
    state.tasks["t-1"] = task(-1, "queued")
    kept = {t["task_id"] for t in snapshot(state)["tasks"]}
    assert kept == {"t-1"} | {f"t{n}" for n in range(extra, FINISHED_TASKS_KEPT + extra)}


async def test_changes_reach_the_file_while_the_emulator_runs(tmp_path, http):
    """What a crash (no clean stop) would leave: the file follows changes without a stop."""
    state_file = tmp_path / "state.json"
    async with EmulatorServer(_standalone(state_file)) as emu:
        client = Client(http, emu.base_url)
        await client.login(EMAIL, PASSWORD)
        await client.call("dataset", name="while-running", images=["http://x/1.png"])

        def saved_names() -> list[str]:
            if not state_file.exists():
                return []
            return [d["name"] for d in json.loads(state_file.read_text())["datasets"]]

        await eventually(saved_names, timeout=10)
        assert saved_names() == ["while-running"]
