"""Per-key cooldowns: each key waits out its own, and memory holds only live ones."""

from __future__ import annotations

from bot.cooldown import Cooldowns


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_key_waits_out_its_own_cooldown() -> None:
    clock = Clock()
    cooldowns: Cooldowns[str] = Cooldowns(60, clock=clock)
    assert cooldowns.try_start("ann") == 0
    clock.now += 20
    assert cooldowns.try_start("ann") == 40  # refused, cooldown not restarted
    assert cooldowns.try_start("bob") == 0
    clock.now += 40
    assert cooldowns.try_start("ann") == 0
    assert cooldowns.try_start("bob") == 20


def test_memory_holds_only_keys_still_cooling_down() -> None:
    clock = Clock()
    cooldowns: Cooldowns[int] = Cooldowns(60, clock=clock)
    for member in range(100_000):
        clock.now += 1
        assert cooldowns.try_start(member) == 0
    assert len(cooldowns) == 60
    clock.now += 60
    cooldowns.try_start(-1)
    assert len(cooldowns) == 1


def test_a_zero_cooldown_keeps_nothing() -> None:
    cooldowns: Cooldowns[int] = Cooldowns(0, clock=Clock())
    assert all(cooldowns.try_start(1) == 0 for _ in range(3))
    assert len(cooldowns) == 1
