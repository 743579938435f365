"""Handlers of the /api/v1b endpoints: each takes a request and returns the bare payload."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import BodyPartReader, web

from bot.emulator import errors, forms
from bot.emulator.forms import require_int, require_str
from bot.emulator.media import find_upload, image_urls, origin, upload_url
from bot.emulator.render import sniff_image
from bot.emulator.scheduler import GenerationQueue
from bot.emulator.state import Account, EmulatorState, GenerationTask

MAX_BATCH = 50
MAX_PAGE = 1_000_000


def bearer_token(request: web.Request) -> str | None:
    """Return the token of an `Authorization: Bearer` header, if any."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return (value.strip() or None) if scheme.lower() == "bearer" else None


async def json_body(request: web.Request) -> dict[str, Any]:
    """Return the request's JSON object, or raise 400."""
    try:
        body = await request.json()
    except ValueError:
        raise errors.InvalidInput("request body must be JSON") from None
    if not isinstance(body, dict):
        raise errors.InvalidInput("request body must be a JSON object")
    return body


class V1bApi:
    """The endpoints of the emulated service, bound to its state and queue."""

    def __init__(self, state: EmulatorState, queue: GenerationQueue) -> None:
        self.state = state
        self.queue = queue

    def _account(self, request: web.Request, body: Mapping[str, Any]) -> Account:
        return self.state.account_for(body.get("token") or bearer_token(request))

    async def get_token(self, request: web.Request) -> dict[str, Any]:
        """POST get_token: exchange email and password for a token."""
        body = await json_body(request)
        email = require_str(body, "email")
        password = require_str(body, "password")
        return {"token": self.state.login(email, password)}

    async def task_submit(self, request: web.Request) -> dict[str, Any]:
        """POST task_submit: validate a generation and queue it."""
        body = await json_body(request)
        account = self._account(request, body)
        task = self._new_task(account, body)
        limit = self.state.settings.faults.busy_above
        if limit is not None and self.state.unfinished_count(account.email) >= limit:
            raise errors.Busy("too many tasks running")
        if account.points < task.n_images:
            raise errors.NotEnoughPoints("not enough points")
        account.points -= task.n_images
        self.queue.submit(task)
        return {"task_id": task.task_id}

    def _new_task(self, account: Account, body: Mapping[str, Any]) -> GenerationTask:
        model = require_str(body, "model_name")
        if model not in self.state.models_for(account.email):
            raise errors.InvalidInput(f"unknown model: {model}")
        prompt = require_str(body, "prompt")
        if not prompt.strip():
            raise errors.InvalidInput("prompt must not be empty")
        n_images = require_int(body, "n_images", bounds=forms.N_IMAGES_RANGE)
        size = forms.parse_output_size(require_str(body, "output_size"))
        seed = forms.parse_seed(body)
        init_img = require_str(body, "init_img", default="")
        init_upload = None
        if init_img:
            upload = find_upload(self.state, init_img)
            if upload is None:
                raise errors.InvalidInput("init_img must be an uploaded image")
            init_upload = upload.upload_id
        return GenerationTask(
            task_id=self.state.new_task_id(),
            owner=account.email,
            model_name=model,
            prompt=prompt,
            neg_prompt=require_str(body, "neg_prompt", default=""),
            n_images=n_images,
            scale=require_int(body, "scale", bounds=forms.SCALE_RANGE),
            seed=self.state.random_seed() if seed == -1 else seed,
            size=size,
            init_upload=init_upload,
            duration=self.state.generation_duration(size, n_images),
        )

    def _task(self, account: Account, task_id: Any) -> GenerationTask:
        task = self.state.tasks.get(task_id) if isinstance(task_id, str) else None
        if task is None or task.owner != account.email:
            raise errors.InvalidInput(f"unknown task id: {task_id}")
        return task

    def _task_view(self, request: web.Request, task: GenerationTask) -> dict[str, Any]:
        self.queue.settle(task)
        if task.finished and task.seen_done_at is None:
            task.seen_done_at = time.time()  # how late polling found it: the benchmark's figure
        images = []
        if task.finished and not task.error_msg:
            base = origin(request, self.state)
            listed = task.n_images + self.state.settings.faults.extra_images
            images = [
                {**image_urls(base, task, n), "save_index": n, "share": False, "shareable": True}
                for n in range(listed)
            ]
        return {
            "state": "done" if task.finished else "pending",
            "images": images,
            "error_msg": task.error_msg,
            "wait_time": self.queue.wait_time(task),
            "select_seed": task.seed,
            "fav": False,
        }

    async def task_result(self, request: web.Request) -> dict[str, Any]:
        """POST task_result: report one task's state and images."""
        body = await json_body(request)
        account = self._account(request, body)
        task = self._task(account, require_str(body, "task_id"))
        return self._task_view(request, task)

    async def task_results(self, request: web.Request) -> list[dict[str, Any]]:
        """POST task_results: report up to 50 tasks at once (an optional extension)."""
        if not self.state.settings.faults.batch_enabled:
            raise web.HTTPNotFound()
        body = await json_body(request)
        account = self._account(request, body)
        task_ids = body.get("task_ids")
        if not isinstance(task_ids, list) or not task_ids:
            raise errors.InvalidInput("task_ids must be a non-empty list")
        if len(task_ids) > MAX_BATCH:
            raise errors.InvalidInput(f"at most {MAX_BATCH} task_ids per call")
        tasks = [self._task(account, task_id) for task_id in task_ids]
        return [{"task_id": t.task_id, **self._task_view(request, t)} for t in tasks]

    async def get_generation_form(self, request: web.Request) -> list[dict[str, Any]]:
        """GET get_generation_form: the base form, plus trained models when a token is given."""
        token = request.query.get("token") or bearer_token(request)
        email = self.state.account_for(token).email if token else None
        return forms.generation_form(self.state.models_for(email))

    async def get_train_form(self, request: web.Request) -> dict[str, list[str]]:
        """GET get_train_form (also train_form): base models and main bodies."""
        return forms.train_form()

    async def upload_imgs(self, request: web.Request) -> list[str]:
        """POST upload_imgs: store multipart `init_img` files and return their URLs."""
        if not request.content_type.startswith("multipart/"):
            raise errors.InvalidInput("upload_imgs takes a multipart body")
        token, images = await _read_upload_parts(request)
        account = self.state.account_for(bearer_token(request) or token)
        if not images:
            raise errors.InvalidInput("init_img is required")
        kinds = await asyncio.to_thread(_sniff_all, images)  # Pillow reads whole files
        if None in kinds:
            raise errors.InvalidInput("invalid image")
        base = origin(request, self.state)
        uploads = [
            self.state.add_upload(account.email, data, kind or "application/octet-stream")
            for data, kind in zip(images, kinds, strict=True)
        ]
        return [upload_url(base, self.state, upload) for upload in uploads]

    async def dataset(self, request: web.Request) -> dict[str, Any]:
        """POST dataset: create a dataset from image URLs."""
        body = await json_body(request)
        account = self._account(request, body)
        name = require_str(body, "name")
        if not name.strip():
            raise errors.InvalidInput("name must not be empty")
        images = body.get("images")
        if not isinstance(images, list) or not images:
            raise errors.InvalidInput("images must be a non-empty list of URLs")
        if not all(isinstance(url, str) and url for url in images):
            raise errors.InvalidInput("images must be a non-empty list of URLs")
        description = require_str(body, "description", default="")
        created = self.state.add_dataset(account.email, name, description, list(images))
        return {"dataset_id": created.dataset_id}

    async def dataset_all(self, request: web.Request) -> dict[str, Any]:
        """POST dataset_all: one page (20 per page) of the account's datasets."""
        body = await json_body(request)
        account = self._account(request, body)
        page: Any = body.get("page", request.query.get("page", 1))
        if isinstance(page, str) and page.isascii() and page.isdigit():
            page = int(page)
        page = require_int({"page": page}, "page", bounds=(1, MAX_PAGE))
        return self.state.dataset_page(account.email, page)

    async def train_submit(self, request: web.Request) -> dict[str, Any]:
        """POST train_submit: validate a training and start it."""
        body = await json_body(request)
        account = self._account(request, body)
        fields = _training_fields(body)
        for dataset_id in fields["dataset"]:
            dataset = self.state.datasets.get(dataset_id)
            if dataset is None or dataset.owner != account.email:
                raise errors.InvalidInput(f"unknown dataset id: {dataset_id}")
        return {"task_id": self.state.add_training(account.email, fields).task_id}

    async def train_progress(self, request: web.Request) -> dict[str, Any]:
        """POST train_progress: the state and progress of a training."""
        body = await json_body(request)
        account = self._account(request, body)
        task_id = require_str(body, "task_id")
        training = self.state.trainings.get(task_id)
        if training is None or training.owner != account.email:
            raise errors.InvalidInput(f"unknown task id: {task_id}")
        return training.view(time.time())


