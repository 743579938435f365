"""Settings of the v1b emulator: service behaviour and injectable faults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EnvelopeMode = Literal["spec", "always", "never"]


class FaultSettings(BaseModel):
    """Faults injected into /api/v1b answers; every field may change while the server runs."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    # Half of these answer HTTP 200 with {"code":500}, the other half HTTP 500 with the same body.
    error_rate: float = Field(0.0, ge=0.0, le=1.0)
    # Answered with HTTP 500/502/503 and an HTML body, like a failing proxy.
    http_error_rate: float = Field(0.0, ge=0.0, le=1.0)
    latency: float = Field(0.0, ge=0.0)
    latency_spike_rate: float = Field(0.0, ge=0.0, le=1.0)
    latency_spike: float = Field(2.0, ge=0.0)
    # An account may hold at most this many unfinished tasks; the next task_submit answers 603.
    busy_above: int | None = Field(None, ge=0)
    malformed_rate: float = Field(0.0, ge=0.0, le=1.0)
    # "spec": the shape the spec shows per endpoint; "always": enveloped; "never": bare payloads.
    envelope: EnvelopeMode = "spec"
    task_failure_rate: float = Field(0.0, ge=0.0, le=1.0)
    batch_enabled: bool = True
    token_ttl: float = Field(3600.0, gt=0.0)
    # A finished task lists this many image URLs beyond the images it asked for (all served).
    extra_images: int = Field(0, ge=0, le=100_000)
    # Instead of their answer, these endpoints ("image": result images) stream a body of this
    # many bytes, made up while it is sent (never held in memory); 0 turns it off.
    huge_body_bytes: int = Field(0, ge=0)
    huge_body_endpoints: list[str] = Field(default_factory=lambda: ["task_result", "task_results"])


class EmulatorSettings(BaseModel):
    """Accounts, timings and models of an emulated Miaohua service."""

    model_config = ConfigDict(validate_assignment=True)

    accounts: dict[str, str] = Field(
        default_factory=lambda: {"demo@miaohua.local": "demo-password"}
    )
    non_business: set[str] = Field(default_factory=set)
    points: int = Field(100_000, ge=0)
    # Generations run at once, service-wide (one shared FIFO queue); read when the server starts.
    workers: int = Field(4, ge=1)
    generation_time: float = Field(3.0, ge=0.0)
    generation_noise: float = Field(0.2, ge=0.0, lt=1.0)
    training_time: float = Field(60.0, ge=0.0)
    models: list[str] = Field(
        default_factory=lambda: ["Artist_V0.1.3", "Artist v0.3.0 Beta", "Watercolor_V1"]
    )
    public_base_url: str | None = None
    # Seed of the emulator's randomness (task ids, random seeds, faults); None: new each start.
    seed: int | None = 0
    # Where the emulator keeps accounts, datasets, trainings and tasks across restarts.
    state_file: Path | None = None
    # Benchmark only: append "TASK_ID FINISH_EPOCH" to this file as each task is submitted
    # (its planned finish), for the oracle polling the benchmark compares strategies with.
    finish_log: Path | None = None
    faults: FaultSettings = Field(default_factory=FaultSettings)
