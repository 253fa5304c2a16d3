"""/gallery: the results people chose to share (🌐 Share under a result), newest first; admins take them down.

Off by default ([gallery] public = false): then only a signed-in admin sees it, to look over what was shared.
"""

from __future__ import annotations

import logging

from aiohttp import web

from engine.service.keys import REPOSITORY, SETTINGS
from engine.service.web.guard import PageError
from engine.service.web.history import MEDIA_TYPES
from engine.service.web.render import SESSION, page

log = logging.getLogger(__name__)


def _visible(request: web.Request) -> bool:
    return request.app[SETTINGS].gallery.public or request.get(SESSION) is not None


async def gallery_page(request: web.Request) -> web.StreamResponse:
    """GET /gallery: one page of shared results."""
    if not _visible(request):
        raise PageError(404, "There is no gallery on this engine.")
    size = request.app[SETTINGS].gallery.page_size
    try:
        number = max(1, min(10_000, int(request.query.get("page", "1"))))
    except ValueError:
        number = 1
    entries = await request.app[REPOSITORY].gallery(size + 1, (number - 1) * size)
    context = {
        "title": "Gallery",
        "entries": entries[:size],
        "page_number": number,
        "newer": f"?page={number - 1}" if number > 1 else None,
        "older": f"?page={number + 1}" if len(entries) > size else None,
        "media_types": MEDIA_TYPES,
        "notice": "Removed from the gallery." if request.query.get("done") == "removed" else None,
    }
    return page(request, "gallery.html", context)


async def gallery_media(request: web.Request) -> web.StreamResponse:
    """GET /gallery/{id}/media: a shared result's animation (only while it is in the gallery)."""
    if not _visible(request):
        raise PageError(404, "There is no gallery on this engine.")
    job_id = request.match_info["id"]
    repository = request.app[REPOSITORY]
    entry = await repository.gallery_entry(job_id)
    found = await repository.result(job_id) if entry is not None and not entry.removed else None
    if found is None:
        raise PageError(404, "That result isn't in the gallery.")
    data, fmt = found
    return web.Response(
        body=data,
        content_type=MEDIA_TYPES.get(fmt, "application/octet-stream"),
        headers={"Cache-Control": "public, max-age=300" if request.app[SETTINGS].gallery.public else "private"},
    )


async def remove_from_gallery(request: web.Request) -> web.StreamResponse:
    """POST /admin/gallery/{id}/remove: take a result down (it can't be shared again)."""
    job_id = request.match_info["id"]
    if not await request.app[REPOSITORY].remove_from_gallery(job_id):
        raise PageError(404, "That result isn't in the gallery.")
    log.info("job %s taken down from the gallery", job_id)
    raise web.HTTPSeeOther("/gallery?done=removed")
