"""The per-guild read cache of the settings and trained-model repositories."""

from __future__ import annotations

import pytest

from bot.store.guild_cache import GuildCache


def test_the_least_recently_read_guild_is_dropped_first() -> None:
    cache: GuildCache[str] = GuildCache(size=2)
    cache.keep(1, "one")
    cache.keep(2, "two")
    assert cache.get(1) == "one"  # read: now the most recent
    cache.keep(3, "three")
    assert (cache.get(1), cache.get(2), cache.get(3)) == ("one", None, "three")


def test_a_read_that_began_before_a_change_is_not_kept() -> None:
    cache: GuildCache[str] = GuildCache()
    began = cache.read_began()
    cache.forget(1)  # a write to another guild counts as well: the mark is global
    cache.keep_read(7, "read before the change", began)
    assert cache.get(7) is None
    cache.keep_read(7, "read after it", cache.read_began())
    assert cache.get(7) == "read after it"


def test_no_copy_survives_a_write_even_a_failed_one() -> None:
    cache: GuildCache[str] = GuildCache()
    cache.keep(1, "old")
    with pytest.raises(RuntimeError), cache.changing(1):
        began = cache.read_began()
        raise RuntimeError("write failed")
    assert cache.get(1) is None
    cache.keep_read(1, "read during the write", began)
    assert cache.get(1) is None
    # An empty value is a value: a guild without trained models is cached too.
    cache.keep(2, "")
    assert cache.get(2) == ""
