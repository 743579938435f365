"""AccountSession: the v1b calls of one Miaohua account, with its token and rate limit."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from pydantic import TypeAdapter

from . import envelope
from .errors import (
    AuthError,
    FeatureUnavailable,
    InvalidCredentials,
    InvalidRequest,
    NotEnoughPoints,
    ResponseTooLarge,
    ServiceError,
    TaskFailed,
    V1bError,
)
from .models import (
    Dataset,
    DatasetCreated,
    DatasetPage,
    GenerationForm,
    SubmitInfo,
    TaskParams,
    TaskResult,
    TokenInfo,
    TrainForm,
    TrainParams,
    TrainProgress,
)
from .ratelimit import RateLimiter
from .request import Request

if TYPE_CHECKING:
    from .client import V1bClient

log = logging.getLogger(__name__)

T = TypeVar("T")

BATCH_LIMIT = 50
MAX_DATASET_PAGES = 100
TRAIN_FORM_PATHS = ("get_train_form", "train_form")

_TOKEN = TypeAdapter(TokenInfo)
_SUBMIT = TypeAdapter(SubmitInfo)
_RESULT = TypeAdapter(TaskResult)
_BATCH: TypeAdapter[list[TaskResult] | dict[str, TaskResult]] = TypeAdapter(
    list[TaskResult] | dict[str, TaskResult]
)
_FORM = TypeAdapter(GenerationForm)
_URLS = TypeAdapter(list[str])
_DATASET = TypeAdapter(DatasetCreated)
_DATASET_PAGE = TypeAdapter(DatasetPage)
_PROGRESS = TypeAdapter(TrainProgress)
_TRAIN_FORM = TypeAdapter(TrainForm)

_labels = itertools.count(1)


class _Secret:
    """A string that never shows itself in repr, str or tracebacks' locals dumps."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


