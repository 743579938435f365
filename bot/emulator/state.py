"""In-memory state of the emulated service: accounts, tokens, tasks, uploads, datasets."""

from __future__ import annotations

import math
import random
import secrets
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.emulator import errors
from bot.emulator.forms import AUTO_BASE_MODEL, trained_model_name
from bot.emulator.settings import EmulatorSettings

PER_PAGE = 20
# A training waits this fraction of training_time (at most 1 s) in "pending" before it runs.
TRAINING_QUEUE_FRACTION = 0.1


def _timestamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


@dataclass
class Account:
    """A business account of the service."""

    email: str
    password: str
    points: int


@dataclass
class Token:
    """An access token issued by get_token."""

    value: str
    email: str
    issued: float  # time.monotonic()
    revoked: bool = False


@dataclass
class Upload:
    """An image stored by upload_imgs."""

    upload_id: str
    owner: str
    data: bytes
    content_type: str
    expires: int


@dataclass
class GenerationTask:
    """A t2i or i2i generation task."""

    task_id: str
    owner: str
    model_name: str
    prompt: str
    neg_prompt: str
    n_images: int
    scale: int
    seed: int
    size: tuple[int, int]
    init_upload: str | None
    duration: float
    submitted_at: float = field(default_factory=time.time)
    status: Literal["queued", "running", "done"] = "queued"
    error_msg: str = ""
    started_at: float | None = None
    planned_done: float | None = None  # when the queue's plan has it finish (epoch seconds)
    done_at: float | None = None
    seen_done_at: float | None = None  # when a poll first reported it done

    @property
    def finished(self) -> bool:
        """Whether the task is done (successfully or not)."""
        return self.status == "done"


@dataclass
class Dataset:
    """A training dataset owned by one account."""

    dataset_id: int
    owner: str
    name: str
    description: str
    images: list[str]
    created_at: float = field(default_factory=time.time)

    def view(self) -> dict[str, Any]:
        """Return the dataset as dataset_all lists it."""
        stamp = _timestamp(self.created_at)
        return {
            "id": self.dataset_id,
            "name": self.name,
            "description": self.description,
            "demo_picture": self.images[0],
            "create_time": stamp,
            "update_time": stamp,
            "images": list(self.images),
            "images_num": len(self.images),
        }


@dataclass
class Training:
    """A model training task; its progress is a function of time alone."""

    task_id: str
    owner: str
    name: str
    description: str
    base_model: str
    trigger_word: str
    main_body: str
    nsfw: int
    dataset_ids: list[int]
    starts_at: float
    ends_at: float
    created_at: float = field(default_factory=time.time)

    @property
    def model_name(self) -> str:
        """The name the trained model is generated with."""
        return trained_model_name(self.name)

    def progress(self, now: float) -> float:
        """Return training progress in 0..1 at epoch time now."""
        if now >= self.ends_at:
            return 1.0
        if now <= self.starts_at:
            return 0.0
        return (now - self.starts_at) / (self.ends_at - self.starts_at)

    def state(self, now: float) -> str:
        """Return "pending", "running" or "done" at epoch time now."""
        if now >= self.ends_at:
            return "done"
        return "running" if now > self.starts_at else "pending"

    def view(self, now: float) -> dict[str, Any]:
        """Return the training as train_progress reports it."""
        return {
            "create_time": _timestamp(self.created_at),
            "description": self.description,
            "main_body": self.main_body,
            "model_name": self.model_name,
            "state": self.state(now),
            "training_progress": round(self.progress(now), 4),
            "trigger_word": self.trigger_word,
        }


CALL_HISTORY = 100_000


def peak_rate(times: Iterable[float], window: float = 1.0) -> int:
    """The most calls that fall within any `window` seconds."""
    ordered = sorted(times)
    best = start = 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


