"""The delivery micro-benchmark (bench/delivery_cost.py) measures the bot's real delivery path."""

from __future__ import annotations

from bench.delivery_cost import COUNTS, measure

POST = "POST /channels/{channel_id}/messages"


async def test_each_result_is_posted_once_with_its_images_and_buttons() -> None:
    measured = await measure(10)
    assert measured.requests == {POST: 10}  # no 🔁 reaction: `discord.rerun_reaction` is off
    assert [len(body["attachments"]) for body in measured.bodies] == [*COUNTS, *COUNTS]
    for task_id, body in enumerate(measured.bodies, start=1):
        assert (body["content"], body["nonce"]) == ("<@3002>", f"mh{task_id}d")
        custom_ids = [c["custom_id"] for row in body["components"] for c in row["components"]]
        assert custom_ids[:3] == [f"mh:rerun:{task_id}", f"mh:remix:{task_id}", f"mh:del:{task_id}"]
    assert measured.cpu_ms_per_result > 0
