"""The Discord side of the job layer: status messages, result delivery and result actions."""

from bot.discord_jobs.events import DiscordJobEvents
from bot.discord_jobs.requests import GenerationOptions, limits_for, resolve_options

__all__ = ["DiscordJobEvents", "GenerationOptions", "limits_for", "resolve_options"]
