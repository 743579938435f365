"""The processes run on uvloop, and fall back to asyncio's loop without it."""

from __future__ import annotations

import asyncio
import builtins
from typing import Any

import pytest
import uvloop

from bot import event_loop


async def _loop_type() -> type:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_run_uses_uvloop_when_installed() -> None:
    assert event_loop.run(_loop_type()) is uvloop.Loop
    assert event_loop.loop_name().startswith("uvloop ")


def test_run_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_uvloop(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "uvloop":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    assert event_loop.run(_loop_type()) is not uvloop.Loop
    assert event_loop.loop_name() == "asyncio"
