"""The process's garbage-collector settings: rare young collections, start-up frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bot import gc_tuning


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


def test_tune_collects_the_young_generation_every_hundred_thousand_allocations(restored):
    gc_tuning.tune()
    assert gc.get_threshold() == gc_tuning.THRESHOLDS
    assert gc_tuning.THRESHOLDS[0] == 100_000


def test_what_is_alive_when_ready_is_left_out_of_later_collections(restored):
    kept = [[n] for n in range(1000)]  # tracked containers, alive at "ready"
    frozen = gc_tuning.freeze_startup_objects()
    assert frozen == gc.get_freeze_count() >= len(kept)
    tracked = {id(obj) for obj in gc.get_objects()}
    assert not any(id(obj) in tracked for obj in kept)  # no generation holds them any more
