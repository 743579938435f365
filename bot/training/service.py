"""Training jobs from request to trained model, persisted at every step and resumable.

Steps (store.trainings states): uploading -> creating_dataset -> submitting -> training -> done.
After a crash `start()` continues each job from its state:
- uploading: staged files not yet uploaded are uploaded (a batch sent just before the
  crash may be uploaded twice; uploads cost nothing and the spare copy is never used).
- creating_dataset: the dataset is looked up by its unique name ("<name>-<training id>")
  before one is created, so a dataset created just before the crash is reused.
- submitting: the service offers no way to find a training submitted just before the
  crash, and a second submission would be charged again, so such a job is failed with
  reason 'submit_uncertain' instead of being submitted again.
- training: progress polling resumes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from bot.background import Background
from bot.errors import UserFacingError
from bot.images import CheckedImage
from bot.jobs.errors import AccountUnreadable, NoAccount
from bot.jobs.locks import KeyedLocks
from bot.jobs.protocols import AccountResolver, PollRounds
from bot.store import Store, StoreUnavailable, until_stored
from bot.store.trainings import Training, TrainingState
from bot.training.inputs import check_model_name
from bot.training.reasons import TrainingFailReason
from bot.training.staging import Staging
from bot.v1b import AccountSession, Dataset, TrainParams, TrainProgress
from bot.v1b import errors as v1b

log = logging.getLogger(__name__)

S = TrainingState
ROUND = "training"  # the name of training's round on the polling loop
PRE_TRAINING = (S.UPLOADING, S.CREATING_DATASET, S.SUBMITTING)


class TrainingEvents(Protocol):
    """What the Discord side shows of a training job."""

    async def training_created(self, training: Training) -> int | None: ...  # message id

    async def training_progress(self, training: Training, remaining: float | None) -> None: ...

    async def training_done(self, training: Training) -> None: ...

    async def training_failed(self, training: Training, detail: str) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class TrainingRequest:
    """A validated /train request."""

    guild_id: int
    channel_id: int
    user_id: int
    name: str
    main_body: str
    base_model: str | None
    trigger_word: str
    description: str
    nsfw: bool
    images: tuple[CheckedImage, ...] = ()
    dataset_ids: tuple[int, ...] = ()


class StepFailed(Exception):
    """A step cannot go on; `reason` is stored as the training's error."""

    def __init__(self, reason: TrainingFailReason, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def dataset_name(training: Training) -> str:
    """The unique name of the dataset a training creates."""
    return f"{training.name}-{training.id}"


def failure_reason(state: TrainingState, exc: BaseException) -> TrainingFailReason:
    """The reason code stored when `exc` ends a job in `state`."""
    if isinstance(exc, NoAccount):
        return TrainingFailReason.NO_ACCOUNT
    if isinstance(exc, v1b.AuthError | AccountUnreadable):
        return TrainingFailReason.ACCOUNT_INVALID
    if isinstance(exc, v1b.NotEnoughPoints):
        return TrainingFailReason.NOT_ENOUGH_POINTS
    if isinstance(exc, v1b.ResponseTooLarge):
        return TrainingFailReason.RESPONSE_TOO_LARGE
    if state is S.UPLOADING:
        return TrainingFailReason.UPLOAD_FAILED
    if state is S.CREATING_DATASET:
        return TrainingFailReason.DATASET_FAILED
    if isinstance(exc, v1b.InvalidRequest):
        return TrainingFailReason.INVALID_REQUEST
    return TrainingFailReason.SERVICE_ERROR


class TrainingService:
    """Runs every training job of the bot; its polls run on the bot's one polling loop."""

    def __init__(
        self,
        store: Store,
        accounts: AccountResolver,
        events: TrainingEvents,
        *,
        rounds: PollRounds,
        staging: Staging,
        on_model: Callable[[int], None] = lambda guild_id: None,
        concurrency: int = 1,
        poll_interval: float = 15.0,
        timeout: float = 6 * 3600.0,
        upload_batch: int = 5,
        upload_attempts: int = 3,
        retry_delay: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._events = events
        self._rounds = rounds
        self._staging = staging
        self._on_model = on_model
        self.concurrency = concurrency
        self._poll_interval = poll_interval
        self._timeout = timeout
        self._upload_batch = upload_batch
        self._upload_attempts = upload_attempts
        self._retry_delay = retry_delay
        self._clock = clock
        self._guild_locks: KeyedLocks[int] = KeyedLocks()
        # Jobs this process moved into a state itself; any other job in creating_dataset or
        # submitting was interrupted there and is recovered cautiously.
        self._fresh: set[tuple[int, TrainingState]] = set()
        self._first_seen: dict[int, tuple[float, float]] = {}
        self._tasks = Background(log, "training job step")

    # Lifecycle

    async def start(self) -> None:
        """Resume every unfinished job and start the polling loop."""
        resumed = 0
        for training in await self._store.trainings.list_active():
            if training.state in PRE_TRAINING:
                self._spawn(self._advance(training.id))
                resumed += 1
        self._rounds.every(ROUND, self._poll_interval, self._poll_round)
        log.info("training service started: %d job(s) resumed before training", resumed)

    async def stop(self) -> None:
        """Stop polling and the running steps (each persisted step stays done)."""
        await self._rounds.cancel(ROUND)
        await self._tasks.cancel()
        await self._emit(self._events.close)
        log.info("training service stopped")

    # Requests

    async def taken_names(self, guild_id: int) -> list[str]:
        """Names a new model may not use: trained models and unfinished jobs of the guild."""
        models = await self._store.models.for_guild(guild_id)
        active = await self._active(guild_id)
        return [
            *(m.display_name for m in models),
            *(m.model_name for m in models),
            *(t.name for t in active),
        ]

    async def check_capacity(self, guild_id: int) -> None:
        """Refuse when the guild already runs its limit of trainings."""
        if len(await self._active(guild_id)) >= self.concurrency:
            raise UserFacingError("train.busy", count=self.concurrency)

    async def datasets(self, guild_id: int) -> list[Dataset]:
        """The datasets of the guild's current account."""
        session = await self._accounts.session_for(guild_id)
        return await session.list_datasets()

    async def _check_datasets(self, guild_id: int, dataset_ids: tuple[int, ...]) -> None:
        """Refuse dataset ids the guild's account does not have."""
        known = {d.id for d in await self.datasets(guild_id)}
        missing = [str(i) for i in dataset_ids if i not in known]
        if missing:
            raise UserFacingError("train.unknown_datasets", ids=", ".join(missing))

    async def create(self, request: TrainingRequest) -> Training:
        """Persist a job, stage its images and start it; raises UserFacingError on refusal."""
        if request.dataset_ids:
            await self._check_datasets(request.guild_id, request.dataset_ids)
        async with self._guild_locks.hold(request.guild_id):
            await self.check_capacity(request.guild_id)
            name = check_model_name(request.name, await self.taken_names(request.guild_id))
            # Every step runs on the account current now, even if the guild changes it later.
            bound = await self._accounts.acquire(request.guild_id)
            try:
                training = await self._store.trainings.create(
                    guild_id=request.guild_id,
                    channel_id=request.channel_id,
                    user_id=request.user_id,
                    name=name,
                    main_body=request.main_body,
                    base_model=request.base_model or "",
                    trigger_word=request.trigger_word,
                    description=request.description,
                    nsfw=request.nsfw,
                    account_id=bound.account_id,
                )
            finally:
                await self._accounts.release(bound)
            try:
                staged = await self._staging.write(training.id, list(request.images))
                updated = await self._store.trainings.update(
                    training.id, pending_images=staged, dataset_ids=request.dataset_ids
                )
            except (OSError, StoreUnavailable) as exc:
                # Without its images the job cannot run: end it now so it frees the slot.
                log.warning("training %s: images not saved (%s)", training.id, exc)
                await self._abandon(training.id)
                if isinstance(exc, StoreUnavailable):
                    raise
                raise UserFacingError("train.images_not_saved") from exc
            assert updated is not None
            training = updated
        log.info("training %s created in guild %s", training.id, training.guild_id)
        message_id = await self._emit(self._events.training_created, training)
        if message_id:
            try:
                training = (
                    await self._store.trainings.update(training.id, progress_message_id=message_id)
                    or training
                )
            except StoreUnavailable as exc:
                # The job runs anyway; its progress message is just not edited.
                log.warning("training %s: progress message id not stored (%s)", training.id, exc)
        self._spawn(self._advance(training.id))
        return training

    async def _abandon(self, training_id: int) -> None:
        """Fail a job whose images could not be saved; retried in the background if need be."""

        async def fail() -> None:
            await self._store.trainings.set_state(
                training_id, S.FAILED, (S.UPLOADING,), error=TrainingFailReason.IMAGES_NOT_SAVED
            )
            await self._staging.remove(training_id)

        try:
            await fail()
        except StoreUnavailable:
            # The slot stays taken (the store still says 'uploading') until this is stored.
            self._spawn(until_stored(fail, what=f"the failure of training {training_id}"))

    def remaining(self, training: Training) -> float | None:
        """Estimated seconds left, from the progress rate seen since polling began."""
        first = self._first_seen.get(training.id)
        if first is None or training.progress <= first[1]:
            return None
        elapsed = self._clock() - first[0]
        return elapsed * (1.0 - training.progress) / (training.progress - first[1])

    # Steps before training

    async def _advance(self, training_id: int) -> None:
        training = await until_stored(
            lambda: self._store.trainings.get(training_id),
            what=f"the reading of training {training_id}",
        )
        steps = {
            S.UPLOADING: self._upload,
            S.CREATING_DATASET: self._create_dataset,
            S.SUBMITTING: self._submit,
        }
        while training is not None and training.state in steps:
            state, current = training.state, training
            try:
                training = await steps[state](current)
            except StepFailed as exc:
                await self._fail(current, exc.reason, exc.detail)
                return
            except (v1b.V1bError, NoAccount, AccountUnreadable) as exc:
                log.warning("training %s failed while %s: %s", training_id, state, exc)
                detail = getattr(exc, "message", "")
                await self._fail(current, failure_reason(state, exc), detail)
                return
            except StoreUnavailable as exc:
                # Only a read gets here, before the step acted (what a step did at the service
                # is stored where it happens, retried): the step can simply run again.
                log.warning(
                    "training %s: database unavailable while %s: %s", training_id, state, exc
                )
                await asyncio.sleep(self._retry_delay)
        if training is not None and training.state is S.TRAINING:
            self._rounds.wake(ROUND)

    async def _upload(self, training: Training) -> Training | None:
        pending = list(training.pending_images)
        uploaded = list(training.uploaded_urls)
        if not pending and not uploaded and not training.dataset_ids:
            raise StepFailed(TrainingFailReason.STAGING_LOST)
        session = await self._session(training) if pending else None
        while pending:
            batch = pending[: self._upload_batch]
            files = await self._staging.read(training.id, batch)
            if files is None:
                raise StepFailed(TrainingFailReason.STAGING_LOST)
            assert session is not None
            uploaded += await self._upload_files(session, files)
            pending = pending[len(batch) :]
            # URLs and the remaining files are written together: a resumed job never skips one.
            await until_stored(
                functools.partial(
                    self._store.trainings.update,
                    training.id,
                    uploaded_urls=uploaded,
                    pending_images=pending,
                ),
                what=f"the uploads of training {training.id}",
            )
            log.debug("training %s: %d image(s) uploaded", training.id, len(uploaded))
        following = S.CREATING_DATASET if uploaded else S.SUBMITTING
        return await self._move(training, following, (S.UPLOADING,))

    async def _upload_files(
        self, session: AccountSession, files: list[tuple[str, bytes, str]]
    ) -> list[str]:
        for attempt in range(1, self._upload_attempts + 1):
            try:
                urls = await session.upload_images(files)
            except v1b.ServiceError:
                # A repeated upload only leaves an unused copy at the service: safe to retry.
                if attempt == self._upload_attempts:
                    raise
                await asyncio.sleep(self._retry_delay * attempt)
                continue
            if len(urls) != len(files):
                raise v1b.ServiceError("upload_imgs", "the service returned too few URLs")
            return urls
        raise AssertionError("unreachable")

    async def _create_dataset(self, training: Training) -> Training | None:
        session = await self._session(training)
        name = dataset_name(training)
        dataset_id = None
        if (training.id, S.CREATING_DATASET) not in self._fresh:
            dataset_id = await self._find_dataset(session, name)
        if dataset_id is None:
            try:
                dataset_id = await session.create_dataset(
                    name, list(training.uploaded_urls), training.description
                )
            except v1b.ServiceError:
                # The request may have been carried out before the answer was lost.
                dataset_id = await self._find_dataset(session, name)
                if dataset_id is None:
                    raise
        created = str(dataset_id)
        await until_stored(
            lambda: self._store.datasets.add(
                guild_id=training.guild_id,
                dataset_id=created,
                name=name,
                image_count=len(training.uploaded_urls),
                created_by=training.user_id,
            ),
            what=f"the dataset of training {training.id}",
        )
        log.info("training %s: dataset %s ready", training.id, dataset_id)
        return await self._move(
            training,
            S.SUBMITTING,
            (S.CREATING_DATASET,),
            dataset_ids=[*training.dataset_ids, dataset_id],
        )

    async def _find_dataset(self, session: AccountSession, name: str) -> int | None:
        try:
            datasets = await session.list_datasets()
        except v1b.ServiceError:
            log.warning("could not list datasets while looking for %r", name)
            return None
        return next((d.id for d in datasets if d.name == name), None)

    async def _submit(self, training: Training) -> Training | None:
        if (training.id, S.SUBMITTING) not in self._fresh:
            raise StepFailed(TrainingFailReason.SUBMIT_UNCERTAIN)
        session = await self._session(training)
        self._fresh.discard((training.id, S.SUBMITTING))  # from here on it may reach the service
        params = TrainParams(
            name=training.name,
            description=training.description,
            base_model=training.base_model or None,
            trigger_word=training.trigger_word,
            main_body=training.main_body,
            nsfw=training.nsfw,
            dataset=[int(d) for d in training.dataset_ids],
        )
        task_id = await session.submit_training(params)
        log.info("training %s submitted as service task %s", training.id, task_id)
        return await self._move(
            training,
            S.TRAINING,
            (S.SUBMITTING,),
            service_task_id=task_id,
            progress=0.0,
            last_progress_at=self._clock(),
        )

    async def _move(
        self,
        training: Training,
        state: TrainingState,
        from_states: tuple[TrainingState, ...],
        **fields: Any,
    ) -> Training | None:
        self._fresh.add((training.id, state))
        # What the service did (dataset, submission) must be stored before the job goes on.
        moved = await until_stored(
            lambda: self._store.trainings.set_state(training.id, state, from_states, **fields),
            what=f"training {training.id} moving to {state}",
        )
        if moved is None:
            self._fresh.discard((training.id, state))
        return moved

    # Polling

    async def _poll_round(self) -> None:
        # Run by the bot's polling loop every poll interval, and at once when a job starts.
        try:
            await self.poll_once()
        except StoreUnavailable as exc:
            log.warning("training poll round skipped: %s", exc)
        except Exception:
            log.exception("training poll round failed")

    async def poll_once(self) -> None:
        """Ask the service about every job in training, one guild account at a time each."""
        by_guild: defaultdict[int, list[Training]] = defaultdict(list)
        for training in await self._store.trainings.list_active():
            if training.state is S.TRAINING:
                by_guild[training.guild_id].append(training)
        await asyncio.gather(*(self._poll_guild(jobs) for jobs in by_guild.values()))

    async def _poll_guild(self, trainings: list[Training]) -> None:
        for training in trainings:
            if self._clock() - training.created_at > self._timeout:
                await self._fail(training, TrainingFailReason.TIMEOUT)
                continue
            try:
                session = await self._session(training)
                assert training.service_task_id is not None
                progress = await session.train_progress(training.service_task_id)
            except v1b.ServiceError as exc:
                log.warning("training %s: progress unavailable: %s", training.id, exc)
                continue
            except (v1b.V1bError, NoAccount, AccountUnreadable) as exc:
                reason = failure_reason(S.TRAINING, exc)
                if isinstance(exc, v1b.InvalidRequest):
                    reason = TrainingFailReason.TRAINING_FAILED
                await self._fail(training, reason, getattr(exc, "message", ""))
                continue
            await self._record(training, progress)

    async def _record(self, training: Training, progress: TrainProgress) -> None:
        if progress.failed:
            await self._fail(training, TrainingFailReason.TRAINING_FAILED, progress.error_msg)
            return
        if progress.done:
            await self._finish(training, progress)
            return
        now = self._clock()
        self._first_seen.setdefault(training.id, (now, progress.training_progress))
        if progress.training_progress == training.progress:
            return
        try:
            updated = await self._store.trainings.update(
                training.id, progress=progress.training_progress, last_progress_at=now
            )
        except StoreUnavailable as exc:
            log.debug("training %s: progress not recorded (%s)", training.id, exc)
            return  # recorded at a later poll
        if updated is not None:
            await self._emit(self._events.training_progress, updated, self.remaining(updated))

    async def _finish(self, training: Training, progress: TrainProgress) -> None:
        # The service renames the model ("my model" -> "my_model"): use its name.
        model_name = progress.model_name or training.name
        await until_stored(
            lambda: self._store.models.add(
                guild_id=training.guild_id,
                model_name=model_name,
                display_name=training.name,
                trigger_word=training.trigger_word,
                trained_by=training.user_id,
                training_id=training.id,
            ),
            what=f"the model of training {training.id}",
        )
        done = await until_stored(
            lambda: self._store.trainings.set_state(
                training.id, S.DONE, (S.TRAINING,), model_name=model_name, progress=1.0
            ),
            what=f"the end of training {training.id}",
        )
        if done is None:
            return
        self._on_model(training.guild_id)
        self._forget(training.id)
        await self._staging.remove(training.id)
        await self._accounts.finished_with(training.account_id)
        log.info("training %s done: model %s", training.id, model_name)
        await self._emit(self._events.training_done, done)

    async def _fail(self, training: Training, reason: TrainingFailReason, detail: str = "") -> None:
        failed = await until_stored(
            lambda: self._store.trainings.set_state(
                training.id, S.FAILED, (*PRE_TRAINING, S.TRAINING), error=reason
            ),
            what=f"the failure of training {training.id}",
        )
        self._forget(training.id)
        await self._staging.remove(training.id)
        if failed is None:
            return
        await self._accounts.finished_with(training.account_id)
        log.info("training %s failed: %s", training.id, reason)
        await self._emit(self._events.training_failed, failed, detail[:300])

    # Helpers

    async def _session(self, training: Training) -> AccountSession:
        return await self._accounts.session_for_account(training.guild_id, training.account_id)

    async def _active(self, guild_id: int) -> list[Training]:
        return [t for t in await self._store.trainings.list_active() if t.guild_id == guild_id]

    def _forget(self, training_id: int) -> None:
        self._first_seen.pop(training_id, None)
        self._fresh = {key for key in self._fresh if key[0] != training_id}

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(coro)

    @staticmethod
    async def _emit(callback: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        try:
            return await callback(*args)
        except Exception:
            log.exception("training event %s failed", getattr(callback, "__name__", callback))
            return None
