"""Where a meme's image or a GIF is on Discord (an attachment, an embed, a recent message) and fetching it, bounded."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import discord

from bot.core import messages
from bot.core.errors import BotError
from engine.units import human_bytes

MAX_DOWNLOAD = 25 * 1024 * 1024  # far above any meme; the engine refuses past its own, smaller limit
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
CLIP_TYPES = ("image/gif", "image/webp", "video/")  # what /remix and /lora tune learn a motion from
CLIP_SUFFIXES = (".gif", ".mp4", ".webm", ".webp", ".mov", ".m4v")
RECENT_MESSAGES = 50  # how far back in a channel /remix looks for a GIF when none is attached
DOWNLOAD_TIMEOUT_S = 30


@dataclass(frozen=True)
class Image:
    """One image to animate: where to fetch it and what to call it."""

    url: str
    filename: str
    size: int | None = None  # bytes, when Discord said


def is_image(attachment: discord.Attachment) -> bool:
    """An attachment that looks like a picture by its content type, or by its name when Discord gave none."""
    if attachment.content_type:
        return attachment.content_type.split(";")[0].strip().lower().startswith("image/")
    return attachment.filename.lower().endswith(IMAGE_SUFFIXES)


def is_clip(attachment: discord.Attachment) -> bool:
    """An attachment that looks like a GIF or video by its content type, or by its name when Discord gave none."""
    if attachment.content_type:
        return attachment.content_type.split(";")[0].strip().lower().startswith(CLIP_TYPES)
    return attachment.filename.lower().endswith(CLIP_SUFFIXES)


def of_attachment(attachment: discord.Attachment) -> Image:
    """The image of an attachment already known to be one."""
    return Image(attachment.url, attachment.filename or "meme", attachment.size)


def in_message(message: discord.Message) -> Image | None:
    """The first image of a message: an image attachment, else an image embed (a pasted link)."""
    for attachment in message.attachments:
        if is_image(attachment):
            return of_attachment(attachment)
    for embed in message.embeds:
        for media in (embed.image, embed.thumbnail):
            url = media.proxy_url or media.url
            if url:
                return Image(url, _name_of(url))
    return None


def clip_in_message(message: discord.Message) -> Image | None:
    """The first GIF or video of a message: an attachment, else a GIF embed (Tenor and GIPHY send an MP4)."""
    for attachment in message.attachments:
        if is_clip(attachment):
            return of_attachment(attachment)
    for embed in message.embeds:
        for media in (embed.video, embed.image):
            url = media.proxy_url or media.url
            if url and (embed.type == "gifv" or urlsplit(url).path.lower().endswith(CLIP_SUFFIXES)):
                return Image(url, _name_of(url))
    return None


async def latest_clip(channel: discord.abc.Messageable) -> tuple[Image, discord.Message] | None:
    """The newest GIF or video among the channel's last RECENT_MESSAGES messages, with its message; None if none.

    Other people's attachments are visible only with the Message Content intent (or with Read Message History
    missing, not at all): then this finds nothing and the caller asks for an attachment.
    """
    try:
        async for message in channel.history(limit=RECENT_MESSAGES):
            found = clip_in_message(message)
            if found is not None:
                return found, message
    except discord.HTTPException:  # no Read Message History here
        return None
    return None


def _name_of(url: str) -> str:
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    return name[:100] or "meme"


async def download(session: aiohttp.ClientSession, image: Image) -> bytes:
    """The image's bytes; BotError with a readable sentence when it can't be had."""
    if image.size is not None and image.size > MAX_DOWNLOAD:
        raise BotError(f"That file is too large (the limit is {human_bytes(MAX_DOWNLOAD)}).")
    try:
        async with session.get(image.url, timeout=aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S)) as response:
            if response.status != 200:
                raise BotError(messages.IMAGE_GONE if response.status in (403, 404, 410) else messages.DOWNLOAD_FAILED)
            data = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                data += chunk
                if len(data) > MAX_DOWNLOAD:
                    raise BotError(f"That file is too large (the limit is {human_bytes(MAX_DOWNLOAD)}).")
            return bytes(data)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BotError(messages.DOWNLOAD_FAILED) from exc


def session() -> aiohttp.ClientSession:
    """The bot's own session for image downloads (discord.py's is private)."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S))


async def close(http: aiohttp.ClientSession | None) -> None:
    """Close a download session, quietly."""
    if http is not None:
        with contextlib.suppress(Exception):
            await http.close()