async def _read_upload_parts(request: web.Request) -> tuple[str | None, list[bytes]]:
    token: str | None = None
    images: list[bytes] = []
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            continue  # nested multipart bodies carry nothing the service reads
        if part.name == "init_img":
            images.append(bytes(await part.read()))
        elif part.name == "token":
            token = (await part.read()).decode("utf-8", "replace").strip()
    return token, images


def _training_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    name = require_str(body, "name")
    if not name.strip():
        raise errors.InvalidInput("name must not be empty")
    main_body = require_str(body, "main_body")
    if main_body not in forms.TRAIN_MAIN_BODIES:
        raise errors.InvalidInput(f"main_body must be one of {forms.TRAIN_MAIN_BODIES}")
    base_model = require_str(body, "base_model", default="")
    if base_model not in ("", forms.AUTO_BASE_MODEL, *forms.TRAIN_BASE_MODELS):
        raise errors.InvalidInput(f"unknown base_model: {base_model}")
    dataset = body.get("dataset")
    valid_ids = isinstance(dataset, list) and all(
        isinstance(n, int) and not isinstance(n, bool) for n in dataset
    )
    if not valid_ids or not dataset:
        raise errors.InvalidInput("dataset must be a non-empty list of dataset ids")
    return {
        "name": name,
        "description": require_str(body, "description", default=""),
        "base_model": base_model,
        "trigger_word": require_str(body, "trigger_word", default=""),
        "main_body": main_body,
        # Newer versions of the API dropped nsfw, so it may be missing.
        "nsfw": require_int(body, "nsfw", default=0, bounds=(0, 1)),
        "dataset": list(dataset),
    }


def _sniff_all(images: list[bytes]) -> list[str | None]:
    return [sniff_image(data) for data in images]
