"""`/imagine`, `/img2img` and the "Use as init image" message command."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _T
from discord.ext import commands

from bot.autocomplete import model_autocomplete, size_autocomplete, style_autocomplete
from bot.discord_jobs import render
from bot.discord_jobs.requests import (
    GenerationOptions,
    guild_limits,
    request_from_options,
    resolve_options,
)
from bot.errors import UserFacingError
from bot.i18n import t
from bot.images import CheckedImage, check_image
from bot.jobs import GenerationRequest, Limits
from bot.offload import offload
from bot.preferences import set_aside_notes
from bot.replies import answer_publicly, defer, defer_unless_answered, reply
from bot.store import MemberPreferences
from bot.styles import find_style
from bot.text import NEGATIVE_PROMPT_MAX
from bot.types import BotInteraction
from bot.ui import BoundModal, unique_custom_id

if TYPE_CHECKING:
    from bot.app import MiaohuaBot

PROMPT_MAX = 2000  # Discord-side cap; the guild's prompt_length limit is enforced at admission
SEED_MAX = 2**31 - 1
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# The modal's submission reaches the cog typed for any client; the cog's services come
# from `self.bot`, so its helpers need nothing of the interaction's client.
AnyInteraction = discord.Interaction[discord.Client]


def _is_image(attachment: discord.Attachment) -> bool:
    if attachment.content_type:
        return attachment.content_type.startswith("image/")
    return attachment.filename.lower().endswith(_IMAGE_SUFFIXES)


# Options shared by /imagine and /img2img (size is described differently by each).
OPTION_NAMES = {
    name: _T(name)
    for name in ("prompt", "negative_prompt", "model", "size", "count", "scale", "seed", "style")
}
OPTION_HELP = {
    "prompt": _T("What to draw"),
    "negative_prompt": _T("What to avoid"),
    "model": _T("Model (default: the server's)"),
    "count": _T("Number of images"),
    "scale": _T("Guidance scale: how closely to follow the prompt"),
    "seed": _T("Seed (-1 or empty: random)"),
    "style": _T("A server style wrapped around your prompt (see /style list)"),
}


class InitImageModal(BoundModal):
    """Asks for the prompt of an img2img from a message's image."""

    def __init__(
        self,
        cog: GenerateCog,
        opener: BotInteraction,
        attachment: discord.Attachment,
        locale: str,
    ) -> None:
        super().__init__(
            opener,
            title=t("generate.modal.title", locale),
            custom_id=unique_custom_id("generate:init"),
        )
        self.cog = cog
        self.attachment = attachment
        self.prompt: discord.ui.TextInput[InitImageModal] = discord.ui.TextInput(
            label=t("generate.modal.prompt", locale),
            style=discord.TextStyle.paragraph,
            max_length=PROMPT_MAX,
            custom_id="prompt",
        )
        self.negative: discord.ui.TextInput[InitImageModal] = discord.ui.TextInput(
            label=t("generate.modal.negative_prompt", locale),
            style=discord.TextStyle.paragraph,
            max_length=NEGATIVE_PROMPT_MAX,
            required=False,
            custom_id="negative_prompt",
        )
        self.add_item(self.prompt)
        self.add_item(self.negative)

    async def on_submit(self, interaction: discord.Interaction[discord.Client], /) -> None:
        await self.cog.img2img_from(
            interaction,
            self.attachment,
            prompt=self.prompt.value,
            negative_prompt=self.negative.value or None,
        )


