"""Metrics and health: /metrics, /healthz and /readyz of the real bot over loopback."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
import discord
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from bot.config import ConfigError, load_settings
from bot.emulator import EmulatorServer, EmulatorSettings
from bot.emulator import errors as emu_errors
from bot.metrics import Metrics
from bot.store import TaskState, TrainingState
from tests.conftest import ADMIN_A, CH_A, GUILD_A, GUILD_B, MEMBER_A, MEMBER_A2
from tests.genutil import FAST_POLLING, imagine, task_id_of, wait_result
from tests.helpers import answer_text
from tests.test_crash_recovery import BotProcess, one_guild_discord, process_env
from tests.test_store_faults import refuse_writes
from tests.test_training import announcement, images, train, wait_state

PROMPT = "a lighthouse on a cliff at dawn"
# Series: (metric name, sorted label pairs) -> value.
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Series:
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return series


def value(series: Series, name: str, **labels: str) -> float:
    """A series' value; 0 when it does not exist (yet)."""
    return series.get((name, tuple(sorted(labels.items()))), 0.0)


def total(series: Series, name: str) -> float:
    """The sum of a metric over all its label values."""
    return sum(v for (n, _), v in series.items() if n == name)


async def get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as resp,
    ):
        return resp.status, await resp.text()


async def scrape(port: int) -> Series:
    status, text = await get(port, "/metrics")
    assert status == 200
    return parse(text)


