"""An untrusted or broken service cannot exhaust the bot's memory: capped answers and images."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bot.emulator import EmulatorServer, EmulatorSettings
from bot.i18n import t
from bot.store import TaskState
from bot.v1b import ResponseTooLarge, TaskParams, V1bClient
from bot.v1b.client import read_capped
from tests.conftest import CH_A, MEMBER_A
from tests.genutil import FAST_POLLING, eventually, imagine, result_of, task_id_of, wait_result
from tests.helpers import answer_text
from tests.test_reliability import all_finished
from tests.test_training import images, train, wait_state

MiB = 1024 * 1024
HUGE = 300 * MiB


# --- the emulator's faults --------------------------------------------------------------------


@pytest.fixture
async def emu() -> AsyncIterator[EmulatorServer]:
    settings = EmulatorSettings(
        accounts={"cap@x.io": "pw-cap"}, generation_time=0.01, generation_noise=0.0
    )
    async with EmulatorServer(settings) as server:
        yield server


async def test_extra_images_fault_lists_and_serves_more_images_than_asked(emu):
    emu.state.settings.faults.extra_images = 4
    async with V1bClient(emu.base_url) as client:
        acct = client.account("cap@x.io", "pw-cap")
        params = TaskParams(model_name="Artist_V0.1.3", prompt="x", n_images=1)
        task_id = await acct.submit_task(params)
        for _ in range(500):
            result = await acct.task_result(task_id)
            if result.done:
                break
            await asyncio.sleep(0.01)
        assert len(result.images) == 5
        async with aiohttp.ClientSession() as http, http.get(result.images[-1].large) as resp:
            assert resp.status == 200 and resp.content_type == "image/jpeg"


async def test_huge_body_fault_streams_lazily_until_the_client_hangs_up(emu):
    emu.state.settings.faults.huge_body_bytes = HUGE
    url = f"{emu.base_url}/task_result"
    tracemalloc.start()
    try:
        async with aiohttp.ClientSession() as http, http.post(url, json={}) as resp:
            assert resp.content_length is None  # chunked: nothing tells its size upfront
            head = await resp.content.read(40)
            assert head.startswith(b'{"state": "pending", "padding": "xxx')
            got = len(head)
            while got < 2 * MiB:
                got += len(await resp.content.read(64 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MiB  # neither side held the body
    await _until_cut(emu, 1)
    assert emu.state.streamed_bytes < HUGE


async def _until_cut(emu: EmulatorServer, streams: int) -> None:
    # The emulator notices a hang-up at its next write.
    await eventually(lambda: emu.state.streams_cut >= streams, timeout=10)


# --- the client's cap -------------------------------------------------------------------------


@pytest.fixture
async def raw_server() -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    """A server answering each path with the bytes registered for it, with Content-Length."""
    bodies: dict[str, bytes] = {}

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=bodies[request.match_info["name"]], content_type="text/plain")

    app = web.Application()
    app.router.add_route("*", "/{name}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", bodies
    await runner.cleanup()


async def test_read_capped_takes_the_limit_and_refuses_one_byte_more(raw_server):
    base, bodies = raw_server
    bodies["exact"] = b"a" * 1000
    bodies["over"] = b"a" * 1001
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/exact") as resp:
            assert await read_capped(resp, 1000, "x") == bodies["exact"]
        async with http.get(f"{base}/over") as resp:
            assert resp.content_length == 1001  # refused on the declared length alone
            with pytest.raises(ResponseTooLarge, match="larger than 1000 bytes"):
                await read_capped(resp, 1000, "x")


async def test_client_refuses_a_huge_answer_while_streaming_it(emu):
    emu.state.settings.faults.huge_body_bytes = HUGE
    emu.state.settings.faults.huge_body_endpoints = ["task_result"]
    async with V1bClient(emu.base_url, max_response_bytes=2 * MiB) as client:
        acct = client.account("cap@x.io", "pw-cap")
        task_id = await acct.submit_task(TaskParams(model_name="Artist_V0.1.3", prompt="x"))
        with pytest.raises(ResponseTooLarge, match="answer larger than 2 MiB"):
            await acct.task_result(task_id)
        assert emu.state.calls["task_result"] == 1  # not retried: it would only happen again
        # The batch endpoint too: refused, then each task polled alone, so only it fails.
        emu.state.settings.faults.huge_body_endpoints = ["task_results"]
        results = await acct.task_results([task_id])
        assert not isinstance(results[task_id], Exception)
        assert emu.state.calls["task_results"] == 1


# --- end to end -------------------------------------------------------------------------------


async def test_result_listing_300_urls_for_one_image_downloads_and_posts_one(
    harness_factory, caplog
):
    h = await harness_factory(miaohua=FAST_POLLING)
    h.emu.state.settings.faults.extra_images = 299
    text = await answer_text(await imagine(h, count=1))
    task_id = task_id_of(text)
    message = await wait_result(h, task_id)
    (task,) = await all_finished(h, [task_id])
    assert task.state == TaskState.DELIVERED and len(task.images) == 1
    assert len(message["attachments"]) == 1 and len(result_of(h, task_id)) == 1
    assert h.emu.state.calls["image"] == 1  # exactly one image was downloaded
    assert "the service listed 300 images for 1 requested" in caplog.text


async def test_a_300_mb_answer_fails_the_task_clearly_without_reading_it(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING)
    h.emu.state.settings.faults.huge_body_bytes = HUGE
    gc.collect()
    tracemalloc.start()
    try:
        text = await answer_text(await imagine(h, count=1))
        task_id = task_id_of(text)
        message = await h.fake.wait_for_message(
            CH_A, lambda m: m["content"].startswith(f"<@{MEMBER_A}> your task #{task_id} failed")
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "Miaohua sent an answer larger than the bot accepts" in message["content"]
    assert "answer larger than 8 MiB" in message["content"]
    task = await h.bot.store.tasks.get(task_id)
    assert task.state == TaskState.FAILED and task.error == "response_too_large"
    # What the bot (and the emulator, in the same process) held stayed far below the body.
    assert peak < HUGE / 10, f"peak {peak / MiB:.1f} MiB"
    await _until_cut(h.emu, 2)  # the batch poll, then the task's own poll
    # Read at most 8 MiB each; the rest of what was sent sat in socket buffers.
    assert h.emu.state.streamed_bytes < HUGE / 4


async def test_an_endless_result_image_is_cut_at_the_download_limit(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING, limits={"download_bytes": 2 * MiB})
    h.bot.generation.delivery_retry = 0.05
    faults = h.emu.state.settings.faults
    faults.huge_body_endpoints = ["image"]
    faults.huge_body_bytes = HUGE
    gc.collect()
    tracemalloc.start()
    try:
        task_id = task_id_of(await answer_text(await imagine(h, count=1)))
        message = await h.fake.wait_for_message(
            CH_A, lambda m: m["content"].startswith(f"<@{MEMBER_A}> your task #{task_id} failed")
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "could not be posted" in message["content"]
    assert peak < HUGE / 10, f"peak {peak / MiB:.1f} MiB"
    attempts = h.bot.generation.delivery_attempts
    await _until_cut(h.emu, attempts)  # every delivery attempt hung up at the limit
    assert h.emu.state.streamed_bytes < attempts * 2 * MiB + HUGE / 4


async def test_a_huge_training_progress_answer_fails_the_training_clearly(harness_factory):
    h = await harness_factory()
    faults = h.emu.state.settings.faults
    faults.huge_body_endpoints = ["train_progress"]
    faults.huge_body_bytes = HUGE
    assert "#1" in await train(h, attachments=images(h, 3))
    training = await wait_state(h, 1, "failed", "done", timeout=20)
    assert training.state == "failed" and training.error == "response_too_large"
    reason = t("train.reason.response_too_large", "en-US")
    await h.fake.wait_for_message(CH_A, lambda m: reason in (m.get("content") or ""))
