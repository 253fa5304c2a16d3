"""Which image a message holds, and its bytes: photos, image documents, stickers and animations."""

from __future__ import annotations

from dataclasses import dataclass

from telegram import Bot, Message


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


async def download(bot: Bot, source: Source) -> bytes:
    """The file's bytes through getFile and the file URL."""
    file = await bot.get_file(source.file_id)
    return bytes(await file.download_as_bytearray())