class AccountSession:
    """The v1b calls of one account: lazy login, one re-login on expiry, rate limited."""

    def __init__(
        self,
        client: V1bClient,
        email: str,
        password: str,
        *,
        token: str | None,
        on_token: Callable[[str], Awaitable[None]] | None,
        rate_limiter: RateLimiter,
    ) -> None:
        self._client = client
        self._email = _Secret(email)
        self._password = _Secret(password)
        self._token = token or None
        self._on_token = on_token
        self._login_lock = asyncio.Lock()
        self.rate_limiter = rate_limiter
        self.label = f"account-{next(_labels)}"

    def __repr__(self) -> str:
        return f"<AccountSession {self.label} has_token={self.has_token}>"

    __str__ = __repr__

    def update(
        self,
        password: str,
        *,
        token: str | None = None,
        on_token: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """Take a changed password, a restored token or a new callback."""
        if password != self._password.reveal():
            self._password = _Secret(password)
            self._token = None
        if token:
            self._token = token
        if on_token is not None:
            self._on_token = on_token

    @property
    def batch_supported(self) -> bool | None:
        """Whether the server answers batch task_results (None until the first try)."""
        return self._client.batch_supported

    @property
    def has_token(self) -> bool:
        """Whether a token is held (it may still turn out to be expired)."""
        return self._token is not None

    def _secrets(self, *extra: str | None) -> tuple[str, ...]:
        values = (self._email.reveal(), self._password.reveal(), self._token, *extra)
        return tuple(v for v in values if v)

    # Authentication -------------------------------------------------------------------

    async def login(self) -> None:
        """Get a new token (get_token) and hand it to on_token."""
        async with self._login_lock:
            await self._login()

    async def _login(self) -> str:
        self._token = None
        body = {"email": self._email.reveal(), "password": self._password.reveal()}
        req = Request("get_token", _TOKEN, json=body)
        info: TokenInfo = await self._client.call(req, self.rate_limiter, self._secrets())
        self._token = info.token
        log.debug("v1b %s: logged in", self.label)
        if self._on_token is not None:
            try:
                await self._on_token(info.token)
            except Exception:
                # The login itself worked; failing to persist only costs a login later.
                log.warning("v1b %s: on_token callback failed", self.label, exc_info=True)
        return info.token

    async def _ensure_token(self) -> tuple[str, bool]:
        """Return a token and whether it was obtained during this call."""
        if self._token:
            return self._token, False
        return await self._login_once(), True

    async def _login_once(self) -> str:
        async with self._login_lock:
            # The caller that held the lock may have logged in meanwhile: use its token.
            return self._token or await self._login()

    async def _relogin(self, stale: str) -> str:
        async with self._login_lock:
            if self._token and self._token != stale:
                return self._token  # another caller already logged in again
            return await self._login()

    async def _authed(
        self,
        endpoint: str,
        adapter: TypeAdapter[T],
        *,
        body: dict[str, Any] | None = None,
        method: str = "POST",
        path: str | None = None,
        query: dict[str, Any] | None = None,
        form: Callable[[str], aiohttp.FormData] | None = None,
        read_only: bool = True,
    ) -> T:
        """Call an endpoint with the token in the body (POST) or query (GET) and as Bearer."""

        def build(token: str) -> Request[T]:
            return Request(
                endpoint,
                adapter,
                method=method,
                path=path,
                json={**body, "token": token} if body is not None else None,
                params={**(query or {}), "token": token} if method == "GET" else query,
                form=(lambda: form(token)) if form else None,
                token=token,
                read_only=read_only,
            )

        token, fresh = await self._ensure_token()
        try:
            return await self._client.call(build(token), self.rate_limiter, self._secrets(token))
        except InvalidCredentials:
            if fresh:
                raise
            log.debug("v1b %s: token rejected, logging in again", self.label)
            token = await self._relogin(token)
            return await self._client.call(build(token), self.rate_limiter, self._secrets(token))

    # Generation -----------------------------------------------------------------------

    async def submit_task(self, params: TaskParams) -> str:
        """Submit a generation task (task_submit) and return its task id."""
        body = params.to_payload()
        info: SubmitInfo = await self._authed("task_submit", _SUBMIT, body=body, read_only=False)
        return info.task_id

    async def task_result(self, task_id: str) -> TaskResult:
        """Return the state of a task; raise TaskFailed if the service reports a failure."""
        result: TaskResult = await self._authed("task_result", _RESULT, body={"task_id": task_id})
        if result.failed:
            message = envelope.scrub(result.error_msg, self._secrets())
            raise TaskFailed("task_result", message, result=result)
        return result

    async def task_results(self, task_ids: list[str]) -> dict[str, TaskResult | V1bError]:
        """Return the state of many tasks, by batch call where the server offers it.

        Per-task outcomes (TaskFailed, a task the server does not know, a transient
        failure of one poll) are values of the dict; account-level errors are raised.
        """
        ids = list(dict.fromkeys(task_ids))
        results: dict[str, TaskResult | V1bError] = {}
        for start in range(0, len(ids), BATCH_LIMIT):
            chunk = ids[start : start + BATCH_LIMIT]
            if self._client.batch_supported is not False:
                try:
                    results.update(await self._batch(chunk))
                    self._client.batch_supported = True
                    continue
                except FeatureUnavailable:
                    log.info("v1b: task_results not offered, polling tasks one by one")
                    self._client.batch_supported = False
                except InvalidRequest:
                    # One unknown id rejects the whole batch: poll one by one to isolate it.
                    log.debug("v1b: task_results rejected a chunk, polling it one by one")
                    self._client.batch_supported = True
                except ResponseTooLarge:
                    # Likely one task's answer is oversized: alone, only that task fails.
                    log.warning("v1b: task_results answer too large, polling one by one")
            results.update(await self._one_by_one(chunk))
        return results

    async def _batch(self, ids: list[str]) -> dict[str, TaskResult | V1bError]:
        answer = await self._authed("task_results", _BATCH, body={"task_ids": ids})
        if isinstance(answer, dict):
            by_id = answer
        else:
            by_id = {r.task_id: r for r in answer if r.task_id}
            if not by_id and len(answer) == len(ids):
                by_id = dict(zip(ids, answer, strict=True))  # answered in request order
        out: dict[str, TaskResult | V1bError] = {}
        for task_id in ids:
            result = by_id.get(task_id)
            if result is None:
                out[task_id] = ServiceError("task_results", "task missing from the answer")
            elif result.failed:
                message = envelope.scrub(result.error_msg, self._secrets())
                out[task_id] = TaskFailed("task_results", message, result=result)
            else:
                out[task_id] = result
        return out

    async def _one_by_one(self, ids: list[str]) -> dict[str, TaskResult | V1bError]:
        async def one(task_id: str) -> TaskResult | V1bError:
            try:
                return await self.task_result(task_id)
            except (AuthError, NotEnoughPoints):
                raise
            except V1bError as exc:
                return exc

        answers = await asyncio.gather(*(one(task_id) for task_id in ids))
        return dict(zip(ids, answers, strict=True))

    async def generation_form(self) -> GenerationForm:
        """Return the generation form, including this account's trained models."""
        return await self._authed("get_generation_form", _FORM, method="GET")

    # Training -------------------------------------------------------------------------

    async def upload_images(self, files: Sequence[tuple[str, bytes, str]]) -> list[str]:
        """Upload images (filename, data, content_type) and return their URLs."""
        if not files:
            raise InvalidRequest("upload_imgs", "no images to upload", field="init_img")

        def form(token: str) -> aiohttp.FormData:
            data = aiohttp.FormData()
            for filename, content, content_type in files:
                data.add_field("init_img", content, filename=filename, content_type=content_type)
            data.add_field("token", token)
            return data

        return await self._authed("upload_imgs", _URLS, form=form, read_only=False)

    async def create_dataset(self, name: str, images: list[str], description: str = "") -> int:
        """Create a dataset from uploaded image URLs and return its id."""
        body = {"name": name, "description": description, "images": list(images)}
        info: DatasetCreated = await self._authed("dataset", _DATASET, body=body, read_only=False)
        return info.dataset_id

    async def list_datasets(self) -> list[Dataset]:
        """Return every dataset of the account, following pagination."""
        datasets: dict[int, Dataset] = {}
        for page in range(1, MAX_DATASET_PAGES + 1):
            answer: DatasetPage = await self._authed(
                "dataset_all", _DATASET_PAGE, body={"page": page}, query={"page": page}
            )
            fresh = {d.id: d for d in answer.items if d.id not in datasets}
            datasets.update(fresh)
            # A server that ignores `page` repeats itself: stop instead of looping.
            if not answer.has_next or not fresh:
                break
        return list(datasets.values())

    async def submit_training(self, params: TrainParams) -> str:
        """Submit a training task (train_submit) and return its task id."""
        body = params.to_payload()
        info: SubmitInfo = await self._authed("train_submit", _SUBMIT, body=body, read_only=False)
        return info.task_id

    async def train_progress(self, task_id: str) -> TrainProgress:
        """Return the progress of a training task."""
        return await self._authed("train_progress", _PROGRESS, body={"task_id": task_id})

    async def train_form(self) -> TrainForm:
        """Return the training form (get_train_form, or its alias train_form on 404)."""
        known = self._client.train_form_path
        paths = (known,) if known else TRAIN_FORM_PATHS
        for path in paths[:-1]:
            try:
                return await self._train_form(path)
            except FeatureUnavailable:
                log.debug("v1b: %s not offered, trying %s", path, paths[-1])
        return await self._train_form(paths[-1])

    async def _train_form(self, path: str) -> TrainForm:
        form: TrainForm = await self._authed("get_train_form", _TRAIN_FORM, method="GET", path=path)
        self._client.train_form_path = path
        return form