class EmulatorState:
    """Everything the emulated service remembers, plus the random sources that drive it."""

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.calls: Counter[str] = Counter()
        # When each account made authenticated calls, to report its peak rate (bounded).
        self.account_calls: defaultdict[str, deque[float]] = defaultdict(
            lambda: deque(maxlen=CALL_HISTORY)
        )
        self.accounts: dict[str, Account] = {}
        self.tokens: dict[str, Token] = {}
        self.tasks: dict[str, GenerationTask] = {}
        self.uploads: dict[str, Upload] = {}
        self.datasets: dict[int, Dataset] = {}
        self.trainings: dict[str, Training] = {}
        # Huge bodies (a fault): bytes written, and how many the client hung up on.
        self.streamed_bytes = 0
        self.streams_cut = 0
        # Separate streams, so faults do not shift the seeds or timings of a reproducible run.
        # Without a seed every start draws a new one: task ids and random seeds never repeat.
        seed = secrets.randbits(64) if settings.seed is None else settings.seed
        self.fault_rng = random.Random(seed)
        self.task_rng = random.Random(seed + 1)
        self.signing_key = secrets.token_bytes(32)
        self._on_change: Callable[[], None] | None = None
        for email, password in settings.accounts.items():
            self.add_account(email, password)

    def on_change(self, listener: Callable[[], None] | None) -> None:
        """Call listener() after each change worth keeping across restarts (see persistence)."""
        self._on_change = listener

    def changed(self) -> None:
        """Tell the listener that accounts, datasets, trainings or tasks changed."""
        if self._on_change is not None:
            self._on_change()

    # Accounts and tokens

    def add_account(self, email: str, password: str, points: int | None = None) -> None:
        """Create or replace an account."""
        balance = self.settings.points if points is None else points
        self.accounts[email] = Account(email=email, password=password, points=balance)
        self.changed()

    def ensure_account(self, email: str, password: str) -> None:
        """Create the account, or set its password; an existing account keeps its points."""
        account = self.accounts.get(email)
        if account is None:
            self.add_account(email, password)
        elif account.password != password:
            account.password = password
            self.changed()

    def login(self, email: str, password: str) -> str:
        """Return a new token for the account, or raise 600/601/602."""
        account = self.accounts.get(email)
        if account is None:
            raise errors.UnknownUser("user not found")
        if not secrets.compare_digest(account.password.encode(), password.encode()):
            raise errors.WrongPassword("wrong password")
        if email in self.settings.non_business:
            raise errors.NotBusiness("not a business account")
        token = Token(value=secrets.token_hex(24), email=email, issued=time.monotonic())
        self.tokens[token.value] = token
        return token.value

    def account_for(self, token_value: Any) -> Account:
        """Return the account of a live token, or raise 600."""
        token = self.tokens.get(token_value) if isinstance(token_value, str) else None
        if token is None or token.revoked:
            raise errors.UnknownUser("invalid token")
        if time.monotonic() - token.issued >= self.settings.faults.token_ttl:
            raise errors.UnknownUser("token expired")
        account = self.accounts.get(token.email)
        if account is None:
            raise errors.UnknownUser("user not found")
        self.account_calls[account.email].append(time.monotonic())
        return account

    def expire_tokens(self) -> None:
        """Make every issued token answer 600 from now on."""
        for token in self.tokens.values():
            token.revoked = True

    def models_for(self, email: str | None) -> list[str]:
        """Return the models an account may generate with: the service's plus its trained ones."""
        models = list(self.settings.models)
        if email is None:
            return models
        now = time.time()
        for training in self.trainings.values():
            done = training.owner == email and training.state(now) == "done"
            if done and training.model_name not in models:
                models.append(training.model_name)
        return models

    # Generation tasks

    def new_task_id(self) -> str:
        """Return a fresh task id shaped like the service's (a UUID)."""
        return str(uuid.UUID(int=self.task_rng.getrandbits(128), version=1))

    def unfinished_count(self, email: str) -> int:
        """Return how many tasks of the account are queued or running."""
        return sum(1 for t in self.tasks.values() if t.owner == email and not t.finished)

    def generation_duration(self, size: tuple[int, int], n_images: int) -> float:
        """Return a noisy generation time for a task of this size."""
        s = self.settings
        pixels = size[0] * size[1] / 512**2
        noise = self.task_rng.uniform(1 - s.generation_noise, 1 + s.generation_noise)
        return s.generation_time * pixels * (1 + 0.25 * (n_images - 1)) * noise

    def random_seed(self) -> int:
        """Return a seed for a task submitted with select_seed -1."""
        return self.task_rng.randint(0, 9_999_999)

    # Uploads

    def add_upload(self, owner: str, data: bytes, content_type: str) -> Upload:
        """Store an uploaded image."""
        upload = Upload(
            upload_id=str(uuid.uuid1()),
            owner=owner,
            data=data,
            content_type=content_type,
            expires=int(time.time()) + 365 * 24 * 3600,
        )
        self.uploads[upload.upload_id] = upload
        return upload

    # Datasets

    def add_dataset(self, owner: str, name: str, description: str, images: list[str]) -> Dataset:
        """Create a dataset and return it."""
        dataset = Dataset(
            dataset_id=len(self.datasets) + 1,
            owner=owner,
            name=name,
            description=description,
            images=images,
        )
        self.datasets[dataset.dataset_id] = dataset
        self.changed()
        return dataset

    def dataset_page(self, owner: str, page: int) -> dict[str, Any]:
        """Return one page of the account's datasets, shaped like dataset_all."""
        owned = [d for d in self.datasets.values() if d.owner == owner]
        total_pages = math.ceil(len(owned) / PER_PAGE)
        start = (page - 1) * PER_PAGE
        return {
            "items": [d.view() for d in owned[start : start + PER_PAGE]],
            "page": page,
            "per_page": PER_PAGE,
            "has_next": page < total_pages,
            "has_prev": page > 1,
            "totalPages": total_pages,
        }

    # Trainings

    def add_training(self, owner: str, fields: dict[str, Any]) -> Training:
        """Start a training from validated fields and return it."""
        now = time.time()
        duration = self.settings.training_time
        queued = min(1.0, duration * TRAINING_QUEUE_FRACTION)
        base_model = fields["base_model"] or AUTO_BASE_MODEL
        training = Training(
            task_id=self.new_task_id(),
            owner=owner,
            name=fields["name"],
            description=fields["description"],
            base_model=base_model,
            trigger_word=fields["trigger_word"],
            main_body=fields["main_body"],
            nsfw=fields["nsfw"],
            dataset_ids=fields["dataset"],
            starts_at=now + queued,
            ends_at=now + queued + duration,
            created_at=now,
        )
        self.trainings[training.task_id] = training
        self.changed()
        return training

    # Statistics

    def stats(self) -> dict[str, Any]:
        """Return call counts, task counts by state and per-task timestamps."""
        by_state: Counter[str] = Counter()
        for task in self.tasks.values():
            by_state["failed" if task.error_msg else task.status] += 1
        return {
            "calls": dict(self.calls),
            "tasks_by_state": dict(by_state),
            "tasks": {
                task.task_id: {
                    "submitted": task.submitted_at,
                    "started": task.started_at,
                    "done": task.done_at,
                    "planned_done": task.planned_done,
                    "seen_done": task.seen_done_at,
                    "n_images": task.n_images,
                    "state": task.status,
                    "error_msg": task.error_msg,
                }
                for task in self.tasks.values()
            },
            "accounts": {
                email: {"points": account.points, "unfinished": self.unfinished_count(email)}
                for email, account in self.accounts.items()
            },
            "peak_calls_per_second": {
                email: peak_rate(times) for email, times in self.account_calls.items()
            },
            "trainings": len(self.trainings),
            "datasets": len(self.datasets),
            "uploads": len(self.uploads),
        }
