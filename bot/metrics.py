"""The bot's Prometheus metrics: one registry per bot, and the objects that fill it.

Every label takes its values from a small fixed set (endpoint names, outcome words, HTTP
statuses, failure reason codes): never a guild, user or channel id, a prompt or an error
text, so the number of series stays bounded however many members use the bot.

The domain layers do not import this module: the v1b client reports each request through
a plain callback, and the job and training services are observed through wrappers around
their event sinks (`MeteredJobEvents`, `MeteredTrainingEvents`).
"""

from __future__ import annotations

import time
import types
from collections.abc import Callable

import aiohttp
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.jobs import FailReason, GenerationRequest, JobEvents, Posted, Refused
from bot.store import Task, TaskState
from bot.store.trainings import Training
from bot.training.service import TrainingEvents

__all__ = [
    "CONTENT_TYPE_LATEST",
    "MeteredJobEvents",
    "MeteredTrainingEvents",
    "Metrics",
    "discord_http_trace",
]

# Seconds: v1b calls take milliseconds to tens of seconds (timeouts).
_CALL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Seconds: a result reaches the member seconds to many minutes after it was asked for.
_LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
_POLL_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144)
# Seconds a sleeper woke late: a healthy loop is well under 10 ms.
_LOOP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# A task's in-memory state, as the generation service counts it.
InFlight = Callable[[], dict[str, int]]


class Metrics:
    """The metric objects of one bot, in a registry of its own (not the global one), so
    several bots in one process (tests) never share or clash over series."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, CPU, fds
        PlatformCollector(registry=registry)
        self.tasks_accepted = Counter(
            "miaohua_tasks_accepted_total", "Generation tasks accepted", registry=registry
        )
        self.tasks_finished = Counter(
            "miaohua_tasks_finished_total",
            "Generation tasks that ended: delivered, failed or cancelled",
            ["outcome"],
            registry=registry,
        )
        self.tasks_failed = Counter(
            "miaohua_tasks_failed_total",
            "Generation tasks that failed, by reason code",
            ["reason"],
            registry=registry,
        )
        self.tasks_refused = Counter(
            "miaohua_requests_refused_total",
            "Generation requests refused at admission, by reason code",
            ["reason"],
            registry=registry,
        )
        self.tasks_in_flight = Gauge(
            "miaohua_tasks",
            "Unfinished generation tasks held by the bot, by state",
            ["state"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "miaohua_queue_depth",
            "Generation tasks waiting to be submitted, all guilds together",
            registry=registry,
        )
        self.v1b_calls = Counter(
            "miaohua_v1b_requests_total",
            "HTTP requests to the Miaohua v1b service, by endpoint and result",
            ["endpoint", "result"],
            registry=registry,
        )
        self.v1b_latency = Histogram(
            "miaohua_v1b_request_duration_seconds",
            "Duration of HTTP requests to the Miaohua v1b service (each attempt)",
            ["endpoint"],
            buckets=_CALL_BUCKETS,
            registry=registry,
        )
        self.delivery_lag = Histogram(
            "miaohua_delivery_lag_seconds",
            "Time until a result was posted: since it was ready ('done') or since the "
            "request was accepted ('accepted')",
            ["since"],
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self.polls = Histogram(
            "miaohua_task_polls",
            "Result polls a submitted task took, observed when it ends",
            buckets=_POLL_BUCKETS,
            registry=registry,
        )
        self.discord_errors = Counter(
            "miaohua_discord_http_errors_total",
            "Discord REST answers with an error status (429s discord.py retried included), "
            "and requests that got no answer (status 'none')",
            ["status"],
            registry=registry,
        )
        self.discord_pacing_wait = Histogram(
            "miaohua_discord_pacing_wait_seconds",
            "Time a Discord request that had to wait spent waiting for the bot's share of "
            "Discord's global rate limit, by what it was for",
            ["priority"],
            buckets=_CALL_BUCKETS,
            registry=registry,
        )
        self.discord_waiting = Gauge(
            "miaohua_discord_requests_waiting",
            "Discord requests waiting for the bot's share of Discord's global rate limit",
            registry=registry,
        )
        self.trainings = Counter(
            "miaohua_trainings_total",
            "Training jobs, by outcome: started, done or failed",
            ["outcome"],
            registry=registry,
        )
        self.loop_lag = Histogram(
            "miaohua_event_loop_lag_seconds",
            "How late the event loop woke a periodic sleeper",
            buckets=_LOOP_BUCKETS,
            registry=registry,
        )
        self.gateway_connected = Gauge(
            "miaohua_gateway_connected",
            "1 while the Discord gateway connection is up and ready",
            registry=registry,
        )

    def watch_in_flight(self, counts: InFlight) -> None:
        """Read the task gauges from the generation service at each scrape (in memory)."""

        def reader(state: str) -> Callable[[], float]:
            return lambda: counts().get(state, 0)

        for state in ("queued", "running", "delivering"):
            self.tasks_in_flight.labels(state).set_function(reader(state))
        self.queue_depth.set_function(reader("queued"))

    def v1b_request(self, endpoint: str, result: str, seconds: float) -> None:
        """One v1b HTTP attempt ended (`result`: 'ok' or a short error class)."""
        self.v1b_calls.labels(endpoint, result).inc()
        self.v1b_latency.labels(endpoint).observe(seconds)

    def discord_answer(self, status: int | None) -> None:
        """A Discord REST request ended with `status` (None: no answer)."""
        if status is None:
            self.discord_errors.labels("none").inc()
        elif status >= 400:
            self.discord_errors.labels(str(status)).inc()

    def discord_paced(self, priority: str, seconds: float) -> None:
        """A Discord request waited `seconds` for the global budget (`priority`: what for)."""
        self.discord_pacing_wait.labels(priority).observe(seconds)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


_FAIL_REASONS = frozenset(FailReason)


def _reason(error: str | None) -> str:
    """A task's failure code as a label value: one of the known codes, or 'other'."""
    return error if error in _FAIL_REASONS else "other"


