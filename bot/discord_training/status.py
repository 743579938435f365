"""Lines about training jobs for `/status`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bot.display import in_code, shown
from bot.i18n import t
from bot.store.trainings import TrainingState
from bot.training.render import duration

if TYPE_CHECKING:
    from bot.app import MiaohuaBot

RECENT = 10


async def training_lines(
    bot: MiaohuaBot, guild_id: int, user_id: int | None, locale: str
) -> list[str]:
    """One line per recent training of the guild (only `user_id`'s when given), newest first."""
    now = time.time()
    lines = []
    for training in await bot.store.trainings.recent(guild_id, limit=RECENT * 3):
        if user_id is not None and training.user_id != user_id:
            continue
        state = t(f"train.state.{training.state.value}", locale)
        line = f"🧪 #{training.id} **{shown(training.name)}** · {state}"
        if training.state is TrainingState.TRAINING:
            line += f" {training.progress * 100:.0f}%"
        if training.active:
            line += f" · {duration(now - training.created_at)}"
        elif training.state is TrainingState.DONE and training.model_name:
            line += f" · `{in_code(training.model_name)}`"
        if training.progress_message_id:
            url = (
                f"https://discord.com/channels/{guild_id}/{training.channel_id}/"
                f"{training.progress_message_id}"
            )
            line += f" · [{t('train.status.link', locale)}]({url})"
        lines.append(line)
        if len(lines) >= RECENT:
            break
    return lines
