"""Protocol-level fakes for tests: a loopback Discord for the real discord.py client."""

from tests.fakes.discord_server import FakeDiscord
from tests.fakes.interactions import FakeInteraction
from tests.fakes.recording import RecordedRequest

Interaction = FakeInteraction

__all__ = ["FakeDiscord", "FakeInteraction", "Interaction", "RecordedRequest"]
