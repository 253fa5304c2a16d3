"""Bot endpoint: a requester shares a finished animation or remix to the gallery."""

from __future__ import annotations

from aiohttp import web

from engine.service.api.handlers.jobs import find_job, read_requester
from engine.service.api.middleware import Refused, json_model
from engine.service.api.models import ShareView
from engine.service.keys import REPOSITORY, SETTINGS
from storage.records import SHAREABLE_KINDS, JobRecord

NOT_REQUESTER = "Only the person who asked for this animation can share it."
GALLERY_OFF = "This engine's gallery is off, so results can't be shared."
REMOVED = "An admin took this animation out of the gallery, so it can't be shared again."


async def share_job(request: web.Request) -> web.Response:
    """POST /v1/jobs/{id}/share: its requester (and only they, whatever the token) puts the result in the gallery.

    Sharing again answers the first share; an admin's take-down is final.
    """
    job = await find_job(request)
    who = await read_requester(request)
    if (who.platform, who.user_id) != (job.platform, job.user_id):
        raise Refused(403, "not_requester", NOT_REQUESTER)
    if not request.app[SETTINGS].gallery.public:
        raise Refused(409, "gallery_off", GALLERY_OFF)
    if not job.shareable:
        raise Refused(409, "not_shareable", unshareable(job))
    entry = await request.app[REPOSITORY].share(job.id)
    if entry is None:  # deleted between the two reads
        raise Refused(404, "job_not_found", "There is no job with that id.")
    if entry.removed:
        raise Refused(409, "removed", REMOVED)
    return json_model(ShareView(job_id=entry.job_id, shared=True, shared_at=entry.shared_at))


def unshareable(job: JobRecord) -> str:
    """Why this job can't go to the gallery, in one sentence."""
    if job.kind not in SHAREABLE_KINDS:
        return "Only an animation or a remix can be shared, not a checkpoint."
    if job.status != "done":
        return "Only a finished animation can be shared."
    return "That animation is no longer kept, so it can't be shared."
