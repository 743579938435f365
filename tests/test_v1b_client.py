"""The v1b client against the real emulator over loopback."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from bot.emulator import EmulatorServer, EmulatorSettings, FaultSettings
from bot.v1b import (
    AccountBusy,
    AccountSession,
    InvalidCredentials,
    InvalidRequest,
    NotBusinessAccount,
    NotEnoughPoints,
    ServiceError,
    TaskFailed,
    TaskParams,
    TaskResult,
    TrainParams,
    V1bClient,
    WrongPassword,
    validate_task_params,
)

EMAIL = "owner@example.com"
PASSWORD = "correct horse battery"
NON_BUSINESS = "retail@example.com"


def png(color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(out, "PNG")
    return out.getvalue()


def params(**changes: Any) -> TaskParams:
    base: dict[str, Any] = {
        "model_name": "Artist_V0.1.3",
        "prompt": "a lighthouse at dusk",
        "n_images": 2,
        "output_size": "512x512",
    }
    return TaskParams(**{**base, **changes})


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 5.0) -> Any:
    """Call check until it returns something truthy."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def emu() -> AsyncIterator[EmulatorServer]:
    settings = EmulatorSettings(
        generation_time=0.05,
        generation_noise=0.0,
        training_time=0.3,
        accounts={EMAIL: PASSWORD, NON_BUSINESS: "pw"},
        non_business={NON_BUSINESS},
        faults=FaultSettings(),
    )
    async with EmulatorServer(settings) as server:
        yield server


@pytest.fixture
async def client(emu: EmulatorServer) -> AsyncIterator[V1bClient]:
    v1b = V1bClient(emu.base_url, requests_per_second=1000, backoff_base=0.001, timeout=5)
    yield v1b
    await v1b.close()


@pytest.fixture
def acct(client: V1bClient) -> AccountSession:
    return client.account(EMAIL, PASSWORD)


async def finished(acct: AccountSession, task_id: str) -> TaskResult:
    async def check() -> TaskResult | None:
        result = await acct.task_result(task_id)
        return None if result.pending else result

    return await eventually(check)


@pytest.mark.parametrize("envelope", ["spec", "always", "never"])
async def test_generation_flow(emu: EmulatorServer, acct: AccountSession, envelope: str) -> None:
    emu.state.settings.faults.envelope = envelope
    form = await acct.generation_form()
    assert "Artist_V0.1.3" in form.models and "512x768" in form.all_sizes()
    wanted = params(select_seed=1234, output_size="512x768")
    validate_task_params(wanted, form)
    task_id = await acct.submit_task(wanted)
    assert isinstance(task_id, str) and task_id
    first = await acct.task_result(task_id)
    assert first.pending or first.done
    result = await finished(acct, task_id)
    assert result.done and len(result.images) == 2 and result.select_seed == 1234
    assert result.images[0].large.startswith("http://127.0.0.1")
    batch = await acct.task_results([task_id])
    assert isinstance(batch[task_id], TaskResult) and batch[task_id].done
    assert emu.state.calls["get_token"] == 1


@pytest.mark.parametrize("envelope", ["spec", "always", "never"])
async def test_training_flow(emu: EmulatorServer, acct: AccountSession, envelope: str) -> None:
    emu.state.settings.faults.envelope = envelope
    urls = await acct.upload_images(
        [("a.png", png("red"), "image/png"), ("b.png", png(), "image/png")]
    )
    assert len(urls) == 2
    dataset_id = await acct.create_dataset("cats", urls, "two cats")
    datasets = await acct.list_datasets()
    assert [d.id for d in datasets] == [dataset_id]
    assert datasets[0].images_num == 2 and datasets[0].name == "cats"
    train_form = await acct.train_form()
    assert "Style" in train_form.main_bodies and train_form.base_models
    task_id = await acct.submit_training(TrainParams(name="my cats", dataset=[dataset_id]))

    async def trained() -> Any:
        progress = await acct.train_progress(task_id)
        assert 0.0 <= progress.training_progress <= 1.0
        return progress if progress.done else None

    progress = await eventually(trained)
    assert progress.model_name == "my_cats" and progress.training_progress == 1.0
    form = await acct.generation_form()
    assert "my_cats" in form.models
    mine = params(model_name=progress.model_name, n_images=1)
    validate_task_params(mine, form)
    assert (await finished(acct, await acct.submit_task(mine))).done


async def test_image_to_image(acct: AccountSession) -> None:
    (url,) = await acct.upload_images([("init.png", png("blue"), "image/png")])
    result = await finished(acct, await acct.submit_task(params(init_img=url, n_images=1)))
    assert result.done and len(result.images) == 1


