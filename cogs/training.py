"""`/train`, `/datasets`, `/models`: training custom models with the guild's account."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _T
from discord.ext import commands

from bot.autocomplete import base_model_autocomplete, main_body_autocomplete
from bot.discord_training import SampleButton
from bot.display import in_code, in_code_or_none, render
from bot.errors import UserFacingError
from bot.i18n import t
from bot.images import CheckedImage
from bot.offload import offload
from bot.replies import defer, reply
from bot.text import DESCRIPTION_MAX, TRIGGER_WORD_MAX, clean_prompt
from bot.training import TrainingRequest
from bot.training.inputs import check_archive, check_uploads, parse_dataset_ids, require_enough
from bot.types import BotInteraction

if TYPE_CHECKING:
    from bot.app import MiaohuaBot

EMBED_TEXT_MAX = 4000
IMAGE_OPTIONS = tuple(f"image{i}" for i in range(1, 11))


async def is_trainer(interaction: BotInteraction) -> bool:
    """Whether the member has Manage Server or the guild's trainer role."""
    if interaction.permissions.manage_guild:
        return True
    assert interaction.guild_id is not None
    settings = await interaction.client.store.settings.get(interaction.guild_id)
    role_id = settings.trainer_role_id
    user = interaction.user
    return bool(
        role_id and isinstance(user, discord.Member) and any(r.id == role_id for r in user.roles)
    )


async def ensure_trainer(interaction: BotInteraction) -> None:
    """Members with Manage Server, or with the guild's trainer role, may train."""
    if not await is_trainer(interaction):
        raise UserFacingError("train.not_allowed")


