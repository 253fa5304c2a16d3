"""Every route of the API in one table: the app's router and the OpenAPI spec are both built from it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel

from engine.service.api.handlers import admin, gallery, jobs, making, ops
from engine.service.api.handlers import events as sse
from engine.service.api.models import (
    ActiveCheckpoint,
    BanLifted,
    BanRequest,
    BanView,
    CheckpointList,
    ErrorBody,
    Health,
    JobAccepted,
    JobList,
    JobView,
    LimitsBody,
    QuotaView,
    RateLimited,
    Requester,
    ShareView,
    StatsView,
    TrainingRequest,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A response is a model (application/json) or a media type with a plain string schema.
Body = type[BaseModel] | str


@dataclass(frozen=True)
class Param:
    """A query or path parameter."""

    name: str
    where: str  # "path" or "query"
    schema: dict[str, object]
    description: str = ""


@dataclass(frozen=True)
class Route:
    """One operation: how it is routed, who may call it, what it takes and every answer it can give."""

    method: str
    path: str
    handler: Handler
    access: str  # "public", "bot" or "admin"
    responses: dict[int, tuple[str, Body]]
    body: Body | None = None
    params: tuple[Param, ...] = field(default=())
    tag: str = "jobs"


ID = Param("id", "path", {"type": "string", "pattern": "^[0-9a-f]{32}$"}, "the job id")
NAME_SCHEMA: dict[str, object] = {"type": "string", "pattern": "^[A-Za-z0-9_.:@-]{1,64}$"}
USER = (Param("platform", "path", NAME_SCHEMA), Param("user_id", "path", NAME_SCHEMA))
LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 100, "default": 10})
REQUESTER = (
    Param("platform", "query", NAME_SCHEMA, "the requester's platform (or in a JSON body)"),
    Param("user_id", "query", NAME_SCHEMA, "the requester's user id (or in a JSON body)"),
)
BAD = (400, ("The request is not valid; the message says what to change.", ErrorBody))
NOT_FOUND = (404, ("There is no such job.", ErrorBody))
NOT_JSON = (415, ("The body must be application/json.", ErrorBody))

ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/jobs",
        jobs.submit_job,
        "bot",
        body="multipart",
        responses={
            200: ("The same Idempotency-Key was used before: that job.", JobAccepted),
            202: ("Queued.", JobAccepted),
            400: ("The form, its options or the image are not valid.", ErrorBody),
            403: ("The user is banned.", ErrorBody),
            413: ("The upload or the image is too large.", ErrorBody),
            415: ("Not multipart/form-data, not an image, or an image format the engine doesn't read.", ErrorBody),
            409: ("The Idempotency-Key was used before by this user for a different request.", ErrorBody),
            429: ("Rate limited; Retry-After says when to try again.", RateLimited),
            503: (
                "The queue is full, or too many images are being decoded; Retry-After says when to retry.",
                ErrorBody,
            ),
        },
    ),  # fmt: skip
    Route(
        "GET",
        "/v1/jobs/{id}",
        jobs.get_job,
        "bot",
        params=(ID,),
        responses={
            200: ("The job.", JobView),
            NOT_FOUND[0]: NOT_FOUND[1],
        },
    ),  # fmt: skip
    Route(
        "GET",
        "/v1/jobs/{id}/events",
        sse.job_events,
        "bot",
        params=(ID,),
        responses={
            200: (
                "Server-Sent Events: `data: <JobView JSON>` on every change, closing after the final state.",
                "text/event-stream",
            ),
            NOT_FOUND[0]: NOT_FOUND[1],
        },
    ),  # fmt: skip
    Route(
        "GET",
        "/v1/jobs/{id}/result",
        jobs.job_result,
        "bot",
        params=(ID,),
        responses={
            200: ("The animation (image/gif, video/mp4 or image/webp).", "application/octet-stream"),
            404: ("No such job, or it has no result (yet).", ErrorBody),
            410: ("The result was deleted by the retention sweep.", ErrorBody),
        },
    ),  # fmt: skip
    Route(
        "DELETE",
        "/v1/jobs/{id}",
        jobs.cancel_job,
        "bot",
        params=(ID, *REQUESTER),
        body=Requester,
        responses={
            200: ("The job as it is now (cancelled, or already final).", JobView),
            BAD[0]: BAD[1],
            403: ("Only the requester or an admin may cancel.", ErrorBody),
            NOT_FOUND[0]: NOT_FOUND[1],
        },
    ),  # fmt: skip
    Route(
        "POST",
        "/v1/jobs/{id}/share",
        gallery.share_job,
        "bot",
        params=(ID, *REQUESTER),
        body=Requester,
        tag="gallery",
        responses={
            200: ("In the gallery (sharing again answers the first share).", ShareView),
            BAD[0]: BAD[1],
            403: ("Only the requester may share, whichever token is used.", ErrorBody),
            NOT_FOUND[0]: NOT_FOUND[1],
            409: (
                "The gallery is off on this engine (gallery_off), the job is not a done animation or remix with its "
                "result kept (not_shareable), or an admin took it down (removed).",
                ErrorBody,
            ),
        },
    ),  # fmt: skip
    Route(
        "GET",
        "/v1/users/{platform}/{user_id}/jobs",
        jobs.user_jobs,
        "bot",
        params=(*USER, LIMIT),
        tag="users",
        responses={200: ("Newest first.", JobList), BAD[0]: BAD[1]},
    ),  # fmt: skip
    Route(
        "GET",
        "/v1/users/{platform}/{user_id}/quota",
        jobs.user_quota,
        "bot",
        params=USER,
        tag="users",
        responses={200: ("What the user has left.", QuotaView), BAD[0]: BAD[1]},
    ),  # fmt: skip
    Route(
        "POST",
        "/v1/remixes",
        making.submit_remix,
        "bot",
        body="multipart",
        tag="making",
        responses={
            200: ("The same Idempotency-Key was used before: that job.", JobAccepted),
            202: ("Queued: the GIF's motion with the prompt's subject; follow it like any job.", JobAccepted),
            400: ("The form, its options or the clip are not valid.", ErrorBody),
            403: ("The user is banned.", ErrorBody),
            409: (
                "No GPU video backend on this engine (the message says how to set one up), or the "
                "Idempotency-Key was used before by this user for a different request.",
                ErrorBody,
            ),
            413: ("The upload is too large.", ErrorBody),
            415: ("Not multipart/form-data, or not a GIF or video the engine reads.", ErrorBody),
            429: ("Rate limited; Retry-After says when to try again.", RateLimited),
            503: ("The queue is full; Retry-After says when to retry.", ErrorBody),
        },
    ),  # fmt: skip
    Route(
        "POST",
        "/v1/admin/tunes",
        making.submit_tune,
        "admin",
        body="multipart",
        tag="making",
        responses={
            200: ("The same Idempotency-Key was used before: that job.", JobAccepted),
            202: ("Queued: a checkpoint tuned on the GIF; JobView.made names it once done.", JobAccepted),
            400: ("The form, its options or the clip are not valid.", ErrorBody),
            409: (
                "This admin already has a training job queued or running, the engine has no GPU video backend "
                "(the message says how to set one up), or the key was reused.",
                ErrorBody,
            ),
            413: ("The upload is too large.", ErrorBody),
            415: ("Not multipart/form-data, or not a GIF or video the engine reads.", ErrorBody),
            503: ("The queue is full; Retry-After says when to retry.", ErrorBody),
        },
    ),  # fmt: skip
    Route(
        "POST",
        "/v1/admin/trainings",
        making.submit_training,
        "admin",
        body=TrainingRequest,
        tag="making",
        responses={
            200: ("The same Idempotency-Key was used before: that job.", JobAccepted),
            202: ("Queued: a checkpoint trained on the dataset; JobView.made names it once done.", JobAccepted),
            BAD[0]: ("The request is not valid, or there is no such dataset.", ErrorBody),
            409: (
                "This admin already has a training job queued or running, the engine has no GPU video backend "
                "(the message says how to set one up), or the key was reused.",
                ErrorBody,
            ),
            NOT_JSON[0]: NOT_JSON[1],
            503: ("The queue is full; Retry-After says when to retry.", ErrorBody),
        },
    ),  # fmt: skip
    Route(
        "GET",
        "/v1/admin/checkpoints",
        admin.list_checkpoints,
        "admin",
        tag="admin",
        responses={200: ("The registry.", CheckpointList)},
    ),
    Route(
        "PUT",
        "/v1/admin/checkpoints/active",
        admin.set_active_checkpoint,
        "admin",
        body=ActiveCheckpoint,
        tag="admin",
        responses={200: ("Applies from the next job on.", CheckpointList), BAD[0]: BAD[1], NOT_JSON[0]: NOT_JSON[1]},
    ),  # fmt: skip
    Route("GET", "/v1/admin/stats", admin.get_stats, "admin", tag="admin", responses={200: ("Counts.", StatsView)}),
    Route(
        "POST",
        "/v1/admin/bans",
        admin.add_ban,
        "admin",
        body=BanRequest,
        tag="admin",
        responses={200: ("The ban in force.", BanView), BAD[0]: BAD[1], NOT_JSON[0]: NOT_JSON[1]},
    ),
    Route(
        "DELETE",
        "/v1/admin/bans/{platform}/{user_id}",
        admin.lift_ban,
        "admin",
        params=USER,
        tag="admin",
        responses={200: ("Lifted.", BanLifted), BAD[0]: BAD[1], 404: ("That user isn't banned.", ErrorBody)},
    ),
    Route(
        "GET",
        "/v1/admin/limits",
        admin.get_limits,
        "admin",
        tag="admin",
        responses={200: ("The limits in force.", LimitsBody)},
    ),
    Route(
        "PUT",
        "/v1/admin/limits",
        admin.put_limits,
        "admin",
        body=LimitsBody,
        tag="admin",
        responses={200: ("The limits now in force.", LimitsBody), BAD[0]: BAD[1], NOT_JSON[0]: NOT_JSON[1]},
    ),
    Route("GET", "/v1/health", ops.health, "public", tag="ops", responses={200: ("Alive.", Health)}),
    Route(
        "GET",
        "/metrics",
        ops.metrics,
        "bot",
        tag="ops",
        responses={200: ("Prometheus text exposition format.", "text/plain")},
    ),
    Route(
        "GET",
        "/v1/openapi.json",
        ops.openapi,
        "public",
        tag="ops",
        responses={200: ("This document.", "application/json")},
    ),
)


def add_routes(app: web.Application) -> None:
    """Register every route; GETs answer HEAD too."""
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
