"""The v1b emulator over real loopback sockets: shapes, errors, queue, images, training, faults."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image, ImageChops, ImageStat

from bot.emulator import (
    EmulatorServer,
    EmulatorSettings,
    FaultSettings,
    add_emulator_arguments,
    serve_forever,
    settings_from_args,
)

EMAIL, PASSWORD = "a@x.io", "pw-a"
OTHER, OTHER_PASSWORD = "b@x.io", "pw-b"
NON_BUSINESS = "nb@x.io"

SUBMIT_EXAMPLE = {
    "model_name": "Artist_V0.1.3",
    "prompt": "one girl, beautiful",
    "neg_prompt": "unsafe",
    "n_images": 2,
    "scale": 7,
    "output_size": "640x640",
    "select_seed": 0,
}


def make_settings(**overrides: Any) -> EmulatorSettings:
    values: dict[str, Any] = {
        "accounts": {EMAIL: PASSWORD, OTHER: OTHER_PASSWORD, NON_BUSINESS: "pw"},
        "non_business": {NON_BUSINESS},
        "generation_time": 0.05,
        "generation_noise": 0.0,
        "training_time": 0.3,
        "seed": 7,
    }
    values.update(overrides)
    return EmulatorSettings(**values)


@pytest.fixture
async def emu() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(make_settings()) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Api:
    """A minimal test client: raw JSON in, raw JSON out."""

    def __init__(self, emu: EmulatorServer, http: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.http = http
        self.token = ""

    async def post(self, name: str, body: dict[str, Any] | None = None, **kw: Any) -> Any:
        async with self.http.post(f"{self.emu.base_url}/{name}", json=body, **kw) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def get(self, name: str, **kw: Any) -> Any:
        async with self.http.get(f"{self.emu.base_url}/{name}", **kw) as resp:
            assert resp.status == 200
            return await resp.json()

    async def login(self, email: str = EMAIL, password: str = PASSWORD) -> str:
        self.token = (await self.post("get_token", {"email": email, "password": password}))["token"]
        return self.token

    async def call(self, endpoint: str, /, **fields: Any) -> Any:
        return await self.post(endpoint, {"token": self.token, **fields})

    async def submit(self, **fields: Any) -> str:
        answer = await self.call("task_submit", **{**SUBMIT_EXAMPLE, **fields})
        assert set(answer) == {"task_id"}, answer
        return answer["task_id"]

    async def wait_done(self, task_id: str) -> dict[str, Any]:
        async with asyncio.timeout(5):
            while True:
                result = await self.call("task_result", task_id=task_id)
                if result["state"] == "done":
                    return result
                await asyncio.sleep(0.01)

    async def image(self, url: str) -> Image.Image:
        async with self.http.get(url) as resp:
            assert resp.status == 200
            assert resp.content_type == "image/jpeg"
            data = await resp.read()
        image = Image.open(io.BytesIO(data))
        image.load()
        return image


@pytest.fixture
async def api(emu: EmulatorServer, http: aiohttp.ClientSession) -> Api:
    client = Api(emu, http)
    await client.login()
    return client


def png_bytes(color: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    return sum(ImageStat.Stat(diff).mean) / 3


def assert_error(answer: Any, code: int) -> None:
    assert answer["code"] == code, answer
    assert answer["info"] == ""
    assert isinstance(answer["msg"], str) and answer["msg"]


# Spec examples and shapes


async def test_get_token_answers_a_bare_token(api: Api) -> None:
    answer = await api.post("get_token", {"email": EMAIL, "password": PASSWORD})
    assert set(answer) == {"token"}
    assert isinstance(answer["token"], str) and len(answer["token"]) >= 16
    assert answer["token"] != api.token


async def test_task_submit_and_result_follow_the_spec(api: Api, emu: EmulatorServer) -> None:
    task_id = await api.submit()
    first = await api.call("task_result", task_id=task_id)
    assert set(first) == {"state", "images", "error_msg", "wait_time", "select_seed", "fav"}
    assert first["state"] == "pending" and first["images"] == []
    done = await api.wait_done(task_id)
    assert done["error_msg"] == "" and done["fav"] is False
    assert done["select_seed"] == 0 and done["wait_time"] == 0
    assert [image["save_index"] for image in done["images"]] == [0, 1]
    for image in done["images"]:
        assert set(image) == {"large", "middle", "save_index", "share", "shareable"}
        assert image["share"] is False and image["shareable"] is True
        assert image["large"].startswith(emu.root_url) and image["middle"].endswith(".mid.jpg")


async def test_random_seed_is_reported(api: Api) -> None:
    done = await api.wait_done(await api.submit(select_seed=-1, n_images=1))
    assert isinstance(done["select_seed"], int) and 0 <= done["select_seed"] <= 9_999_999


async def test_generation_form_is_the_spec_form(api: Api) -> None:
    answer = await api.get("get_generation_form")
    assert answer["code"] == 0 and answer["msg"] == ""
    fields = {field["name"]: field for field in answer["info"]}
    assert list(fields) == [
        "model_name",
        "prompt",
        "neg_prompt",
        "n_images",
        "scale",
        "select_seed",
        "resolution",
        "init_img",
    ]
    assert fields["model_name"]["choices"] == api.emu.settings.models
    assert fields["model_name"]["default"] == "Artist_V0.1.3"
    assert (fields["n_images"]["min"], fields["n_images"]["max"]) == (1, 8)
    assert (fields["scale"]["min"], fields["scale"]["max"], fields["scale"]["default"]) == (
        1,
        20,
        7,
    )
    assert fields["select_seed"]["default"] == -1 and fields["select_seed"]["max"] == 9_999_999
    assert fields["resolution"]["choices"]["3:2"] == ["768x512", "960x640", "1152x768", "1536x1024"]
    assert fields["resolution"]["default"] == "512x512"


@pytest.mark.parametrize("path", ["get_train_form", "train_form"])
async def test_train_form_and_its_alias(api: Api, path: str) -> None:
    answer = await api.get(path)
    assert answer == {
        "code": 0,
        "info": {
            "base_model": ["商汤自研作画模型 Beta", "水彩风"],
            "main_body": ["Style", "Human", "Architecture", "Plants", "Animals"],
        },
        "msg": "",
    }


# Error codes


@pytest.mark.parametrize(
    ("email", "password", "code"),
    [("nobody@x.io", "pw", 600), (EMAIL, "wrong", 601), (NON_BUSINESS, "pw", 602)],
)
async def test_get_token_errors(api: Api, email: str, password: str, code: int) -> None:
    assert_error(await api.post("get_token", {"email": email, "password": password}), code)


async def test_get_token_requires_fields(api: Api) -> None:
    assert_error(await api.post("get_token", {"email": EMAIL}), 400)
    async with api.http.post(f"{api.emu.base_url}/get_token", data=b"not json") as resp:
        assert resp.status == 200
        assert_error(await resp.json(), 400)


@pytest.mark.parametrize(
    "fields",
    [
        {"n_images": 0},
        {"n_images": 9},
        {"n_images": "2"},
        {"n_images": True},
        {"scale": 21},
        {"select_seed": 10_000_000},
        {"select_seed": -2},
        {"output_size": "500x500"},
        {"model_name": "No_Such_Model"},
        {"prompt": ""},
        {"prompt": None},
        {"init_img": "https://example.com/cat.png"},
    ],
)
async def test_task_submit_rejects_invalid_input(api: Api, fields: dict[str, Any]) -> None:
    body = {key: value for key, value in {**SUBMIT_EXAMPLE, **fields}.items() if value is not None}
    assert_error(await api.call("task_submit", **body), 400)


async def test_unknown_ids_are_invalid_input(api: Api) -> None:
    assert_error(await api.call("task_result", task_id="no-such-task"), 400)
    assert_error(await api.call("train_progress", task_id="no-such-task"), 400)
    assert_error(await api.call("task_results", task_ids=["no-such-task"]), 400)


async def test_tasks_are_private_to_their_account(api: Api, emu: EmulatorServer) -> None:
    task_id = await api.submit(n_images=1)
    other = Api(emu, api.http)
    await other.login(OTHER, OTHER_PASSWORD)
    assert_error(await other.call("task_result", task_id=task_id), 400)


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("task_submit", SUBMIT_EXAMPLE),
        ("task_result", {"task_id": "x"}),
        ("dataset_all", {}),
        ("dataset", {"name": "d", "images": ["u"]}),
        ("train_progress", {"task_id": "x"}),
    ],
)
async def test_bad_token_is_600(api: Api, name: str, fields: dict[str, Any]) -> None:
    assert_error(await api.post(name, {"token": "forged", **fields}), 600)
    assert_error(await api.post(name, dict(fields)), 600)


async def test_expired_tokens_are_600(api: Api, emu: EmulatorServer) -> None:
    assert (await api.call("dataset_all"))["page"] == 1
    emu.expire_tokens()
    assert_error(await api.call("dataset_all"), 600)
    await api.login()
    assert (await api.call("dataset_all"))["items"] == []
    emu.state.settings.faults.token_ttl = 0.05
    await asyncio.sleep(0.06)
    assert_error(await api.call("dataset_all"), 600)


async def test_busy_is_603(api: Api, emu: EmulatorServer) -> None:
    emu.state.settings.faults.busy_above = 2
    emu.state.settings.generation_time = 5.0
    await api.submit()
    await api.submit()
    assert_error(await api.call("task_submit", **SUBMIT_EXAMPLE), 603)
    other = Api(emu, api.http)
    await other.login(OTHER, OTHER_PASSWORD)
    assert "task_id" in await other.call("task_submit", **SUBMIT_EXAMPLE)


async def test_not_enough_points_is_604(emu: EmulatorServer, http: aiohttp.ClientSession) -> None:
    emu.add_account("poor@x.io", "pw", points=3)
    api = Api(emu, http)
    await api.login("poor@x.io", "pw")
    await api.submit(n_images=2)
    assert_error(await api.call("task_submit", **{**SUBMIT_EXAMPLE, "n_images": 2}), 604)
    assert emu.state.accounts["poor@x.io"].points == 1


async def test_unexpected_failure_is_500(api: Api, emu: EmulatorServer) -> None:
    def broken(email: str | None) -> list[str]:
        raise RuntimeError("boom")

    emu.state.models_for = broken  # type: ignore[method-assign]
    assert_error(await api.call("task_submit", **SUBMIT_EXAMPLE), 500)


# Queue


async def test_wait_time_counts_down(http: aiohttp.ClientSession) -> None:
    settings = make_settings(workers=1, generation_time=0.1)
    async with EmulatorServer(settings) as emu:
        api = Api(emu, http)
        await api.login()
        ids = [await api.submit(n_images=1, output_size="512x512") for _ in range(4)]
        seen: list[int] = []
        while (result := await api.call("task_result", task_id=ids[-1]))["state"] == "pending":
            seen.append(result["wait_time"])
            await asyncio.sleep(0.01)
        assert seen[0] == 3
        assert seen == sorted(seen, reverse=True)
        assert {3, 2, 1} <= set(seen)
        stats = emu.state.stats()["tasks"]
        done_times = [stats[task_id]["done"] for task_id in ids]
        assert done_times == sorted(done_times)


async def test_finishes_are_planned_at_submission_and_logged_before_the_answer(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    log = tmp_path / "finish.log"
    settings = make_settings(workers=2, generation_time=0.2, finish_log=log)
    async with EmulatorServer(settings) as emu:
        api = Api(emu, http)
        await api.login()
        ids = []
        for _ in range(3):
            ids.append(await api.submit(n_images=1, output_size="512x512"))
            logged = dict(line.split() for line in log.read_text().splitlines())
            assert list(logged) == ids  # there as soon as task_submit answered
        tasks = [emu.state.tasks[task_id] for task_id in ids]
        for task, planned in zip(tasks, logged.values(), strict=True):
            assert task.planned_done == pytest.approx(float(planned), abs=1e-6)
        first, second, third = tasks
        # Two workers, FIFO: the third starts when the first of the two frees up.
        assert first.planned_done == first.submitted_at + first.duration
        assert second.planned_done == second.submitted_at + second.duration
        assert third.planned_done == pytest.approx(first.planned_done + third.duration)
        for task_id in ids:
            await api.wait_done(task_id)
        stats = emu.state.stats()["tasks"]
        assert [stats[i]["done"] for i in ids] == [t.planned_done for t in tasks]
        assert all(stats[i]["seen_done"] >= stats[i]["done"] for i in ids)


async def test_a_stalled_emulator_does_not_push_later_generations_back(
    http: aiohttp.ClientSession,
) -> None:
    settings = make_settings(workers=1, generation_time=0.05)
    async with EmulatorServer(settings) as emu:
        api = Api(emu, http)
        await api.login()
        first = await api.submit(n_images=1, output_size="512x512")
        second = await api.submit(n_images=1, output_size="512x512")
        # The event loop (the emulator's too) stalls past both planned finishes.
        time.sleep(0.3)  # noqa: ASYNC251 (a stall on purpose)
        # Done as planned, though no worker has woken since: polls see it done at once.
        assert (await api.call("task_result", task_id=second))["state"] == "done"
        tasks = emu.state.tasks
        assert tasks[second].done_at == tasks[second].planned_done
        assert tasks[second].planned_done == pytest.approx(
            tasks[first].submitted_at + tasks[first].duration + tasks[second].duration
        )
        await api.wait_done(first)
        assert tasks[first].done_at == tasks[first].planned_done


async def test_workers_run_in_parallel(http: aiohttp.ClientSession) -> None:
    settings = make_settings(workers=4, generation_time=0.2)
    async with EmulatorServer(settings) as emu:
        api = Api(emu, http)
        await api.login()
        ids = [await api.submit(n_images=1, output_size="512x512") for _ in range(4)]
        for task_id in ids:
            await api.wait_done(task_id)
        tasks = [emu.state.tasks[task_id] for task_id in ids]
        # Each started before any finished: four workers ran them side by side.
        first_done = min(task.done_at for task in tasks if task.done_at is not None)
        assert all(task.started_at is not None and task.started_at < first_done for task in tasks)


async def test_generation_time_grows_with_pixels_and_images(api: Api, emu: EmulatorServer) -> None:
    small = await api.submit(n_images=1, output_size="512x512")
    large = await api.submit(n_images=4, output_size="1024x1024")
    durations = {task_id: emu.state.tasks[task_id].duration for task_id in (small, large)}
    assert durations[small] == pytest.approx(0.05)
    assert durations[large] == pytest.approx(0.05 * 4 * 1.75)


# Images


async def test_images_have_exact_sizes(api: Api) -> None:
    done = await api.wait_done(await api.submit(output_size="768x512", n_images=1))
    large = await api.image(done["images"][0]["large"])
    middle = await api.image(done["images"][0]["middle"])
    assert large.size == (768, 512)
    assert middle.size == (384, 256)


async def test_images_are_deterministic_and_differ(api: Api) -> None:
    same = [await api.submit(n_images=2, select_seed=42) for _ in range(2)]
    other_prompt = await api.submit(n_images=1, select_seed=42, prompt="a red car")
    other_seed = await api.submit(n_images=1, select_seed=43)
    results = [await api.wait_done(t) for t in (*same, other_prompt, other_seed)]
    first, twin, by_prompt, by_seed = [
        await api.image(result["images"][0]["large"]) for result in results
    ]
    second_index = await api.image(results[0]["images"][1]["large"])
    assert mean_difference(first, twin) == 0
    for different in (by_prompt, by_seed, second_index):
        assert mean_difference(first, different) > 20


async def test_unknown_or_unfinished_images_are_404(api: Api) -> None:
    task_id = await api.submit(n_images=1)
    url = f"{api.emu.root_url}/images/{task_id}_00000.jpg"
    async with api.http.get(url) as resp:
        assert resp.status == 404
    await api.wait_done(task_id)
    async with api.http.get(url) as resp:
        assert resp.status == 200
    async with api.http.get(url.replace("_00000", "_00001")) as resp:
        assert resp.status == 404


# Upload, i2i, datasets


async def upload(api: Api, images: list[bytes], *, part: bool = True, bearer: bool = False) -> Any:
    form = aiohttp.FormData()
    for n, data in enumerate(images):
        form.add_field("init_img", data, filename=f"{n}.png", content_type="image/png")
    if part:
        form.add_field("token", api.token.encode(), filename="token")
    headers = {"Authorization": f"Bearer {api.token}"} if bearer else {}
    return await api.post("upload_imgs", data=form, headers=headers)


async def test_upload_returns_signed_urls_serving_the_bytes(api: Api) -> None:
    images = [png_bytes((255, 0, 0)), png_bytes((0, 0, 255))]
    answer = await upload(api, images)
    assert answer["code"] == 0 and answer["msg"] == "" and len(answer["info"]) == 2
    for url, data in zip(answer["info"], images, strict=True):
        assert "Expires=" in url and "Signature=" in url
        async with api.http.get(url) as resp:
            assert resp.status == 200 and await resp.read() == data
    async with api.http.get(answer["info"][0].replace("Signature=", "Signature=x")) as resp:
        assert resp.status == 403


async def test_upload_accepts_a_bearer_token(api: Api) -> None:
    answer = await upload(api, [png_bytes((0, 255, 0))], part=False, bearer=True)
    assert answer["code"] == 0 and len(answer["info"]) == 1


async def test_upload_errors(api: Api) -> None:
    assert_error(await upload(api, [b"definitely not an image"]), 400)
    assert_error(await upload(api, []), 400)
    assert_error(await upload(api, [png_bytes((1, 2, 3))], part=False), 600)
    assert_error(await api.post("upload_imgs", {"token": api.token}), 400)


async def test_i2i_derives_from_the_init_image(api: Api) -> None:
    [url] = (await upload(api, [png_bytes((255, 0, 0), (200, 300))]))["info"]
    i2i = await api.wait_done(await api.submit(n_images=1, select_seed=5, init_img=url))
    t2i = await api.wait_done(await api.submit(n_images=1, select_seed=5))
    derived = await api.image(i2i["images"][0]["large"])
    plain = await api.image(t2i["images"][0]["large"])
    red = Image.new("RGB", derived.size, (255, 0, 0))
    assert derived.size == (640, 640)
    assert mean_difference(derived, red) < mean_difference(plain, red) - 20


async def test_dataset_and_pagination(api: Api) -> None:
    [url] = (await upload(api, [png_bytes((9, 9, 9))]))["info"]
    answer = await api.call(
        "dataset", name="dataset1", description="dataset1 description", images=[url, url]
    )
    assert answer["code"] == 0 and answer["msg"] == "" and answer["info"]["dataset_id"] == 1
    for n in range(44):
        await api.call("dataset", name=f"set{n}", images=[url])
    first = await api.call("dataset_all")
    assert set(first) == {"items", "page", "per_page", "has_next", "has_prev", "totalPages"}
    assert (first["page"], first["per_page"], first["totalPages"]) == (1, 20, 3)
    assert first["has_next"] is True and first["has_prev"] is False
    item = first["items"][0]
    assert item["id"] == 1 and item["images_num"] == 2 and item["demo_picture"] == url
    assert set(item) == {
        "id",
        "name",
        "description",
        "demo_picture",
        "create_time",
        "update_time",
        "images",
        "images_num",
    }
    second = await api.call("dataset_all", page=2)
    assert second["page"] == 2 and second["has_prev"] is True and len(second["items"]) == 20
    async with api.http.post(
        f"{api.emu.base_url}/dataset_all?page=3", json={"token": api.token}
    ) as resp:
        third = await resp.json()
    assert len(third["items"]) == 5 and third["has_next"] is False
    assert_error(await api.call("dataset_all", page=0), 400)


async def test_dataset_errors(api: Api) -> None:
    assert_error(await api.call("dataset", name="empty", images=[]), 400)
    assert_error(await api.call("dataset", name="missing"), 400)
    assert_error(await api.call("dataset", images=["u"]), 400)


async def test_datasets_are_private(api: Api, emu: EmulatorServer) -> None:
    await api.call("dataset", name="mine", images=["u"])
    other = Api(emu, api.http)
    await other.login(OTHER, OTHER_PASSWORD)
    assert (await other.call("dataset_all"))["items"] == []


# Training


TRAIN_EXAMPLE = {
    "name": "train model1",
    "description": "train model1 description",
    "base_model": "自动选择",
    "trigger_word": "one girl",
    "main_body": "Style",
    "nsfw": 0,
}


async def test_training_runs_to_done_and_the_model_is_usable(api: Api) -> None:
    # Long enough that polls every 20 ms see it pending, then running, even on a busy machine.
    api.emu.state.settings.training_time = 1.5
    ids = [
        (await api.call("dataset", name=f"d{n}", images=["u"]))["info"]["dataset_id"] for n in "ab"
    ]
    answer = await api.call("train_submit", **TRAIN_EXAMPLE, dataset=ids)
    assert answer["code"] == 0 and answer["msg"] == "" and set(answer["info"]) == {"task_id"}
    task_id = answer["info"]["task_id"]
    assert_error(
        await api.call("task_submit", **{**SUBMIT_EXAMPLE, "model_name": "train_model1"}), 400
    )
    states, progress = [], []
    while True:
        view = await api.call("train_progress", task_id=task_id)
        states.append(view["state"])
        progress.append(view["training_progress"])
        if view["state"] == "done":
            break
        await asyncio.sleep(0.02)
    assert set(view) == {
        "create_time",
        "description",
        "main_body",
        "model_name",
        "state",
        "training_progress",
        "trigger_word",
    }
    assert view["model_name"] == "train_model1" and view["training_progress"] == 1.0
    assert view["trigger_word"] == "one girl" and view["main_body"] == "Style"
    assert states[0] == "pending" and "running" in states
    assert progress == sorted(progress) and max(p for p in progress if p < 1) > 0
    form = await api.get("get_generation_form", params={"token": api.token})
    assert "train_model1" in form["info"][0]["choices"]
    bearer = await api.get("get_generation_form", headers={"Authorization": f"Bearer {api.token}"})
    assert "train_model1" in bearer["info"][0]["choices"]
    assert "train_model1" not in (await api.get("get_generation_form"))["info"][0]["choices"]
    done = await api.wait_done(await api.submit(model_name="train_model1", n_images=1))
    assert done["error_msg"] == "" and len(done["images"]) == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"main_body": "Robots"},
        {"base_model": "No such base"},
        {"nsfw": 2},
        {"name": ""},
        {"dataset": []},
        {"dataset": [999]},
        {"dataset": ["1"]},
    ],
)
async def test_train_submit_rejects_invalid_input(api: Api, fields: dict[str, Any]) -> None:
    dataset_id = (await api.call("dataset", name="d", images=["u"]))["info"]["dataset_id"]
    body = {**TRAIN_EXAMPLE, "dataset": [dataset_id], **fields}
    assert_error(await api.call("train_submit", **body), 400)


async def test_train_submit_accepts_a_form_base_model_and_no_nsfw(api: Api) -> None:
    dataset_id = (await api.call("dataset", name="d", images=["u"]))["info"]["dataset_id"]
    body = {**TRAIN_EXAMPLE, "base_model": "水彩风", "dataset": [dataset_id]}
    del body["nsfw"]
    assert (await api.call("train_submit", **body))["code"] == 0


# Batch results


async def test_task_results_batch(api: Api, emu: EmulatorServer) -> None:
    ids = [await api.submit(n_images=1) for _ in range(3)]
    for task_id in ids:
        await api.wait_done(task_id)
    answer = await api.call("task_results", task_ids=ids)
    assert answer["code"] == 0
    assert [item["task_id"] for item in answer["info"]] == ids
    assert all(item["state"] == "done" and len(item["images"]) == 1 for item in answer["info"])
    assert_error(await api.call("task_results", task_ids=ids * 17), 400)
    emu.state.settings.faults.batch_enabled = False
    async with api.http.post(f"{emu.base_url}/task_results", json={"token": api.token}) as resp:
        assert resp.status == 404


# Envelope modes


async def test_envelope_always(api: Api, emu: EmulatorServer) -> None:
    emu.state.settings.faults.envelope = "always"
    answer = await api.post("get_token", {"email": EMAIL, "password": PASSWORD})
    assert answer["code"] == 0 and answer["msg"] == "" and set(answer["info"]) == {"token"}
    api.token = answer["info"]["token"]
    submitted = await api.call("task_submit", **SUBMIT_EXAMPLE)
    assert set(submitted["info"]) == {"task_id"}
    result = await api.call("task_result", task_id=submitted["info"]["task_id"])
    assert result["info"]["state"] == "pending"
    assert set((await api.call("dataset_all"))["info"]) >= {"items", "totalPages"}


async def test_envelope_never(api: Api, emu: EmulatorServer) -> None:
    emu.state.settings.faults.envelope = "never"
    form = await api.get("get_train_form")
    assert set(form) == {"base_model", "main_body"}
    assert isinstance(await api.get("get_generation_form"), list)
    assert (await api.call("dataset", name="d", images=["u"])) == {"dataset_id": 1}
    assert_error(await api.call("task_result", task_id="nope"), 400)


# Faults


async def test_error_rate_answers_code_500_with_http_200_or_500(
    api: Api, emu: EmulatorServer
) -> None:
    emu.state.settings.faults.error_rate = 1.0
    statuses = set()
    for _ in range(20):
        async with api.http.get(f"{emu.base_url}/get_train_form") as resp:
            statuses.add(resp.status)
            assert_error(await resp.json(), 500)
    assert statuses == {200, 500}


async def test_http_error_rate_answers_5xx_without_json(api: Api, emu: EmulatorServer) -> None:
    emu.state.settings.faults.http_error_rate = 1.0
    for _ in range(10):
        async with api.http.get(f"{emu.base_url}/get_train_form") as resp:
            assert resp.status in {500, 502, 503}
            text = await resp.text()
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)


async def test_malformed_rate_breaks_json(api: Api, emu: EmulatorServer) -> None:
    emu.state.settings.faults.malformed_rate = 1.0
    async with api.http.get(f"{emu.base_url}/get_train_form") as resp:
        assert resp.status == 200
        text = await resp.text()
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


async def test_latency_and_spikes(api: Api, emu: EmulatorServer) -> None:
    faults = emu.state.settings.faults
    faults.latency = 0.1
    started = time.monotonic()
    await api.get("get_train_form")
    assert time.monotonic() - started >= 0.1
    faults.latency, faults.latency_spike_rate, faults.latency_spike = 0.0, 1.0, 0.15
    started = time.monotonic()
    await api.get("get_train_form")
    assert time.monotonic() - started >= 0.15


async def test_task_failure_rate(api: Api, emu: EmulatorServer) -> None:
    emu.state.settings.faults.task_failure_rate = 1.0
    points = emu.state.accounts[EMAIL].points
    done = await api.wait_done(await api.submit())
    assert done["state"] == "done" and done["error_msg"] and done["images"] == []
    assert emu.state.accounts[EMAIL].points == points
    assert emu.state.stats()["tasks_by_state"] == {"failed": 1}


async def test_faults_are_reproducible_with_a_seed(http: aiohttp.ClientSession) -> None:
    runs = []
    for _ in range(2):
        settings = make_settings(faults=FaultSettings(error_rate=0.5))
        async with EmulatorServer(settings) as emu:
            codes = []
            for _ in range(12):
                async with http.get(f"{emu.base_url}/get_train_form") as resp:
                    codes.append((resp.status, (await resp.json())["code"]))
            runs.append(codes)
    assert runs[0] == runs[1]
    assert {code for _, code in runs[0]} == {0, 500}


# Admin


async def test_admin_stats(api: Api, emu: EmulatorServer) -> None:
    task_id = await api.submit(n_images=1)
    await api.wait_done(task_id)
    async with api.http.get(f"{emu.root_url}/admin/stats", headers=emu.admin_headers) as resp:
        stats = await resp.json()
    assert stats["calls"]["get_token"] == 1 and stats["calls"]["task_submit"] == 1
    assert stats["calls"]["task_result"] >= 1
    assert stats["tasks_by_state"] == {"done": 1}
    timing = stats["tasks"][task_id]
    assert timing["submitted"] <= timing["started"] <= timing["done"] <= time.time()
    assert emu.state.calls["task_submit"] == 1


async def test_admin_faults_update_in_place(api: Api, emu: EmulatorServer) -> None:
    faults = emu.state.settings.faults
    url, admin = f"{emu.root_url}/admin/faults", emu.admin_headers
    update = {"latency": 0.01, "envelope": "always"}
    async with api.http.post(url, json=update, headers=admin) as resp:
        assert resp.status == 200
        assert (await resp.json())["envelope"] == "always"
    assert emu.state.settings.faults is faults
    assert (faults.latency, faults.envelope, faults.error_rate) == (0.01, "always", 0.0)
    for bad in ({"envelope": "sometimes"}, {"no_such_fault": 1}, {"error_rate": 2}):
        async with api.http.post(url, json=bad, headers=admin) as resp:
            assert resp.status == 400
    assert faults.envelope == "always"


async def test_admin_accounts_and_token_expiry(api: Api, emu: EmulatorServer) -> None:
    root, admin = emu.root_url, emu.admin_headers
    body = {"email": "new@x.io", "password": "pw-new", "points": 5}
    async with api.http.post(f"{root}/admin/accounts", json=body, headers=admin) as resp:
        assert resp.status == 200
    other = Api(emu, api.http)
    await other.login("new@x.io", "pw-new")
    assert emu.state.accounts["new@x.io"].points == 5
    async with api.http.post(f"{root}/admin/accounts", json={"email": "x"}, headers=admin) as resp:
        assert resp.status == 400
    async with api.http.post(f"{root}/admin/expire_tokens", json={}, headers=admin) as resp:
        assert resp.status == 200
    assert_error(await other.call("dataset_all"), 600)
    assert_error(await api.call("dataset_all"), 600)


ADMIN_ROUTES = [
    ("GET", "/admin/stats", None),
    ("POST", "/admin/faults", {"error_rate": 1.0}),
    ("POST", "/admin/accounts", {"email": "demo@evil.io", "password": "x"}),
    ("POST", "/admin/expire_tokens", {}),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_admin_routes_refuse_requests_without_the_admin_token(
    api: Api, emu: EmulatorServer, method: str, path: str, body: dict[str, Any] | None
) -> None:
    url = f"{emu.root_url}{path}"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {emu.admin_token[:-1]}"},
        {"Authorization": emu.admin_token},  # no scheme
        {"Authorization": f"Bearer {api.token}"},  # a v1b token is not the admin token
    ):
        async with api.http.request(method, url, json=body, headers=headers) as resp:
            assert resp.status == 401, headers
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert emu.state.settings.faults.error_rate == 0.0
    assert "demo@evil.io" not in emu.state.accounts
    assert (await api.call("dataset_all"))["page"] == 1  # tokens not expired


@pytest.mark.parametrize(("method", "path", "body"), [r for r in ADMIN_ROUTES if r[0] == "POST"])
async def test_admin_posts_refuse_bodies_a_web_page_could_send_without_preflight(
    http: aiohttp.ClientSession,
    emu: EmulatorServer,
    method: str,
    path: str,
    body: dict[str, Any],
) -> None:
    # text/plain, form and multipart bodies are "simple" requests: a browser sends them to
    # 127.0.0.1 from any page without asking. Even holding the token, they are refused.
    url, payload = f"{emu.root_url}{path}", json.dumps(body)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        headers = {**emu.admin_headers, "Content-Type": content_type}
        async with http.post(url, data=payload, headers=headers) as resp:
            assert resp.status == 415, content_type
    assert emu.state.settings.faults.error_rate == 0.0
    assert "demo@evil.io" not in emu.state.accounts


async def test_each_emulator_has_its_own_random_admin_token() -> None:
    async with EmulatorServer(make_settings()) as one, EmulatorServer(make_settings()) as two:
        assert len(one.admin_token) >= 32 and one.admin_token != two.admin_token
        async with aiohttp.ClientSession() as http:
            url = f"{two.root_url}/admin/stats"
            async with http.get(url, headers=one.admin_headers) as resp:
                assert resp.status == 401


# CLI


def test_cli_arguments_build_settings() -> None:
    parser = argparse.ArgumentParser()
    add_emulator_arguments(parser)
    defaults = parser.parse_args([])
    assert defaults.port == 8765
    assert settings_from_args(defaults).accounts == {"demo@miaohua.local": "demo-password"}
    args = parser.parse_args(
        [
            "--account=a@x.io:p:w",
            "--account=b@x.io:q",
            "--busy-above=3",
            "--envelope=always",
            "--no-batch",
            "--generation-time=0.5",
            "--generation-noise=0.4",
            "--token-ttl=9",
            "--seed=3",
        ]
    )
    settings = settings_from_args(args)
    assert settings.accounts == {"a@x.io": "p:w", "b@x.io": "q"}
    assert settings.faults.busy_above == 3 and settings.faults.envelope == "always"
    assert settings.faults.batch_enabled is False and settings.faults.token_ttl == 9
    assert settings.generation_time == 0.5 and settings.seed == 3
    assert settings.generation_noise == 0.4
    with pytest.raises(SystemExit):
        parser.parse_args(["--account=no-password"])


async def test_serve_forever_runs_until_cancelled_and_prints_its_admin_token_once(
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser()
    add_emulator_arguments(parser)
    args = parser.parse_args(["--port=0"])
    caplog.set_level("INFO", logger="bot.emulator")
    task = asyncio.create_task(serve_forever(args))
    for _ in range(100):
        if "/api/v1b" in caplog.text:
            break
        await asyncio.sleep(0.01)
    url = caplog.text.split("emulator ready at ")[1].split()[0]
    async with http.get(f"{url}/get_train_form") as resp:
        assert (await resp.json())["code"] == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if "admin token" in line]
    assert len(printed) == 1
    token = printed[0].split("admin token: ")[1].split()[0]
    assert token not in caplog.text  # printed for the operator, never logged
    stats = url.replace("/api/v1b", "/admin/stats")
    async with http.get(stats, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_peak_rate_counts_the_busiest_second():
    from bot.emulator.state import peak_rate

    assert peak_rate([]) == 0
    assert peak_rate([0.0, 0.1, 0.2, 1.5, 1.6]) == 3
    assert peak_rate([0.0, 1.0, 2.0]) == 1
