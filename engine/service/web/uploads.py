"""Files posted from the dashboard: streamed to disk under a size cap, only after the form's CSRF token checks out."""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path

from aiohttp import BodyPartReader, web

from engine.service.web.guard import PageError, check_csrf
from engine.service.web.sessions import CSRF_FIELD

FIELD_BYTES = 8192  # a text field of an upload form at most
CHUNK = 1 << 20


async def read_upload(
    request: web.Request, *, file_field: str, max_bytes: int, folder: Path, suffix: str
) -> tuple[dict[str, str], Path | None]:
    """The form's text fields and the file, written as a dot-file in `folder` (the caller moves or removes it).

    The CSRF token must come first (the dashboard's forms put it first): nothing is written before it checks.
    """
    if request.content_type != "multipart/form-data":
        await check_csrf(request)  # a forged request hears about its token, not about its encoding
        raise PageError(400, "Send the file with the page's upload form.")
    try:
        return await _read(request, file_field, max_bytes, folder, suffix)
    except (ValueError, UnicodeDecodeError, AssertionError) as exc:  # a multipart body that isn't one
        raise PageError(400, f"That upload couldn't be read ({type(exc).__name__}); try again.") from None


async def _read(
    request: web.Request, file_field: str, max_bytes: int, folder: Path, suffix: str
) -> tuple[dict[str, str], Path | None]:
    reader = await request.multipart()
    fields: dict[str, str] = {}
    saved: Path | None = None
    checked = False
    try:
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise PageError(400, "That form has a part I can't read.")
            if not checked:
                token = (await _small(part)).decode("utf-8", "replace") if part.name == CSRF_FIELD else ""
                await check_csrf(request, token)
                checked = True
                continue
            if part.filename is None:
                fields[part.name or ""] = (await _small(part)).decode("utf-8", "replace").strip()
            elif part.name == file_field and saved is None and part.filename:
                saved = folder / f".upload-{secrets.token_hex(8)}{suffix}"
                fields[f"{file_field}.filename"] = part.filename[:200]
                await _save(part, saved, max_bytes)
            else:
                await part.release()
    except BaseException:
        if saved is not None:
            saved.unlink(missing_ok=True)
        raise
    if not checked:
        await check_csrf(request, "")
    return fields, saved


async def _small(part: BodyPartReader) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(FIELD_BYTES):
        data += chunk
        if len(data) > FIELD_BYTES:
            raise PageError(400, "A field of that form is too long.")
    return bytes(data)


async def _save(part: BodyPartReader, path: Path, max_bytes: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path, "xb") as out:
        while chunk := await part.read_chunk(CHUNK):
            written += len(chunk)
            if written > max_bytes:
                raise PageError(413, f"That file is larger than the {max_bytes / 1024 / 1024:.0f} MB limit.")
            out.write(chunk)
    if written == 0:
        with contextlib.suppress(OSError):
            path.unlink()
        raise PageError(400, "That file is empty.")
