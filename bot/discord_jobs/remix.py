"""Remixing a result: the member's edits to a finished task, checked as `/imagine` checks them
and queued as its child.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot import options
from bot.discord_jobs.requests import guild_limits, request_from_task
from bot.errors import UserFacingError
from bot.store import Task
from bot.styles import restyle_task
from bot.text import NEGATIVE_PROMPT_MAX, clean_prompt, clean_text

if TYPE_CHECKING:
    from bot.app import MiaohuaBot

RANDOM_SEED = -1
# After NFKC (which also turns full-width digits and minus signs into ASCII ones).
_WHOLE_NUMBER = re.compile(r"-?[0-9]+")


@dataclass(frozen=True, slots=True)
class RemixDraft:
    """The remix form's values as the member typed them.

    Kept as typed (not parsed) so a refused remix can open the form again with them.
    """

    prompt: str
    negative_prompt: str
    count: str
    seed: str

    @classmethod
    def of(cls, task: Task) -> RemixDraft:
        """The form's starting values: the member's own words and the parent's count and seed.

        The seed is the one the service actually used, so editing only the prompt shows what
        the edit changed; clearing it asks for a random one.
        """
        seed = task.seed_used if task.seed_used is not None else task.seed
        return cls(
            prompt=task.member_prompt or task.prompt,
            negative_prompt=task.negative_prompt,
            count=str(task.count),
            seed="" if seed == RANDOM_SEED else str(seed),
        )


def _whole_number(typed: str, key: str) -> int:
    """A whole number typed in a text field, or a refusal that quotes what was typed."""
    text = clean_text(typed)
    if not _WHOLE_NUMBER.fullmatch(text):
        raise UserFacingError(key, value=typed.strip()[:40])
    return int(text)


def parse_seed(typed: str) -> int:
    """The seed field: empty means random, like -1."""
    if not clean_text(typed):
        return RANDOM_SEED
    return _whole_number(typed, "remix.seed_not_number")


async def remix(
    bot: MiaohuaBot, task: Task, draft: RemixDraft, *, user_id: int, locale: str | None
) -> Task:
    """Queue `task` again with the member's edits, charged to `user_id`, through the same
    admission as a command; everything not in the form (model, size, scale, init image,
    style) is the parent's.
    """
    words = clean_prompt(draft.prompt)
    negative = clean_prompt(
        draft.negative_prompt,
        required=False,
        max_length=NEGATIVE_PROMPT_MAX,
        field="negative_prompt",
    )
    count = _whole_number(draft.count, "remix.count_not_number")
    seed = parse_seed(draft.seed)
    form = await bot.forms.generation_form(task.guild_id)
    options.check_count(form, count)
    options.check_seed(form, seed)
    prompt, member_prompt = await restyle_task(bot.store.styles, task, words)
    request = dataclasses.replace(
        request_from_task(task, user_id=user_id, channel_id=task.channel_id, locale=locale),
        prompt=prompt,
        negative_prompt=negative,
        count=count,
        seed=seed,
        origin="remix",
        member_prompt=member_prompt,
    )
    return await bot.generation.enqueue(request, limits=await guild_limits(bot, task.guild_id))
