"""Who may list `/datasets`, and what everyone else is told, through the real client."""

from __future__ import annotations

from tests.conftest import ADMIN_A, CH_A, GUILD_A, MEMBER_A, TRAINER_ROLE_A
from tests.helpers import answer_text, is_ephemeral

TRAINER = 3010


async def _datasets(harness, user: int, locale: str = "en-US") -> tuple[str, bool]:
    ix = await harness.fake.slash(
        "datasets", user_id=user, guild_id=GUILD_A, channel_id=CH_A, locale=locale
    )
    return await answer_text(ix), is_ephemeral(ix)


async def test_members_are_told_who_may_list_datasets_in_their_language(harness):
    harness.emu.state.add_dataset("a@guild.test", "ink-set", "", ["http://x/1.png"])
    text, private = await _datasets(harness, MEMBER_A)
    assert private
    assert "list this server's datasets" in text and "Manage Server or the trainer role" in text
    assert "train models" not in text and "ink-set" not in text
    text, _ = await _datasets(harness, MEMBER_A, locale="zh-CN")
    assert "查看本服务器的数据集" in text and "训练模型" not in text
    assert harness.emu.state.calls["dataset_all"] == 0  # refused before asking the service


async def test_admins_and_the_trainer_role_may_list_datasets(harness):
    harness.emu.state.add_dataset("a@guild.test", "ink-set", "", ["http://x/1.png"])
    await harness.bot.store.settings.update(GUILD_A, trainer_role_id=TRAINER_ROLE_A)
    harness.fake.add_member(GUILD_A, TRAINER, "trainer", roles=[TRAINER_ROLE_A])
    for user in (ADMIN_A, TRAINER):
        text, _ = await _datasets(harness, user)
        assert "Datasets (1)" in text and "ink-set" in text