async def test_dataset_pagination(acct: AccountSession) -> None:
    urls = await acct.upload_images([("a.png", png(), "image/png")])
    created = [await acct.create_dataset(f"set {i}", urls) for i in range(45)]
    listed = await acct.list_datasets()
    assert sorted(d.id for d in listed) == sorted(created)


async def test_login_error_codes(emu: EmulatorServer, client: V1bClient) -> None:
    with pytest.raises(InvalidCredentials) as unknown:
        await client.account("nobody@example.com", "pw").login()
    with pytest.raises(WrongPassword) as wrong:
        await client.account(EMAIL, "not the password").login()
    with pytest.raises(NotBusinessAccount):
        await client.account(NON_BUSINESS, "pw").login()
    assert unknown.value.code == 600 and wrong.value.code == 601
    assert "not the password" not in str(wrong.value) and EMAIL not in str(wrong.value)
    assert emu.state.calls["get_token"] == 3


async def test_busy_and_points_errors(emu: EmulatorServer, client: V1bClient) -> None:
    emu.add_account("poor@example.com", "pw", points=1)
    poor = client.account("poor@example.com", "pw")
    with pytest.raises(NotEnoughPoints) as short:
        await poor.submit_task(params(n_images=2))
    assert short.value.code == 604
    emu.state.settings.faults.busy_above = 0
    with pytest.raises(AccountBusy) as busy:
        await client.account(EMAIL, PASSWORD).submit_task(params())
    assert busy.value.code == 603 and busy.value.transient
    assert emu.state.calls["task_submit"] == 2


async def test_invalid_requests(acct: AccountSession) -> None:
    with pytest.raises(InvalidRequest) as size:
        await acct.submit_task(params(output_size="333x333"))
    assert size.value.code == 400
    with pytest.raises(InvalidRequest):
        await acct.task_result("no-such-task")
    with pytest.raises(InvalidRequest):
        await acct.upload_images([("notes.txt", b"not an image", "text/plain")])


async def test_relogin_after_token_expiry(emu: EmulatorServer, client: V1bClient) -> None:
    tokens: list[str] = []

    async def keep(token: str) -> None:
        tokens.append(token)

    acct = client.account(EMAIL, PASSWORD, on_token=keep)
    task_id = await acct.submit_task(params(n_images=1))
    emu.expire_tokens()
    assert (await finished(acct, task_id)).done
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    assert emu.state.calls["get_token"] == 2


async def test_restored_token_is_used_then_renewed(emu: EmulatorServer, client: V1bClient) -> None:
    first = client.account(EMAIL, PASSWORD)
    await first.login()
    await client.close()
    emu.expire_tokens()
    restored = V1bClient(emu.base_url, requests_per_second=1000, backoff_base=0.001)
    try:
        acct = restored.account(EMAIL, PASSWORD, token="stale-token-from-storage")
        assert acct.has_token
        form = await acct.generation_form()
        assert form.models
    finally:
        await restored.close()
    assert emu.state.calls["get_token"] == 2


async def test_short_token_ttl(emu: EmulatorServer, acct: AccountSession) -> None:
    emu.state.settings.faults.token_ttl = 0.05
    task_id = await acct.submit_task(params(n_images=1))
    await asyncio.sleep(0.1)
    assert (await finished(acct, task_id)).done
    assert emu.state.calls["get_token"] >= 2


@pytest.mark.parametrize("fault", ["error_rate", "http_error_rate", "malformed_rate"])
async def test_read_only_calls_survive_faults(emu: EmulatorServer, fault: str) -> None:
    client = V1bClient(
        emu.base_url,
        requests_per_second=1000,
        max_retries=10,
        backoff_base=0.001,
        backoff_cap=0.01,
    )
    try:
        acct = client.account(EMAIL, PASSWORD)
        task_id = await acct.submit_task(params(n_images=1))
        setattr(emu.state.settings.faults, fault, 0.4)
        for _ in range(15):
            await acct.task_result(task_id)
            assert (await acct.generation_form()).models
        assert emu.state.calls["task_result"] + emu.state.calls["get_generation_form"] > 30
    finally:
        await client.close()


async def test_submit_is_not_retried_after_server_error(
    emu: EmulatorServer, acct: AccountSession
) -> None:
    await acct.login()
    emu.state.settings.faults.error_rate = 1.0
    with pytest.raises(ServiceError):
        await acct.submit_task(params())
    with pytest.raises(ServiceError):
        await acct.submit_training(TrainParams(name="x", dataset=[1]))
    assert emu.state.calls["task_submit"] == 1 and emu.state.calls["train_submit"] == 1
    with pytest.raises(ServiceError):
        await acct.generation_form()
    assert emu.state.calls["get_generation_form"] == 4  # first try + max_retries


