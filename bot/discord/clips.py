"""Jobs made from a GIF or video (/remix, /lora tune): the one attached, or else the newest in the channel."""

from __future__ import annotations

import discord

from bot.core import messages
from bot.core.options import Request
from bot.discord import delivery, media
from bot.discord.runtime import poster_of, runtime_of, say


async def start_on_clip(
    interaction: discord.Interaction, attachment: discord.Attachment | None, request: Request
) -> None:
    """Queue `request` on the attached clip, else on the channel's newest; one private sentence when there is none."""
    if attachment is not None and not media.is_clip(attachment):
        await say(interaction, messages.DISCORD_NOT_A_CLIP)
        return
    await interaction.response.defer(thinking=True)  # within Discord's 3 s, before the history and the download
    source: tuple[int, int] | None = None
    if attachment is not None:
        clip, poster = media.of_attachment(attachment), poster_of(interaction.user)
    else:
        channel = interaction.channel
        latest = await media.latest_clip(channel) if isinstance(channel, discord.abc.Messageable) else None
        if latest is None:
            await delivery.refuse_after_defer(interaction, messages.DISCORD_NO_CLIP_FOUND)
            return
        clip, message = latest
        source, poster = (message.channel.id, message.id), poster_of(message.author)
    req = delivery.Request(
        image=clip, request=request, key=f"dc:{interaction.id}", user=interaction.user,
        guild_id=interaction.guild_id, channel_id=interaction.channel_id or 0, poster=poster,
        upload_limit=interaction.filesize_limit, source=source,
    )  # fmt: skip
    await delivery.animate_interaction(runtime_of(interaction), interaction.client, interaction, req)