async def until_answer(
    port: int, path: str, check: Callable[[int, str], bool], timeout: float = 10
) -> tuple[int, str]:
    """Ask `path` until its answer satisfies `check`; return that answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            status, text = await get(port, path)
        except aiohttp.ClientConnectionError:
            status, text = 0, ""
        if check(status, text):
            return status, text
        assert loop.time() < deadline, f"{path} still answers {status} {text!r}"
        await asyncio.sleep(0.05)


async def failure_posted(h: Any, task_id: int) -> None:
    """Wait until the requester was told that the task failed."""
    await h.fake.wait_for_message(
        CH_A, lambda m: m["content"].startswith(f"<@{MEMBER_A}> your task #{task_id} failed")
    )


@pytest.fixture
async def metered(harness_factory):
    """A harness serving metrics on a free loopback port, polling the emulator quickly."""
    return await harness_factory(miaohua=FAST_POLLING, metrics={"port": 0})


async def test_the_figures_move_with_a_delivered_generation(metered):
    port = metered.bot.metrics_server.port
    assert port != 0
    before = await scrape(port)

    ix = await imagine(metered, PROMPT, count=2)
    task_id = task_id_of(await answer_text(ix))
    await wait_result(metered, task_id)
    await metered.idle()
    task = await metered.bot.store.tasks.get(task_id)
    assert task.state == TaskState.DELIVERED and task.poll_count >= 1
    after = await scrape(port)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("miaohua_tasks_accepted_total") == 1
    assert moved("miaohua_tasks_finished_total", outcome="delivered") == 1
    assert total(after, "miaohua_tasks_failed_total") == 0
    assert moved("miaohua_v1b_requests_total", endpoint="task_submit", result="ok") == 1
    assert moved("miaohua_v1b_request_duration_seconds_count", endpoint="task_submit") == 1
    polls = sum(
        moved("miaohua_v1b_requests_total", endpoint=endpoint, result="ok")
        for endpoint in ("task_result", "task_results")
    )
    assert polls >= task.poll_count
    assert moved("miaohua_delivery_lag_seconds_count", since="done") == 1
    assert moved("miaohua_delivery_lag_seconds_count", since="accepted") == 1
    lag = value(after, "miaohua_delivery_lag_seconds_sum", since="accepted")
    assert 0 < lag <= task.delivered_at - task.created_at + 1
    assert moved("miaohua_task_polls_count") == 1
    assert moved("miaohua_task_polls_sum") == task.poll_count
    # Nothing left in flight once the bot is idle.
    assert value(after, "miaohua_queue_depth") == 0
    for state in ("queued", "running", "delivering"):
        assert value(after, "miaohua_tasks", state=state) == 0
    assert value(after, "miaohua_gateway_connected") == 1
    assert value(after, "process_resident_memory_bytes") > 1024 * 1024
    # The loop-lag sampler reports every 0.1 s.
    await until_answer(
        port,
        "/metrics",
        lambda _s, text: value(parse(text), "miaohua_event_loop_lag_seconds_count") > 0,
    )

    # No label carries an id or the member's text: cardinality stays bounded.
    forbidden = {str(i) for i in (GUILD_A, GUILD_B, CH_A, MEMBER_A, MEMBER_A2, ADMIN_A)}
    forbidden |= {str(task_id), task.service_task_id}
    for (_, labels), _v in after.items():
        for _label, label_value in labels:
            assert label_value not in forbidden
            assert "lighthouse" not in label_value


async def test_queue_depth_cancellations_and_timeouts_are_counted(harness_factory):
    # A long generation and one task at a time per account: the second request waits.
    h = await harness_factory(
        {"generation_time": 30.0},
        miaohua={**FAST_POLLING, "account_concurrency": 1},
        metrics={"port": 0},
    )
    port = h.bot.metrics_server.port
    first = task_id_of(await answer_text(await imagine(h, PROMPT)))
    second = task_id_of(await answer_text(await imagine(h, PROMPT, user_id=MEMBER_A2)))
    waiting = await scrape(port)
    assert value(waiting, "miaohua_queue_depth") == 1
    assert value(waiting, "miaohua_tasks", state="queued") == 1
    assert value(waiting, "miaohua_tasks", state="running") == 1

    assert await h.bot.generation.cancel(second)
    h.bot.generation.poller.task_timeout = 0.01  # the first one now fails at its next poll
    await failure_posted(h, first)  # told after it was counted
    await h.idle()
    assert (await h.bot.store.tasks.get(first)).state == TaskState.FAILED
    done = await scrape(port)
    assert value(done, "miaohua_queue_depth") == 0
    assert value(done, "miaohua_tasks", state="running") == 0
    assert value(done, "miaohua_tasks_accepted_total") == 2
    assert value(done, "miaohua_tasks_finished_total", outcome="cancelled") == 1
    assert value(done, "miaohua_tasks_finished_total", outcome="failed") == 1
    assert value(done, "miaohua_tasks_failed_total", reason="timeout") == 1
    assert value(done, "miaohua_tasks_finished_total", outcome="delivered") == 0


async def test_a_failed_generation_is_counted_by_its_reason_code(metered):
    metered.emu.state.settings.faults.task_failure_rate = 1.0
    port = metered.bot.metrics_server.port
    task_id = task_id_of(await answer_text(await imagine(metered, PROMPT)))
    await failure_posted(metered, task_id)  # told after it was counted
    await metered.idle()
    task = await metered.bot.store.tasks.get(task_id)
    assert task.state == TaskState.FAILED and task.error == "generation_failed"
    series = await scrape(port)
    assert value(series, "miaohua_tasks_finished_total", outcome="failed") == 1
    assert value(series, "miaohua_tasks_failed_total", reason="generation_failed") == 1
    assert value(series, "miaohua_task_polls_count") == 1
    assert value(series, "miaohua_tasks_finished_total", outcome="delivered") == 0


async def test_discord_error_answers_are_counted_by_status(metered):
    port = metered.bot.metrics_server.port
    before = await scrape(port)
    with pytest.raises(discord.NotFound):
        await metered.bot.http.get_message(CH_A, 424242)
    after = await scrape(port)
    moved = value(after, "miaohua_discord_http_errors_total", status="404") - value(
        before, "miaohua_discord_http_errors_total", status="404"
    )
    assert moved == 1


async def test_readyz_follows_the_store_and_the_gateway_healthz_the_process(metered):
    port = metered.bot.metrics_server.port
    assert await get(port, "/healthz") == (200, "ok\n")
    assert await get(port, "/readyz") == (200, "ready\n")

    await refuse_writes(metered.bot, True)
    try:
        status, text = await get(port, "/readyz")
        assert (status, text) == (503, "not ready: store: SQLITE_READONLY\n")
        assert (await get(port, "/healthz"))[0] == 200
    finally:
        await refuse_writes(metered.bot, False)
    assert await get(port, "/readyz") == (200, "ready\n")

    # The gateway drops the connection and holds back the RESUME: not ready meanwhile.
    gateway = metered.fake.gateway
    release = asyncio.Event()
    resume = gateway._resume

    async def held_resume(session: Any, data: Any) -> None:
        await release.wait()
        await resume(session, data)

    gateway._resume = held_resume
    await gateway.close(code=4000)
    status, text = await until_answer(port, "/readyz", lambda s, _t: s != 200)
    assert (status, text) == (503, "not ready: gateway disconnected\n")
    assert value(await scrape(port), "miaohua_gateway_connected") == 0
    assert (await get(port, "/healthz"))[0] == 200
    release.set()
    await until_answer(port, "/readyz", lambda s, _t: s == 200)
    assert value(await scrape(port), "miaohua_gateway_connected") == 1


def test_each_bot_has_its_own_registry():
    # Two bots in one process (tests) must not clash over, or share, series.
    one, two = Metrics(), Metrics()
    one.tasks_accepted.inc()
    assert value(parse(one.exposition().decode()), "miaohua_tasks_accepted_total") == 1
    assert value(parse(two.exposition().decode()), "miaohua_tasks_accepted_total") == 0
    global_names = {family.name for family in REGISTRY.collect()}
    assert not any(name.startswith("miaohua_") for name in global_names)


async def test_no_metrics_server_unless_a_port_is_set(harness):
    assert harness.settings.metrics.port is None
    assert not hasattr(harness.bot, "metrics_server")


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_metrics_port_is_validated(tmp_path, port):
    config = tmp_path / "config.toml"
    config.write_text(f'[metrics]\nport = "{port}"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    assert "metrics.port" in str(err.value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_the_real_process_serves_health_and_metrics(tmp_path):
    token, email, password = "metrics-test-token.AbC.123456", "metrics@guild.test", "m-Pass-1"
    emu = EmulatorServer(EmulatorSettings(accounts={email: password}))
    fake = one_guild_discord(token)
    port = free_port()
    async with emu, fake:
        env = process_env(fake, emu, tmp_path, token, "metrics-key", METRICS__PORT=str(port))
        bot = BotProcess(env, tmp_path)
        await bot.start()
        try:
            await until_answer(port, "/healthz", lambda s, _t: s == 200, timeout=60)
            await until_answer(port, "/readyz", lambda s, _t: s == 200, timeout=60)
            series = await scrape(port)
            assert value(series, "miaohua_gateway_connected") == 1
            assert value(series, "process_resident_memory_bytes") > 1024 * 1024
        finally:
            code, err = await bot.stop(signal.SIGTERM)
        assert code == 0, err
    fake.verify_contract()


async def test_trainings_are_counted_by_outcome(harness_factory, monkeypatch):
    h = await harness_factory(metrics={"port": 0})
    port = h.bot.metrics_server.port
    await train(h, attachments=images(h, 3))
    await announcement(h, "is ready")  # told after it was counted
    await wait_state(h, 1, TrainingState.DONE)

    def reject(*args: Any, **kwargs: Any) -> None:
        raise emu_errors.InvalidInput("invalid image")

    monkeypatch.setattr(h.emu.state, "add_upload", reject)
    await train(h, attachments=images(h, 3), name="Other Style")
    await announcement(h, "could not be uploaded")
    await wait_state(h, 2, TrainingState.FAILED)
    series = await scrape(port)
    assert value(series, "miaohua_trainings_total", outcome="started") == 2
    assert value(series, "miaohua_trainings_total", outcome="done") == 1
    assert value(series, "miaohua_trainings_total", outcome="failed") == 1
    assert value(series, "miaohua_v1b_requests_total", endpoint="train_submit", result="ok") == 1
