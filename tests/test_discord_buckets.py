"""One Discord request in flight per rate-limit bucket."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
import pytest

from bot.discord_buckets import BucketGates, bucket_key, one_request_per_bucket


class Recorder:
    """A stand-in for discord.py's request: records what is in flight, answers when told."""

    def __init__(self) -> None:
        self.in_flight: list[str] = []
        self.started: list[str] = []
        self.answers: dict[str, asyncio.Future[str]] = {}

    async def request(self, name: str) -> str:
        self.in_flight.append(name)
        self.started.append(name)
        future = self.answers[name] = asyncio.get_running_loop().create_future()
        try:
            return await future
        finally:
            self.in_flight.remove(name)

    def answer(self, name: str) -> None:
        self.answers[name].set_result(f"answer {name}")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_bucket_has_one_request_in_flight_and_the_others_follow_in_order() -> None:
    gates, calls = BucketGates(), Recorder()
    jobs = [
        asyncio.create_task(gates.run(bucket, lambda n=name: calls.request(n)))
        for bucket, name in [("a", "a1"), ("a", "a2"), ("b", "b1"), ("a", "a3")]
    ]
    await settle()
    assert calls.in_flight == ["a1", "b1"]  # another bucket is not held up
    assert len(gates) == 2
    calls.answer("a1")
    await settle()
    assert calls.in_flight == ["b1", "a2"]
    calls.answer("a2")
    calls.answer("b1")
    await settle()
    calls.answer("a3")
    assert await asyncio.gather(*jobs) == ["answer a1", "answer a2", "answer b1", "answer a3"]
    assert calls.started == ["a1", "b1", "a2", "a3"]
    assert len(gates) == 0  # nothing kept for buckets with nothing in flight


async def test_a_failed_or_cancelled_request_frees_its_bucket() -> None:
    gates, calls = BucketGates(), Recorder()
    first = asyncio.create_task(gates.run("a", lambda: calls.request("a1")))
    waiting = asyncio.create_task(gates.run("a", lambda: calls.request("a2")))
    third = asyncio.create_task(gates.run("a", lambda: calls.request("a3")))
    await settle()
    waiting.cancel()  # cancelled while waiting: it never makes its request
    calls.answers["a1"].set_exception(ConnectionResetError("reset by peer"))
    with pytest.raises(ConnectionResetError):
        await first
    await settle()
    assert calls.started == ["a1", "a3"]
    calls.answer("a3")
    assert await third == "answer a3"
    assert waiting.cancelled()
    assert len(gates) == 0


async def test_discord_pys_requests_wait_for_their_bucket_only() -> None:
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    in_flight: list[int] = []
    most: dict[int, int] = {}  # channel -> most of its requests in flight at once

    async def request(route: discord.http.Route, **kwargs: Any) -> Any:
        channel = route.channel_id
        assert channel is not None
        in_flight.append(channel)
        most[channel] = max(most.get(channel, 0), in_flight.count(channel))
        await asyncio.sleep(0.01)
        in_flight.remove(channel)
        return {"id": "1"}

    http.request = request  # type: ignore[method-assign]
    gates = one_request_per_bucket(http)

    async def edit(channel: int, message: int) -> None:
        with discord.http.handle_message_parameters("hi") as params:
            await http.edit_message(channel, message, params=params)

    started = asyncio.create_task(
        asyncio.wait_for(
            asyncio.gather(
                *(
                    edit(channel, message)
                    for channel, message in [(1, 10), (1, 11), (1, 12), (2, 13)]
                )
            ),
            1,
        )
    )
    await asyncio.sleep(0.005)
    assert sorted(in_flight) == [1, 2]  # channel 2's edit did not wait for channel 1's
    assert len(gates) == 2
    await started
    assert most == {1: 1, 2: 1}
    assert len(gates) == 0


def test_the_bucket_is_the_route_and_its_major_parameter() -> None:
    path = "/channels/{channel_id}/messages/{message_id}"
    one = discord.http.Route("PATCH", path, channel_id=1, message_id=10)
    same = discord.http.Route("PATCH", path, channel_id=1, message_id=11)
    other = discord.http.Route("PATCH", path, channel_id=2, message_id=10)
    delete = discord.http.Route("DELETE", path, channel_id=1, message_id=10)
    assert bucket_key(one) == bucket_key(same)
    assert len({bucket_key(one), bucket_key(other), bucket_key(delete)}) == 3