@app_commands.guild_only()
class GenerateCog(commands.Cog):
    """Image generation commands."""

    def __init__(self, bot: MiaohuaBot) -> None:
        self.bot = bot
        self.init_image_menu = app_commands.ContextMenu(
            name=_T("Use as init image"), callback=self.use_as_init_image
        )
        self.init_image_menu.guild_only = True

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.init_image_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.init_image_menu.name, type=discord.AppCommandType.message)

    @app_commands.command(name=_T("imagine"), description=_T("Generate images from a prompt"))
    @app_commands.rename(**OPTION_NAMES)
    @app_commands.describe(**OPTION_HELP, size=_T("Image size"))
    @app_commands.autocomplete(
        model=model_autocomplete, size=size_autocomplete, style=style_autocomplete
    )
    async def imagine(
        self,
        interaction: BotInteraction,
        prompt: app_commands.Range[str, 1, PROMPT_MAX],
        negative_prompt: app_commands.Range[str, 0, NEGATIVE_PROMPT_MAX] | None = None,
        model: str | None = None,
        size: str | None = None,
        count: int | None = None,
        scale: int | None = None,
        seed: app_commands.Range[int, -1, SEED_MAX] | None = None,
        style: str | None = None,
    ) -> None:
        # Usually answered at once: one request to Discord, not a deferral and a follow-up.
        defer_unless_answered(interaction)
        assert interaction.guild_id is not None
        chosen = await find_style(self.bot.store.styles, interaction.guild_id, style)
        opts = await resolve_options(
            self.bot,
            interaction.guild_id,
            model=model,
            size=size,
            count=count,
            scale=scale,
            seed=seed,
            negative_prompt=negative_prompt,
            style=chosen,
            preferences=await self._preferences(interaction),
        )
        await self._enqueue(interaction, opts, prompt)

    @app_commands.command(name=_T("img2img"), description=_T("Generate images from an image"))
    @app_commands.rename(image=_T("image"), **OPTION_NAMES)
    @app_commands.describe(
        image=_T("The starting image (PNG, JPEG or WEBP)"),
        size=_T("Image size (default: closest to the image's shape)"),
        **OPTION_HELP,
    )
    @app_commands.autocomplete(
        model=model_autocomplete, size=size_autocomplete, style=style_autocomplete
    )
    async def img2img(
        self,
        interaction: BotInteraction,
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, PROMPT_MAX],
        negative_prompt: app_commands.Range[str, 0, NEGATIVE_PROMPT_MAX] | None = None,
        model: str | None = None,
        size: str | None = None,
        count: int | None = None,
        scale: int | None = None,
        seed: app_commands.Range[int, -1, SEED_MAX] | None = None,
        style: str | None = None,
    ) -> None:
        await self.img2img_from(
            interaction,
            image,
            prompt=prompt,
            negative_prompt=negative_prompt,
            model=model,
            size=size,
            count=count,
            scale=scale,
            seed=seed,
            style=style,
        )

    async def use_as_init_image(
        self, interaction: BotInteraction, message: discord.Message
    ) -> None:
        """Message command: ask for a prompt, then run img2img on the message's first image."""
        locale = self.bot.locale_for(interaction)
        attachment = next((a for a in message.attachments if _is_image(a)), None)
        if attachment is None:
            await reply(interaction, t("generate.no_image", locale))
            return
        await interaction.response.send_modal(InitImageModal(self, interaction, attachment, locale))

    async def img2img_from(
        self,
        interaction: AnyInteraction,
        attachment: discord.Attachment,
        *,
        prompt: str,
        negative_prompt: str | None = None,
        model: str | None = None,
        size: str | None = None,
        count: int | None = None,
        scale: int | None = None,
        seed: int | None = None,
        style: str | None = None,
    ) -> None:
        """Check a Discord attachment, upload it to the guild's account and queue an img2img."""
        await defer(interaction)
        assert interaction.guild_id is not None
        # Before reading the image: an unknown style name needs no download to be refused.
        chosen = await find_style(self.bot.store.styles, interaction.guild_id, style)
        limits = self.bot.settings.limits
        data = await self._read(attachment, limits.attachment_bytes)
        checked = await offload(
            check_image,
            data,
            attachment.filename,
            max_bytes=limits.attachment_bytes,
            max_pixels=limits.attachment_pixels,
        )
        opts = await resolve_options(
            self.bot,
            interaction.guild_id,
            model=model,
            size=size,
            count=count,
            scale=scale,
            seed=seed,
            negative_prompt=negative_prompt,
            aspect=checked.aspect,
            style=chosen,
            preferences=await self._preferences(interaction),
        )
        await self._enqueue(interaction, opts, prompt, init_image=checked)

    async def _read(self, attachment: discord.Attachment, max_bytes: int) -> bytes:
        if attachment.size > max_bytes:  # refuse before downloading it
            raise UserFacingError(
                "image.too_large",
                name=attachment.filename,
                size_mb=f"{attachment.size / 2**20:.1f}",
                limit_mb=f"{max_bytes / 2**20:.1f}",
            )
        try:
            return await attachment.read()
        except discord.HTTPException:
            raise UserFacingError(
                "generate.attachment_unreadable", name=attachment.filename
            ) from None

    async def _preferences(self, interaction: AnyInteraction) -> MemberPreferences:
        assert interaction.guild_id is not None
        return await self.bot.store.preferences.get(interaction.guild_id, interaction.user.id)

    async def _limits(self, interaction: AnyInteraction) -> Limits:
        assert interaction.guild_id is not None
        return await guild_limits(self.bot, interaction.guild_id)

    def _request(
        self, interaction: AnyInteraction, opts: GenerationOptions, prompt: str
    ) -> GenerationRequest:
        assert interaction.guild_id is not None and interaction.channel_id is not None
        return request_from_options(
            opts,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            locale=self.bot.locale_for(interaction),
            prompt=prompt.strip(),
            interaction_id=interaction.id,
        )

    async def _enqueue(
        self,
        interaction: AnyInteraction,
        opts: GenerationOptions,
        prompt: str,
        init_image: CheckedImage | None = None,
    ) -> None:
        request = self._request(interaction, opts, prompt)
        limits = await self._limits(interaction)
        generation = self.bot.generation
        status = self.bot.delivery.status
        # The task's status, posted in its channel, is the command's own answer when the
        # result goes there too: one message instead of a private note and a public post.
        in_public = request.delivery != "dm" and not interaction.response.is_done()
        with status.answering(interaction.id) if in_public else contextlib.nullcontext():
            if init_image is None:
                task = await generation.enqueue(request, limits=limits)
            else:
                task = await generation.enqueue_with_image(request, init_image, limits=limits)
        # None: it went to the service at once
        position = generation.queue_position(task.id, task.guild_id)
        locale = self.bot.locale_for(interaction)
        notes = set_aside_notes(opts.set_aside, locale)
        if in_public:
            text = render.accepted_status_text(task, position)
            message_id = None
            try:
                message_id = await answer_publicly(interaction, text)
            finally:
                status.answered(task, message_id, text)  # None: its status is posted instead
            if message_id is not None:
                if notes:
                    await reply(interaction, "\n".join(notes))
                return
        await reply(interaction, "\n".join([render.accepted_text(task, position, locale), *notes]))


async def setup(bot: MiaohuaBot) -> None:
    """Load the cog."""
    await bot.add_cog(GenerateCog(bot))