class MeteredJobEvents:
    """Passes every task event on to `inner`, counting the tasks' transitions on the way."""

    def __init__(
        self, inner: JobEvents, metrics: Metrics, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self._inner = inner
        self._metrics = metrics
        self._wall = wall_clock

    async def task_accepted(self, task: Task, position: int | None) -> None:
        self._metrics.tasks_accepted.inc()
        await self._inner.task_accepted(task, position)

    async def task_progress(self, task: Task, position: int | None, wait_time: int | None) -> None:
        await self._inner.task_progress(task, position, wait_time)

    async def task_done(self, task: Task) -> Posted | None:
        posted = await self._inner.task_done(task)
        # A delivered task posted again (its message was deleted) is no new delivery.
        if posted is not None and task.state == TaskState.DONE:
            now = self._wall()
            self._metrics.tasks_finished.labels("delivered").inc()
            if task.done_at is not None:
                self._metrics.delivery_lag.labels("done").observe(max(0.0, now - task.done_at))
            self._metrics.delivery_lag.labels("accepted").observe(max(0.0, now - task.created_at))
            self._metrics.polls.observe(task.poll_count)
        return posted

    async def task_failed(self, task: Task) -> None:
        self._metrics.tasks_finished.labels("failed").inc()
        self._metrics.tasks_failed.labels(_reason(task.error)).inc()
        if task.service_task_id is not None:  # it was polled
            self._metrics.polls.observe(task.poll_count)
        await self._inner.task_failed(task)

    async def task_cancelled(self, task: Task) -> None:
        self._metrics.tasks_finished.labels("cancelled").inc()
        await self._inner.task_cancelled(task)

    def request_refused(self, request: GenerationRequest, refusal: Refused) -> None:
        self._metrics.tasks_refused.labels(refusal.reason).inc()
        self._inner.request_refused(request, refusal)


class MeteredTrainingEvents:
    """Passes every training event on to `inner`, counting trainings by outcome."""

    def __init__(self, inner: TrainingEvents, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def training_created(self, training: Training) -> int | None:
        self._metrics.trainings.labels("started").inc()
        return await self._inner.training_created(training)

    async def training_progress(self, training: Training, remaining: float | None) -> None:
        await self._inner.training_progress(training, remaining)

    async def training_done(self, training: Training) -> None:
        self._metrics.trainings.labels("done").inc()
        await self._inner.training_done(training)

    async def training_failed(self, training: Training, detail: str) -> None:
        self._metrics.trainings.labels("failed").inc()
        await self._inner.training_failed(training, detail)

    async def close(self) -> None:
        await self._inner.close()


def discord_http_trace(metrics: Metrics) -> aiohttp.TraceConfig:
    """An aiohttp trace for discord.py's HTTP session counting Discord's error answers.

    At this level every answer is seen once, including the 429s discord.py waits out and
    retries by itself, whichever part of the bot made the request.
    """

    async def ended(
        session: aiohttp.ClientSession,
        context: types.SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        metrics.discord_answer(params.response.status)

    async def failed(
        session: aiohttp.ClientSession,
        context: types.SimpleNamespace,
        params: aiohttp.TraceRequestExceptionParams,
    ) -> None:
        metrics.discord_answer(None)

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(ended)
    trace.on_request_exception.append(failed)
    return trace
