"""Keeping the emulator's state in a JSON file, so a demo on it survives restarts.

Kept: accounts with their points, datasets, trainings (so trained models stay usable),
generation tasks (unfinished ones run again after a restart; the last finished ones keep
serving their images), and, for a seeded emulator, where its random sequence stands.
Not kept: tokens (clients log in again, as after any expiry) and uploaded bytes (a restored
img2img task renders without its init image).

The file is replaced atomically (a temporary file, then `os.replace`), written in a thread
shortly after each change, and once more when the emulator stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from bot.emulator.state import Account, Dataset, EmulatorState, GenerationTask, Training

log = logging.getLogger(__name__)

STATE_VERSION = 1
# The file of `run --emulator`, in the database's folder.
EMBEDDED_STATE_FILE = "emulator-state.json"
# Changes within this many seconds are written together.
SAVE_DELAY = 0.5
# The most recent finished tasks kept (clients fetch their images within seconds), so the
# file, and the copy taken on the event loop for each write, stay small however busy it is.
FINISHED_TASKS_KEPT = 1000


class StateFileUnusable(Exception):
    """The state file exists but cannot be read; the message is one line for the operator."""


class StateFile(BaseModel):
    """What the state file holds."""

    version: Literal[1]
    accounts: list[Account]
    datasets: list[Dataset]
    trainings: list[Training]
    tasks: list[GenerationTask]
    # random.Random.getstate() of the task stream, for an emulator run with a fixed seed.
    task_rng: list[Any] | None = None


def state_file_beside(database: Path) -> Path:
    """Where the embedded emulator of the data directory holding `database` keeps its state."""
    return database.parent / EMBEDDED_STATE_FILE


def snapshot(state: EmulatorState) -> dict[str, Any]:
    """A copy of what is kept, as plain data: taken on the loop, written in a thread."""
    finished = [t for t in state.tasks.values() if t.finished]
    finished.sort(key=lambda t: t.done_at or 0.0)
    kept = {t.task_id for t in finished[-FINISHED_TASKS_KEPT:]}
    tasks = [t for t in state.tasks.values() if not t.finished or t.task_id in kept]
    version, internal, gauss = state.task_rng.getstate()
    return {
        "version": STATE_VERSION,
        "accounts": [_record(a) for a in state.accounts.values()],
        "datasets": [_record(d, images=list(d.images)) for d in state.datasets.values()],
        "trainings": [
            _record(t, dataset_ids=list(t.dataset_ids)) for t in state.trainings.values()
        ],
        "tasks": [_record(t) for t in tasks],
        "task_rng": [version, list(internal), gauss] if state.settings.seed is not None else None,
    }


def _record(item: object, **copies: object) -> dict[str, Any]:
    """The fields of a dataclass; `copies` replace its mutable ones (the rest are immutable).

    Cheaper than `dataclasses.asdict`, which copies every value recursively.
    """
    return {**vars(item), **copies}


def restore(state: EmulatorState, saved: StateFile) -> list[GenerationTask]:
    """Put saved state into a fresh one; return the unfinished tasks, to be queued again."""
    for account in saved.accounts:
        state.accounts[account.email] = account
    for email, password in state.settings.accounts.items():  # configured passwords win
        state.ensure_account(email, password)
    for dataset in saved.datasets:
        state.datasets[dataset.dataset_id] = dataset
    for training in saved.trainings:
        state.trainings[training.task_id] = training
    unfinished: list[GenerationTask] = []
    for task in sorted(saved.tasks, key=lambda t: t.submitted_at):
        if not task.finished:  # it starts over: the worker running it stopped with the emulator
            task.status, task.started_at = "queued", None
            unfinished.append(task)
        state.tasks[task.task_id] = task
    if saved.task_rng is not None and state.settings.seed is not None:
        version, internal, gauss = saved.task_rng
        state.task_rng.setstate((version, tuple(internal), gauss))
    return unfinished


def read_state_file(path: Path) -> StateFile | None:
    """The saved state, None when there is no file yet; StateFileUnusable when it is broken."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not text"
        raise _unusable(path, reason) from None
    try:
        return StateFile.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "file"
        raise _unusable(path, f"{where}: {first['msg']}") from None


def _unusable(path: Path, reason: str) -> StateFileUnusable:
    return StateFileUnusable(
        f"emulator state file {path}: {reason}; move it away to start the emulator afresh"
    )


def write_atomically(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` with `data` as JSON (mode 0600: it holds the accounts' passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, ensure_ascii=False, separators=(",", ":"))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


class StateKeeper:
    """Loads the state file at start and writes it after changes and at the end."""

    def __init__(self, state: EmulatorState, path: Path) -> None:
        self._state = state
        self._path = path
        self._dirty = asyncio.Event()
        self._stopping = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    def load(self) -> list[GenerationTask]:
        """Restore the saved state, if any; return the unfinished tasks to queue again."""
        saved = read_state_file(self._path)
        unfinished = restore(self._state, saved) if saved is not None else []
        if saved is not None:
            log.info(
                "emulator state restored from %s: %d accounts, %d trainings, %d tasks",
                self._path,
                len(saved.accounts),
                len(saved.trainings),
                len(saved.tasks),
            )
        self._state.on_change(self._dirty.set)
        return unfinished

    def start(self) -> None:
        """Write changes from now on, on the running loop."""
        self._writer = asyncio.create_task(self._write_changes(), name="emulator-state-writer")

    async def stop(self) -> None:
        """Write what is current, and stop writing on changes.

        The writer is asked to finish rather than cancelled: a cancelled write would go on in
        its thread and could land after, and over, the final one.
        """
        self._state.on_change(None)
        self._stopping.set()
        if self._writer is None:
            await self.save()
            return
        self._dirty.set()
        await self._writer
        self._writer = None

    async def save(self) -> None:
        """Write the current state now (the copy is taken here, the file written in a thread)."""
        self._dirty.clear()
        data = snapshot(self._state)
        try:
            await asyncio.to_thread(write_atomically, self._path, data)
        except OSError as exc:  # the emulator goes on in memory; the next change tries again
            log.warning("emulator state not saved to %s: %s", self._path, exc)

    async def _write_changes(self) -> None:
        """Write after each change, one write at a time; the last one when stopping."""
        while not self._stopping.is_set():
            await self._dirty.wait()
            # The changes of the next moment go into the same write (unless stopping now).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), SAVE_DELAY)
            await self.save()