def channel_is_nsfw(interaction: BotInteraction) -> bool:
    """Whether the interaction's channel is age-restricted."""
    is_nsfw = getattr(interaction.channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


def chunk_lines(lines: list[str], limit: int = EMBED_TEXT_MAX) -> list[str]:
    """Join lines into texts no longer than limit each."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        if current and len(current) + len(line) + 1 > limit:
            chunks.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line[:limit]
    if current:
        chunks.append(current)
    return chunks


class TrainingCog(commands.Cog):
    """Model training commands."""

    def __init__(self, bot: MiaohuaBot) -> None:
        self.bot = bot

    @app_commands.command(name=_T("train"), description=_T("Train a model on your images"))
    @app_commands.guild_only()
    @app_commands.rename(
        name=_T("name"),
        **{opt: _T(opt) for opt in IMAGE_OPTIONS},
        archive=_T("archive"),
        main_body=_T("main_body"),
        base_model=_T("base_model"),
        trigger_word=_T("trigger_word"),
        description=_T("description"),
        nsfw=_T("nsfw"),
        datasets=_T("datasets"),
    )
    @app_commands.describe(
        name=_T("Name of the new model (2-40 letters, digits, spaces, _ or -)"),
        **{opt: _T("A training image") for opt in IMAGE_OPTIONS},
        archive=_T("A ZIP archive of training images"),
        main_body=_T("What the images show"),
        base_model=_T("Model to start from (the service chooses when left empty)"),
        trigger_word=_T("Word that calls up the trained style in prompts"),
        description=_T("Description of the model"),
        nsfw=_T("Mark the training set NSFW (age-restricted channels only)"),
        datasets=_T("Ids of existing datasets, comma-separated"),
    )
    @app_commands.autocomplete(main_body=main_body_autocomplete, base_model=base_model_autocomplete)
    async def train(
        self,
        interaction: BotInteraction,
        name: app_commands.Range[str, 1, 100],
        image1: discord.Attachment | None = None,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        image5: discord.Attachment | None = None,
        image6: discord.Attachment | None = None,
        image7: discord.Attachment | None = None,
        image8: discord.Attachment | None = None,
        image9: discord.Attachment | None = None,
        image10: discord.Attachment | None = None,
        archive: discord.Attachment | None = None,
        main_body: str | None = None,
        base_model: str | None = None,
        trigger_word: app_commands.Range[str, 1, TRIGGER_WORD_MAX] | None = None,
        description: app_commands.Range[str, 1, DESCRIPTION_MAX] | None = None,
        nsfw: bool = False,
        datasets: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        guild_id = interaction.guild_id
        assert guild_id is not None
        locale = self.bot.locale_for(interaction)
        await ensure_trainer(interaction)
        if nsfw and not channel_is_nsfw(interaction):
            raise UserFacingError("train.nsfw_channel")
        dataset_ids = parse_dataset_ids(datasets)
        await defer(interaction)
        body, base = await self.bot.forms.training_choices(guild_id, main_body, base_model)
        attachments = [a for a in (image1, image2, image3, image4, image5, image6, image7,
                                   image8, image9, image10) if a is not None]  # fmt: skip
        images, skipped = await self._read_images(attachments, archive)
        require_enough(len(images), bool(dataset_ids), self.bot.settings.limits)
        request = TrainingRequest(
            guild_id=guild_id,
            channel_id=interaction.channel_id or 0,
            user_id=interaction.user.id,
            name=name,
            main_body=body,
            base_model=base,
            trigger_word=clean_prompt(
                trigger_word, required=False, max_length=TRIGGER_WORD_MAX, field="trigger_word"
            ),
            description=clean_prompt(
                description, required=False, max_length=DESCRIPTION_MAX, field="description"
            ),
            nsfw=nsfw,
            images=tuple(images),
            dataset_ids=tuple(dataset_ids),
        )
        training = await self.bot.training.create(request)
        text = render(
            "train.accepted", locale, id=training.id, name=training.name, count=len(images)
        )
        if skipped:
            names = ", ".join(f"`{in_code(s)}`" for s in skipped[:10])
            text += "\n" + render(
                "train.skipped", locale, trusted={"names": names}, count=len(skipped)
            )
        await reply(interaction, text)

    async def _read_images(
        self, attachments: list[discord.Attachment], archive: discord.Attachment | None
    ) -> tuple[list[CheckedImage], list[str]]:
        limits = self.bot.settings.limits
        for attachment in attachments:
            if attachment.size > limits.attachment_bytes:  # refuse before downloading
                raise UserFacingError(
                    "image.too_large",
                    name=attachment.filename,
                    size_mb=f"{attachment.size / 1048576:.1f}",
                    limit_mb=f"{limits.attachment_bytes / 1048576:.1f}",
                )
        uploads = [(a.filename, await a.read()) for a in attachments]
        images = await offload(check_uploads, uploads, limits)
        skipped: list[str] = []
        if archive is not None:
            if archive.size > limits.archive_bytes:
                raise UserFacingError(
                    "archive.too_large", limit_mb=f"{limits.archive_bytes / 1048576:.1f}"
                )
            found = await offload(check_archive, await archive.read(), limits)
            images += found.images
            skipped = found.skipped
        return images, skipped

    @app_commands.command(name=_T("datasets"), description=_T("List this server's datasets"))
    @app_commands.guild_only()
    async def datasets(self, interaction: BotInteraction) -> None:
        guild_id = interaction.guild_id
        assert guild_id is not None
        locale = self.bot.locale_for(interaction)
        # The account's training material: listed to those who may train with it.
        if not await is_trainer(interaction):
            raise UserFacingError("datasets.not_allowed")
        await defer(interaction)
        found = await self.bot.training.datasets(guild_id)
        if not found:
            await reply(interaction, t("datasets.none", locale))
            return
        lines = [
            render("datasets.line", locale, id=d.id, name=d.name, count=d.images_num or 0)
            for d in found
        ]
        title = t("datasets.title", locale, count=len(found))
        for chunk in chunk_lines(lines)[:10]:  # Discord allows 10 embeds per message
            await reply(interaction, embed=discord.Embed(title=title, description=chunk))

    @app_commands.command(name=_T("models"), description=_T("List this server's trained models"))
    @app_commands.guild_only()
    async def models(self, interaction: BotInteraction) -> None:
        guild_id = interaction.guild_id
        assert guild_id is not None
        locale = self.bot.locale_for(interaction)
        trained = await self.bot.store.models.for_guild(guild_id)
        if not trained:
            await reply(interaction, t("models.none", locale))
            return
        lines = [
            render(
                "models.line",
                locale,
                trusted={
                    "user": f"<@{m.trained_by}>" if m.trained_by else "-",
                    "trigger": in_code_or_none(m.trigger_word, locale),
                },
                name=m.display_name,
                model=m.model_name,
            )
            for m in trained
        ]
        title = t("models.title", locale, count=len(trained))
        await reply(
            interaction, embed=discord.Embed(title=title, description=chunk_lines(lines)[0])
        )


async def setup(bot: MiaohuaBot) -> None:
    """Load the cog and the persistent sample button."""
    bot.add_dynamic_items(SampleButton)
    await bot.add_cog(TrainingCog(bot))


async def teardown(bot: MiaohuaBot) -> None:
    """Forget the persistent sample button."""
    bot.remove_dynamic_items(SampleButton)
