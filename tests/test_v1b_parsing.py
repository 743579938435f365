"""Unit tests of the v1b client: decoding, quirks, rate limit, retries, re-login.

The HTTP tests use a tiny scripted aiohttp.web server on 127.0.0.1 whose answers
each test chooses, so every edge case can be produced on demand.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from bot.v1b import (
    AccountBusy,
    ConnectionFailed,
    FeatureUnavailable,
    GenerationForm,
    InvalidCredentials,
    InvalidRequest,
    NotBusinessAccount,
    NotEnoughPoints,
    RateLimiter,
    RetryPolicy,
    ServiceError,
    TaskFailed,
    TaskParams,
    TaskResult,
    TrainForm,
    TrainParams,
    TrainProgress,
    V1bClient,
    V1bError,
    WrongPassword,
    validate_task_params,
)
from bot.v1b import account as account_mod
from bot.v1b.envelope import decode, scrub, unwrap

EMAIL = "owner@example.com"
PASSWORD = "hunter2-secret-pw"

SPEC_FORM_INFO = [
    {
        "choices": ["Artist_V0.1.3"],
        "default": "Artist_V0.1.3",
        "name": "model_name",
        "type": "list",
    },
    {"default": "", "name": "prompt", "type": "string"},
    {"default": 2, "max": 8, "min": 1, "name": "n_images", "type": "int"},
    {"default": 7, "max": 20, "min": 1, "name": "scale", "type": "int"},
    {"default": -1, "max": 9999999, "min": 0, "name": "select_seed", "type": "int"},
    {
        "choices": {"1:1": ["512x512", "640x640"], "2:3": ["512x768"], "3:2": ["768x512"]},
        "default": "512x512",
        "name": "resolution",
        "type": "dict",
    },
]
IMAGE = {"large": "https://cdn/x.jpg", "middle": "https://cdn/x.mid.jpg", "save_index": 0}
DONE = {"state": "done", "images": [IMAGE], "error_msg": "", "wait_time": 0, "select_seed": 42}

# endpoint -> (adapter, a valid payload) for every endpoint the client decodes
PAYLOADS: dict[str, tuple[TypeAdapter[Any], Any]] = {
    "get_token": (account_mod._TOKEN, {"token": "tkn"}),
    "task_submit": (account_mod._SUBMIT, {"task_id": "f3e5"}),
    "task_result": (account_mod._RESULT, DONE),
    "task_results": (account_mod._BATCH, [{**DONE, "task_id": "a"}]),
    "get_generation_form": (account_mod._FORM, SPEC_FORM_INFO),
    "upload_imgs": (account_mod._URLS, ["https://oss/1", "https://oss/2"]),
    "dataset": (account_mod._DATASET, {"dataset_id": 11}),
    "dataset_all": (account_mod._DATASET_PAGE, {"items": [{"id": 1}], "has_next": False}),
    "train_submit": (account_mod._SUBMIT, {"task_id": "xxxxx"}),
    "train_progress": (account_mod._PROGRESS, {"state": "running", "training_progress": 0.5}),
    "get_train_form": (account_mod._TRAIN_FORM, {"base_model": ["b"], "main_body": ["Style"]}),
}


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def envelope(info: Any, code: int = 0, msg: str = "") -> dict[str, Any]:
    return {"code": code, "info": info, "msg": msg}


# Decoding ---------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", sorted(PAYLOADS))
def test_bare_and_enveloped_payloads_decode_alike(endpoint: str) -> None:
    adapter, payload = PAYLOADS[endpoint]
    bare = decode(endpoint, 200, body(payload), adapter)
    wrapped = decode(endpoint, 200, body(envelope(payload)), adapter)
    assert bare == wrapped


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (600, InvalidCredentials),
        (601, WrongPassword),
        (602, NotBusinessAccount),
        (603, AccountBusy),
        (604, NotEnoughPoints),
        (400, InvalidRequest),
        (500, ServiceError),
        (501, ServiceError),
        (777, ServiceError),
    ],
)
def test_error_codes_map_to_typed_errors(code: int, cls: type[V1bError]) -> None:
    with pytest.raises(cls) as info:
        unwrap("task_submit", 200, body(envelope("", code, "server says no")))
    assert type(info.value) is cls
    assert info.value.code == code
    assert info.value.endpoint == "task_submit"
    assert "server says no" in str(info.value)


def test_code_as_string_and_success_without_info() -> None:
    assert unwrap("x", 200, body({"code": "0", "info": {"a": 1}})) == {"a": 1}
    assert unwrap("x", 200, body({"code": 0, "task_id": "t", "msg": ""})) == {"task_id": "t"}
    with pytest.raises(ServiceError, match="code is not a number"):
        unwrap("x", 200, body({"code": True}))


@pytest.mark.parametrize(
    ("status", "cls"),
    [(404, FeatureUnavailable), (400, InvalidRequest), (422, InvalidRequest), (502, ServiceError)],
)
def test_http_status_errors(status: int, cls: type[V1bError]) -> None:
    with pytest.raises(cls) as info:
        unwrap("task_results", status, b"<html>nope</html>")
    assert type(info.value) is cls
    assert f"HTTP {status}" in info.value.message


def test_non_json_is_transient_service_error() -> None:
    with pytest.raises(ServiceError, match="not JSON") as info:
        unwrap("task_result", 200, b'{"state": "do')
    assert info.value.transient


def test_wrong_shapes_become_service_errors() -> None:
    adapter = PAYLOADS["task_submit"][0]
    for payload in ({}, [], "x", {"task_id": None}, {"task_id": ""}, None):
        with pytest.raises(ServiceError, match="unexpected response"):
            decode("task_submit", 200, body(payload), adapter)


def test_server_messages_are_scrubbed_and_truncated() -> None:
    secret_msg = f"token tok-123 for {EMAIL} with {PASSWORD} " + "x" * 500
    with pytest.raises(InvalidRequest) as info:
        unwrap("dataset", 200, body(envelope("", 400, secret_msg)), ("tok-123", EMAIL, PASSWORD))
    text = str(info.value)
    assert "tok-123" not in text and EMAIL not in text and PASSWORD not in text
    assert "***" in text
    assert len(info.value.message) < 260
    assert scrub("abc", ["", "b"]) == "a***c"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "code",
        "info",
        "msg",
        "state",
        "images",
        "task_id",
        "token",
        "items",
        "has_next",
        "wait_time",
        "large",
        "training_progress",
        "base_model",
        "name",
        "choices",
        "id",
    ]
)
json_like = st.recursive(
    json_values,
    lambda inner: st.dictionaries(field_names, inner, max_size=6) | st.lists(inner, max_size=4),
    max_leaves=30,
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=json_like, endpoint=st.sampled_from(sorted(PAYLOADS)), wrap=st.booleans())
def test_arbitrary_json_raises_only_v1b_errors(payload: Any, endpoint: str, wrap: bool) -> None:
    adapter = PAYLOADS[endpoint][0]
    raw = json.dumps(envelope(payload) if wrap else payload).encode()
    try:
        decode(endpoint, 200, raw, adapter)
    except V1bError as exc:
        assert exc.endpoint == endpoint


# Models and quirks ------------------------------------------------------------------


def test_task_result_quirks_and_unknown_fields() -> None:
    spec = TaskResult.model_validate(
        {
            "state": "done",
            "images": [IMAGE],
            "wait_time": True,
            "select_seed": True,
            "fav": True,
            "surprise": {"x": 1},
        }
    )
    assert spec.wait_time is None and spec.select_seed is None
    assert spec.done and not spec.pending
    assert spec.model_extra == {"surprise": {"x": 1}}
    assert spec.images[0].shareable is True
    queued = TaskResult.model_validate({"state": "pending", "wait_time": "3", "images": None})
    assert queued.wait_time == 3 and queued.images == [] and queued.pending and not queued.done
    failed = TaskResult.model_validate({"state": "done", "error_msg": "Intern error"})
    assert failed.failed and not failed.done and not failed.pending
    odd = TaskResult.model_validate({"state": "finished", "select_seed": 7.0, "error_msg": None})
    assert odd.done and odd.select_seed == 7


def test_generation_form_from_spec_fields() -> None:
    form = GenerationForm.model_validate(SPEC_FORM_INFO)
    assert form.models == ["Artist_V0.1.3"] and form.default_model == "Artist_V0.1.3"
    assert (form.n_images.min, form.n_images.max, form.n_images.default) == (1, 8, 2)
    assert (form.scale.min, form.scale.max) == (1, 20)
    assert (form.seed.min, form.seed.max, form.seed.default) == (0, 9999999, -1)
    assert form.resolutions["2:3"] == ["512x768"]
    assert form.default_resolution == "512x512"
    assert form.all_sizes() == ["512x512", "640x640", "512x768", "768x512"]
    assert GenerationForm.model_validate(form.model_dump()) == form


def test_train_models_and_payloads() -> None:
    progress = TrainProgress.model_validate({"state": "running", "training_progress": "50%"})
    assert progress.training_progress == 0.5 and not progress.done
    assert TrainProgress.model_validate({"state": "done", "training_progress": 1}).done
    quarter = TrainProgress.model_validate({"state": "x", "training_progress": "0.25"})
    assert quarter.training_progress == 0.25
    form = TrainForm.model_validate({"base_model": ["A", "B"], "main_body": ["Style"], "new": 1})
    assert form.base_models == ["A", "B"] and form.main_bodies == ["Style"]
    params = TrainParams(name="m", dataset=[5, 7])
    assert params.to_payload() == {
        "name": "m",
        "description": "",
        "trigger_word": "",
        "main_body": "Style",
        "dataset": [5, 7],
        "nsfw": 0,
    }
    marked = TrainParams(name="m", dataset=[1], nsfw=True, base_model="A").to_payload()
    assert marked["nsfw"] == 1 and marked["base_model"] == "A"


def test_task_params_payload() -> None:
    params = TaskParams(model_name="M", prompt="a cat", output_size="640x640")
    payload = params.to_payload()
    assert payload["select_seed"] == -1 and "init_img" not in payload and "token" not in payload
    assert TaskParams(model_name="M", prompt="p", init_img="u").to_payload()["init_img"] == "u"


# Validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"prompt": "  "}, "prompt"),
        ({"model_name": "Nope"}, "model_name"),
        ({"n_images": 9}, "n_images"),
        ({"n_images": 0}, "n_images"),
        ({"scale": 21}, "scale"),
        ({"select_seed": -2}, "select_seed"),
        ({"select_seed": 10_000_000}, "select_seed"),
        ({"output_size": "999x999"}, "output_size"),
    ],
)
def test_validation_names_the_bad_field(changes: dict[str, Any], field: str) -> None:
    form = GenerationForm.model_validate(SPEC_FORM_INFO)
    params = TaskParams(**{"model_name": "Artist_V0.1.3", "prompt": "cat", **changes})
    with pytest.raises(InvalidRequest) as info:
        validate_task_params(params, form)
    assert info.value.field == field
    assert info.value.message


def test_validation_accepts_valid_and_trained_models() -> None:
    form = GenerationForm.model_validate(SPEC_FORM_INFO)
    validate_task_params(TaskParams(model_name="Artist_V0.1.3", prompt="cat", select_seed=5), form)
    mine = TaskParams(model_name="my_model", prompt="cat", output_size="768x512")
    validate_task_params(mine, form, extra_models=["my_model"])
    with pytest.raises(InvalidRequest):
        validate_task_params(mine, form)


# Rate limiter and backoff -----------------------------------------------------------


async def test_rate_limiter_burst_then_rate() -> None:
    now = [0.0]  # a clock that only the limiter's own sleeps move

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(50.0, clock=lambda: now[0], sleep=sleep)
    assert limiter.burst == 50
    for _ in range(50):
        await limiter.acquire()
    assert now[0] == 0.0  # the burst goes at once
    for _ in range(10):
        await limiter.acquire()
    assert now[0] == pytest.approx(10 / 50)  # then one every 1/50 s


async def test_rate_limiter_serves_waiters_fifo() -> None:
    limiter = RateLimiter(100.0, burst=1)
    order: list[int] = []

    async def take(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    tasks = []
    for i in range(8):
        tasks.append(asyncio.create_task(take(i)))
        await asyncio.sleep(0)  # arrive in order
    await asyncio.gather(*tasks)
    assert order == list(range(8))


def test_rate_limiter_rejects_bad_rate() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_backoff_is_bounded_full_jitter() -> None:
    policy = RetryPolicy(max_retries=5, base=0.5, cap=8.0)
    for attempt in range(10):
        bound = min(8.0, 0.5 * 2**attempt)
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= bound for d in delays)
        assert max(delays) > bound / 2  # jitter spreads over the whole range


def test_retry_decisions() -> None:
    policy = RetryPolicy(max_retries=2)
    busy, refused = ServiceError("x", "500"), ConnectionFailed("x", "refused")
    assert policy.should_retry(busy, read_only=True, attempt=0)
    assert not policy.should_retry(busy, read_only=False, attempt=0)
    assert policy.should_retry(refused, read_only=False, attempt=1)
    assert not policy.should_retry(refused, read_only=False, attempt=2)
    assert not policy.should_retry(InvalidRequest("x", "bad"), read_only=True, attempt=0)
    assert not policy.should_retry(AccountBusy("x", "busy"), read_only=False, attempt=0)


# A scripted local server ------------------------------------------------------------

Reply = tuple[int, Any] | Callable[[dict[str, Any]], tuple[int, Any]]


@dataclass
class Seen:
    endpoint: str
    method: str
    json: Any
    query: dict[str, str]
    headers: dict[str, str]
    parts: list[tuple[str, str | None, bytes]] = field(default_factory=list)


class Scripted:
    """Answers each endpoint from a queue of replies (the last one repeats)."""

    def __init__(self) -> None:
        self.replies: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self.calls: Counter[str] = Counter()
        self.delay = 0.0
        self.base_url = ""

    def script(self, endpoint: str, *replies: Reply) -> None:
        self.replies[endpoint] = list(replies)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.match_info["endpoint"]
        self.calls[endpoint] += 1
        seen = Seen(endpoint, request.method, None, dict(request.query), dict(request.headers))
        if request.content_type == "application/json":
            seen.json = await request.json()
        elif request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                seen.parts.append((part.name or "", part.filename, await part.read()))  # type: ignore[union-attr]
        self.seen.append(seen)
        if self.delay:
            await asyncio.sleep(self.delay)
        queue = self.replies.get(endpoint)
        if not queue:
            return web.Response(status=404, text="not found")
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        status, content = reply(seen.__dict__) if callable(reply) else reply
        data = content if isinstance(content, bytes) else body(content)
        return web.Response(status=status, body=data, content_type="application/json")


@pytest.fixture
async def server() -> AsyncIterator[Scripted]:
    scripted = Scripted()
    app = web.Application()
    app.router.add_route("*", "/api/v1b/{endpoint}", scripted.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    scripted.base_url = f"http://127.0.0.1:{port}/api/v1b"
    yield scripted
    await runner.cleanup()


@pytest.fixture
async def client(server: Scripted) -> AsyncIterator[V1bClient]:
    v1b = V1bClient(server.base_url, requests_per_second=1000, backoff_base=0.001, timeout=2)
    yield v1b
    await v1b.close()


def token_reply(token: str = "tok-1") -> tuple[int, Any]:
    return 200, {"token": token}


async def test_lazy_login_and_token_placement(server: Scripted, client: V1bClient) -> None:
    tokens: list[str] = []

    async def keep(token: str) -> None:
        tokens.append(token)

    server.script("get_token", token_reply())
    server.script("task_submit", (200, {"task_id": "t1"}))
    server.script("get_generation_form", (200, envelope(SPEC_FORM_INFO)))
    acct = client.account(EMAIL, PASSWORD, on_token=keep)
    assert not acct.has_token
    assert await acct.submit_task(TaskParams(model_name="M", prompt="p")) == "t1"
    form = await acct.generation_form()
    assert acct.has_token and tokens == ["tok-1"]
    assert form.models == ["Artist_V0.1.3"]
    login, submit, get_form = server.seen
    assert login.json == {"email": EMAIL, "password": PASSWORD}
    assert submit.json["token"] == "tok-1" and submit.json["prompt"] == "p"
    assert submit.headers["Authorization"] == "Bearer tok-1"
    assert get_form.method == "GET" and get_form.query == {"token": "tok-1"}
    assert get_form.headers["Authorization"] == "Bearer tok-1"


async def test_same_email_same_session(client: V1bClient) -> None:
    first = client.account(EMAIL, PASSWORD)
    assert client.account(EMAIL, PASSWORD) is first
    assert client.account(EMAIL, PASSWORD).rate_limiter is first.rate_limiter
    assert client.account("other@example.com", PASSWORD) is not first
    for text in (repr(first), str(first), repr(client)):
        assert EMAIL not in text and PASSWORD not in text


async def test_relogin_once_on_expired_cached_token(server: Scripted, client: V1bClient) -> None:
    def result(seen: dict[str, Any]) -> tuple[int, Any]:
        if seen["json"]["token"] == "new":
            return 200, DONE
        return 200, envelope("", 600, "token expired")

    server.script("get_token", token_reply("new"))
    server.script("task_result", result)
    acct = client.account(EMAIL, PASSWORD, token="old")
    assert (await acct.task_result("t")).done
    assert server.calls == Counter({"task_result": 2, "get_token": 1})


async def test_second_600_propagates(server: Scripted, client: V1bClient) -> None:
    server.script("get_token", token_reply("new"))
    server.script("task_result", (200, envelope("", 600, "no")))
    acct = client.account(EMAIL, PASSWORD, token="old")
    with pytest.raises(InvalidCredentials):
        await acct.task_result("t")
    assert server.calls == Counter({"task_result": 2, "get_token": 1})


async def test_fresh_token_600_does_not_loop(server: Scripted, client: V1bClient) -> None:
    server.script("get_token", token_reply())
    server.script("task_submit", (200, envelope("", 600, "no")))
    acct = client.account(EMAIL, PASSWORD)
    with pytest.raises(InvalidCredentials):
        await acct.submit_task(TaskParams(model_name="M", prompt="p"))
    assert server.calls == Counter({"task_submit": 1, "get_token": 1})


@pytest.mark.parametrize(("code", "cls"), [(601, WrongPassword), (602, NotBusinessAccount)])
async def test_login_errors_hide_credentials(
    server: Scripted, client: V1bClient, code: int, cls: type[V1bError]
) -> None:
    server.script("get_token", (200, envelope("", code, f"{EMAIL}/{PASSWORD} rejected")))
    acct = client.account(EMAIL, PASSWORD)
    with pytest.raises(cls) as info:
        await acct.login()
    assert EMAIL not in str(info.value) and PASSWORD not in str(info.value)
    assert not acct.has_token


async def test_concurrent_callers_share_one_login(server: Scripted, client: V1bClient) -> None:
    server.delay = 0.02
    server.script("get_token", token_reply())
    server.script("task_result", (200, DONE))
    acct = client.account(EMAIL, PASSWORD)
    results = await asyncio.gather(*(acct.task_result(f"t{i}") for i in range(10)))
    assert all(r.done for r in results)
    assert server.calls["get_token"] == 1


async def test_read_only_calls_retry_transient_errors(server: Scripted, client: V1bClient) -> None:
    server.script(
        "task_result",
        (200, envelope("", 500, "boom")),
        (503, b"bad gateway"),
        (200, b"{not json"),
        (200, DONE),
    )
    acct = client.account(EMAIL, PASSWORD, token="tok")
    assert (await acct.task_result("t")).done
    assert server.calls["task_result"] == 4


async def test_retries_stop_at_max(server: Scripted) -> None:
    server.script("train_progress", (500, b"down"))
    client = V1bClient(server.base_url, max_retries=2, backoff_base=0.001)
    try:
        with pytest.raises(ServiceError):
            await client.account(EMAIL, PASSWORD, token="tok").train_progress("t")
    finally:
        await client.close()
    assert server.calls["train_progress"] == 3


async def test_retry_budget_bounds_total_wait(server: Scripted) -> None:
    server.script("dataset_all", (500, b"down"))
    drawn: list[float] = []  # every delay the client drew; the last one it did not sleep

    class Recorded(RetryPolicy):
        def delay(self, attempt: int) -> float:
            drawn.append(super().delay(attempt))
            return drawn[-1]

    client = V1bClient(server.base_url)
    client.retry = Recorded(max_retries=50, budget=0.3, base=0.2)
    try:
        with pytest.raises(ServiceError):
            await client.account(EMAIL, PASSWORD, token="tok").list_datasets()
    finally:
        await client.close()
    # Retries stop before their sleeps would add up past the budget, not after 50 tries.
    assert server.calls["dataset_all"] == len(drawn) < 10
    assert sum(drawn[:-1]) <= 0.3


@pytest.mark.parametrize("reply", [(200, envelope("", 500, "boom")), (502, b"x"), (200, b"{")])
async def test_submits_are_not_retried_once_sent(
    server: Scripted, client: V1bClient, reply: tuple[int, Any]
) -> None:
    server.script("task_submit", reply)
    server.script("train_submit", reply)
    server.script("dataset", reply)
    server.script("upload_imgs", reply)
    acct = client.account(EMAIL, PASSWORD, token="tok")
    with pytest.raises(ServiceError):
        await acct.submit_task(TaskParams(model_name="M", prompt="p"))
    with pytest.raises(ServiceError):
        await acct.submit_training(TrainParams(name="m", dataset=[1]))
    with pytest.raises(ServiceError):
        await acct.create_dataset("d", ["u"])
    with pytest.raises(ServiceError):
        await acct.upload_images([("a.png", b"png", "image/png")])
    assert server.calls == Counter(task_submit=1, train_submit=1, dataset=1, upload_imgs=1)


async def test_busy_is_raised_at_once(server: Scripted, client: V1bClient) -> None:
    server.script("task_submit", (200, envelope("", 603, "busy")))
    acct = client.account(EMAIL, PASSWORD, token="tok")
    with pytest.raises(AccountBusy):
        await acct.submit_task(TaskParams(model_name="M", prompt="p"))
    assert server.calls["task_submit"] == 1


async def test_refused_connection_is_retried_even_for_submit() -> None:
    attempts = 0

    async def on_start(*_: object) -> None:
        nonlocal attempts
        attempts += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    probe = web.AppRunner(web.Application())
    await probe.setup()
    site = web.TCPSite(probe, "127.0.0.1", 0)
    await site.start()
    port = probe.addresses[0][1]
    await probe.cleanup()  # the port is now closed: connections are refused
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        client = V1bClient(
            f"http://127.0.0.1:{port}/api/v1b", session=session, max_retries=2, backoff_base=0.001
        )
        acct = client.account(EMAIL, PASSWORD, token="tok")
        with pytest.raises(ConnectionFailed):
            await acct.submit_task(TaskParams(model_name="M", prompt="p"))
        await client.close()
        assert not session.closed  # a borrowed session is left open
    assert attempts == 3


async def test_timeout_is_service_error(server: Scripted) -> None:
    server.delay = 0.3
    server.script("task_submit", (200, {"task_id": "late"}))
    client = V1bClient(server.base_url, timeout=0.1, backoff_base=0.001)
    try:
        with pytest.raises(ServiceError, match="timed out"):
            await client.account(EMAIL, PASSWORD, token="tok").submit_task(
                TaskParams(model_name="M", prompt="p")
            )
    finally:
        await client.close()
    assert server.calls["task_submit"] == 1


async def test_task_failed_carries_result(server: Scripted, client: V1bClient) -> None:
    server.script("task_result", (200, {"state": "done", "error_msg": "Intern error tok"}))
    acct = client.account(EMAIL, PASSWORD, token="tok")
    with pytest.raises(TaskFailed) as info:
        await acct.task_result("t")
    assert isinstance(info.value.result, TaskResult)
    assert "Intern error ***" in info.value.message


async def test_batch_chunks_and_maps_results(server: Scripted, client: V1bClient) -> None:
    def batch(seen: dict[str, Any]) -> tuple[int, Any]:
        items = [
            {**DONE, "task_id": tid, "error_msg": "bad" if tid == "t3" else ""}
            for tid in seen["json"]["task_ids"]
            if tid != "t4"
        ]
        return 200, envelope(items)

    server.script("task_results", batch)
    acct = client.account(EMAIL, PASSWORD, token="tok")
    ids = [f"t{i}" for i in range(120)]
    results = await acct.task_results(ids)
    assert client.batch_supported is True
    assert server.calls["task_results"] == 3
    assert [len(s.json["task_ids"]) for s in server.seen] == [50, 50, 20]
    assert isinstance(results["t0"], TaskResult) and results["t0"].done
    assert isinstance(results["t3"], TaskFailed)
    assert isinstance(results["t4"], ServiceError)
    assert list(results) == ids


async def test_batch_404_falls_back_and_is_remembered(server: Scripted, client: V1bClient) -> None:
    def one(seen: dict[str, Any]) -> tuple[int, Any]:
        if seen["json"]["task_id"] == "gone":
            return 200, envelope("", 400, "unknown task id")
        return 200, {**DONE, "task_id": seen["json"]["task_id"]}

    server.script("task_result", one)  # task_results is unscripted: 404
    acct = client.account(EMAIL, PASSWORD, token="tok")
    first = await acct.task_results(["a", "b", "gone"])
    assert client.batch_supported is False
    assert isinstance(first["a"], TaskResult) and isinstance(first["gone"], InvalidRequest)
    await acct.task_results(["c"])
    assert server.calls == Counter(task_results=1, task_result=4)


async def test_upload_sends_parts_and_bearer(server: Scripted, client: V1bClient) -> None:
    server.script("upload_imgs", (200, envelope(["https://oss/1", "https://oss/2"])))
    acct = client.account(EMAIL, PASSWORD, token="tok")
    urls = await acct.upload_images([("a.png", b"A", "image/png"), ("b.jpg", b"B", "image/jpeg")])
    assert urls == ["https://oss/1", "https://oss/2"]
    (seen,) = server.seen
    assert [(n, f, d) for n, f, d in seen.parts] == [
        ("init_img", "a.png", b"A"),
        ("init_img", "b.jpg", b"B"),
        ("token", None, b"tok"),
    ]
    assert seen.headers["Authorization"] == "Bearer tok"
    with pytest.raises(InvalidRequest):
        await acct.upload_images([])


async def test_datasets_follow_pages_and_stop_on_repeats(
    server: Scripted, client: V1bClient
) -> None:
    def page(seen: dict[str, Any]) -> tuple[int, Any]:
        n = int(seen["query"]["page"])
        assert seen["json"]["page"] == n
        return 200, {"items": [{"id": n * 10 + i} for i in range(2)], "has_next": n < 3}

    server.script("dataset_all", page)
    server.script("dataset", (200, envelope({"dataset_id": 11})))
    acct = client.account(EMAIL, PASSWORD, token="tok")
    assert await acct.create_dataset("d", ["u"], "desc") == 11
    assert [d.id for d in await acct.list_datasets()] == [10, 11, 20, 21, 30, 31]
    server.script("dataset_all", (200, {"items": [{"id": 1}], "has_next": True}))
    assert [d.id for d in await acct.list_datasets()] == [1]
    assert server.calls["dataset_all"] == 5


async def test_train_form_alias_on_404(server: Scripted, client: V1bClient) -> None:
    server.script("train_form", (200, envelope({"base_model": ["A"], "main_body": ["Style"]})))
    acct = client.account(EMAIL, PASSWORD, token="tok")
    assert (await acct.train_form()).base_models == ["A"]
    assert (await acct.train_form()).main_bodies == ["Style"]
    assert server.calls == Counter(get_train_form=1, train_form=2)


async def test_train_submit_and_progress(server: Scripted, client: V1bClient) -> None:
    server.script("train_submit", (200, envelope({"task_id": 123})))
    server.script(
        "train_progress", (200, {"state": "done", "training_progress": "1", "model_name": "m_1"})
    )
    acct = client.account(EMAIL, PASSWORD, token="tok")
    assert await acct.submit_training(TrainParams(name="m 1", dataset=[1])) == "123"
    progress = await acct.train_progress("123")
    assert progress.done and progress.model_name == "m_1"
    assert server.seen[0].json["nsfw"] == 0 and "base_model" not in server.seen[0].json


async def test_account_rate_limit_applies_to_http(server: Scripted) -> None:
    server.script("task_result", (200, DONE))
    client = V1bClient(server.base_url, requests_per_second=20)
    acct = client.account(EMAIL, PASSWORD, token="tok")
    started = time.monotonic()
    try:
        await asyncio.gather(*(acct.task_result("t") for i in range(30)))
    finally:
        await client.close()
    # burst 20, then 10 more at 20/s: about half a second
    assert time.monotonic() - started >= 0.45


def test_codes_with_non_ascii_digits_are_not_codes():
    from bot.v1b.envelope import _as_code

    assert _as_code("¹") is None and _as_code(" -603 ") == -603 and _as_code("604") == 604
