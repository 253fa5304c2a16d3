"""Which image or clip a message holds, and its bytes: photos, image documents, stickers, animations, videos."""

from __future__ import annotations

from dataclasses import dataclass

from telegram import Bot, Message
from telegram.error import BadRequest

from bot.core import messages
from bot.core.errors import BotError


@dataclass(frozen=True)
class Source:
    """An image to animate: the file to download and the message the result should reply to."""

    file_id: str
    filename: str
    message_id: int


def image_source(message: Message | None) -> Source | None:
    """The image in `message`, or None; animations and video stickers give a still the engine can read."""
    if message is None:
        return None
    mid = message.message_id
    if message.photo:
        return Source(message.photo[-1].file_id, "photo.jpg", mid)  # the largest size comes last
    if message.animation is not None:  # checked before `document`: Telegram sets both for animations
        animation = message.animation
        if animation.mime_type == "image/gif":  # the engine takes a GIF's first frame itself
            return Source(animation.file_id, animation.file_name or "animation.gif", mid)
        # MP4 animations are not an engine format; their thumbnail is a JPEG of the first frame
        thumb = animation.thumbnail
        return Source(thumb.file_id, "animation.jpg", mid) if thumb is not None else None
    if message.sticker is not None:
        sticker = message.sticker
        if not (sticker.is_animated or sticker.is_video):
            return Source(sticker.file_id, "sticker.webp", mid)
        thumb = sticker.thumbnail
        return Source(thumb.file_id, "sticker.webp", mid) if thumb is not None else None
    if message.document is not None:  # any document: the engine names what it can't read ("PDF")
        document = message.document
        return Source(document.file_id, document.file_name or "document", mid)
    return None


CLIP_TYPES = ("image/gif", "image/webp", "video/")  # what /remix and /lora tune take as a document
CLIP_SUFFIXES = (".gif", ".mp4", ".webm", ".webp", ".mov", ".m4v")


def clip_source(message: Message | None) -> Source | None:
    """The GIF or video in `message` (its own file, never a still of it), or None."""
    if message is None:
        return None
    mid = message.message_id
    if message.animation is not None:  # a GIF: Telegram serves it as an MP4 (or the GIF when sent as a file)
        animation = message.animation
        return Source(animation.file_id, animation.file_name or "animation.mp4", mid)
    if message.video is not None:
        return Source(message.video.file_id, message.video.file_name or "video.mp4", mid)
    if message.video_note is not None:
        return Source(message.video_note.file_id, "video_note.mp4", mid)
    if message.sticker is not None and message.sticker.is_video:
        return Source(message.sticker.file_id, "sticker.webm", mid)
    document = message.document
    if document is not None:
        mime, name = (document.mime_type or "").lower(), (document.file_name or "").lower()
        if mime.startswith(CLIP_TYPES) or name.endswith(CLIP_SUFFIXES):
            return Source(document.file_id, document.file_name or "clip", mid)
    return None


async def download(bot: Bot, source: Source) -> bytes:
    """The file's bytes through getFile and the file URL; BotError when Telegram won't hand a bot the file."""
    try:
        file = await bot.get_file(source.file_id)
    except BadRequest as exc:
        if "too big" in exc.message.lower():  # the Bot API serves bots files up to 20 MB
            raise BotError(messages.TELEGRAM_FILE_TOO_BIG) from exc
        raise
    return bytes(await file.download_as_bytearray())