async def test_task_failure(emu: EmulatorServer, acct: AccountSession) -> None:
    emu.state.settings.faults.task_failure_rate = 1.0
    task_id = await acct.submit_task(params(n_images=1))

    async def failed() -> TaskFailed | None:
        try:
            await acct.task_result(task_id)
        except TaskFailed as exc:
            return exc
        return None

    error = await eventually(failed)
    assert error.message and isinstance(error.result, TaskResult)
    batch = await acct.task_results([task_id])
    assert isinstance(batch[task_id], TaskFailed)


async def test_batch_on(emu: EmulatorServer, client: V1bClient, acct: AccountSession) -> None:
    ids = [await acct.submit_task(params(n_images=1)) for _ in range(3)]
    results = await acct.task_results([*ids, "no-such-task"])
    assert client.batch_supported is True
    assert all(isinstance(results[i], TaskResult) for i in ids)
    assert isinstance(results["no-such-task"], InvalidRequest)  # isolated one by one


async def test_batch_off_falls_back(
    emu: EmulatorServer, client: V1bClient, acct: AccountSession
) -> None:
    emu.state.settings.faults.batch_enabled = False
    ids = [await acct.submit_task(params(n_images=1)) for _ in range(3)]
    results = await acct.task_results(ids)
    assert client.batch_supported is False
    assert all(isinstance(results[i], TaskResult) for i in ids)
    await acct.task_results(ids)
    assert emu.state.calls["task_results"] == 1
    assert emu.state.calls["task_result"] == 6


@pytest.mark.slow
async def test_rate_limit_seen_by_server(emu: EmulatorServer) -> None:
    stamps: list[float] = []

    @web.middleware
    async def stamp(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.endswith("/task_result"):
            stamps.append(time.monotonic())
        return await handler(request)

    # A second server on the same settings, with a middleware that timestamps requests.
    server = EmulatorServer(emu.state.settings)
    server.app.middlewares.append(stamp)
    rate = 40.0
    async with server:
        client = V1bClient(server.base_url, requests_per_second=rate)
        try:
            acct = client.account(EMAIL, PASSWORD)
            task_id = await acct.submit_task(params(n_images=1))
            await asyncio.gather(*(acct.task_result(task_id) for _ in range(80)))
        finally:
            await client.close()
    assert len(stamps) == 80
    # The first requests spend the burst (rate - 2 tokens: login and submit took two);
    # the rest must arrive no faster than `rate` per second.
    steady = stamps[int(rate) :]
    observed = (len(steady) - 1) / (steady[-1] - steady[0])
    assert observed <= rate * 1.15
    per_second = sum(1 for t in stamps if t - stamps[0] < 1.0)
    assert per_second <= 2 * rate + 1


async def test_logs_hold_no_secrets(
    emu: EmulatorServer, client: V1bClient, caplog: pytest.LogCaptureFixture
) -> None:
    tokens: list[str] = []

    async def keep(token: str) -> None:
        tokens.append(token)

    caplog.set_level(logging.DEBUG, logger="bot.v1b")
    acct = client.account(EMAIL, PASSWORD, on_token=keep)
    emu.state.settings.faults.error_rate = 0.3
    await acct.generation_form()
    emu.expire_tokens()
    await acct.generation_form()
    emu.state.settings.faults.error_rate = 0.0
    with pytest.raises(WrongPassword):
        await client.account(EMAIL, "wrong-" + PASSWORD).login()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "get_generation_form -> HTTP 200" in text
    for secret in (EMAIL, PASSWORD, *tokens):
        assert secret not in text


async def test_waiting_for_a_free_connection_is_not_timed_as_the_service_s(
    emu: EmulatorServer,
) -> None:
    # A burst of calls (a busy bot's polls, submissions and forms) waits for one of the
    # session's connections; that wait was counted in each call's timeout, so calls that
    # never reached the service failed as "Miaohua is not answering properly".
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
    client = V1bClient(
        emu.base_url, requests_per_second=1000, max_retries=0, timeout=1.0, session=session
    )
    try:
        acct = client.account(EMAIL, PASSWORD)
        await acct.login()
        emu.state.settings.faults.latency = 0.4  # each call alone well within its 1 s
        forms = await asyncio.gather(*(acct.generation_form() for _ in range(5)))
        assert all(form.models for form in forms)
    finally:
        await session.close()
