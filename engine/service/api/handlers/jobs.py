"""Bot endpoints: submit a meme, follow and fetch the job, cancel it, a user's history and quota."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import hdrs, web
from aiohttp.helpers import parse_mimetype
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BodyPartReader, content_disposition_filename, parse_content_disposition
from pydantic import BaseModel, ValidationError

from engine import safejson
from engine.errors import UserError
from engine.service.api.bodies import read_json_object, within_deadline
from engine.service.api.middleware import Refused, is_admin_request, json_model, validation_message
from engine.service.api.models import (
    NAME,
    JobAccepted,
    JobForm,
    JobList,
    JobOptions,
    JobView,
    QuotaView,
    Requester,
)
from engine.service.decodes import Busy
from engine.service.keys import DECODES, METRICS, QUEUE, REPOSITORY, SETTINGS
from engine.stages.intake import Intake
from storage.records import JobRecord, NewJob, Rejected

log = logging.getLogger(__name__)

T = TypeVar("T")
Opts = TypeVar("Opts", bound=BaseModel)

JOB_ID = re.compile(r"[0-9a-f]{32}")
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,200}")
MEDIA_TYPES = {"gif": "image/gif", "mp4": "video/mp4", "webp": "image/webp"}
REJECTED_STATUS = {
    "rate_limited": 429, "banned": 403, "queue_full": 503, "idempotency_conflict": 409, "training_busy": 409,
}  # fmt: skip
FORM_FIELDS = ("platform", "user_id", "chat_id", "is_admin")
# A text field is read whole before it is parsed, so each has a cap far below the body's (options: a prompt
# of 500 characters, escaped, and a few numbers).
FIELD_BYTES = {"options": 16 * 1024, "other": 1024}


async def submit_job(request: web.Request) -> web.Response:
    """POST /v1/jobs: check who asks and how much first, then decode the image, then queue the job (202).

    A repeated Idempotency-Key from the same user with the same request finds its job again (200); with a
    different request it is a 409. Nothing costly (a decode) happens before the ban and limit checks pass.
    """
    app = request.app
    # 1. read the form under the body deadline, and check every field
    fields, image = await read_form(request)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise Refused(400, "bad_idempotency_key", "The Idempotency-Key must be 1 to 200 visible ASCII characters.")
    try:
        form = JobForm.model_validate({k: v for k, v in fields.items() if k != "options"})
    except ValidationError as exc:
        raise Refused(400, "bad_form", validation_message(exc, "form")) from None
    options = parse_options(fields.get("options"), JobOptions)
    if image is None:
        raise Refused(400, "missing_image", "Attach the meme as the form's image field.")
    # 2. the image's header alone: format and size caps, and what decoding it will cost
    intake = Intake(app[SETTINGS].intake)
    try:
        # in a thread: walking a hostile 19 MB GIF's frame headers costs about a second of CPU
        header = await asyncio.get_running_loop().run_in_executor(None, intake.inspect, image)
    except UserError:
        app[METRICS].submissions.labels(outcome="bad_image").inc()
        raise
    values = options.model_dump(exclude_none=True, exclude={"seed"})
    seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
    new = NewJob(
        platform=form.platform, user_id=form.user_id, chat_id=form.chat_id, is_admin=form.is_admin,
        options=values, seed=seed, image=image, idempotency_key=key, request_digest=request_digest(image, options),
    )  # fmt: skip
    # 3. who asks and how much: a banned or limited user, a full queue or a repeated key costs no decode
    existing = await admitted(request, lambda: app[REPOSITORY].precheck(new))
    if existing is not None:
        return await accepted(request, existing, created=False)
    # 4. decode, within the service's decoding budget
    try:
        async with app[DECODES].hold(header.decode_bytes):
            await asyncio.get_running_loop().run_in_executor(None, intake, image)
    except Busy as exc:
        raise Refused(503, "busy", exc.message, retry_after=app[DECODES].wait_s) from None
    except UserError:
        app[METRICS].submissions.labels(outcome="bad_image").inc()
        raise
    # 5. queue it: the atomic admission check runs again, in the transaction that stores the job
    submitted = await admitted(request, lambda: app[QUEUE].submit(new))
    return await accepted(request, submitted.job, created=submitted.created)


def request_digest(image: bytes, options: JobOptions) -> str:
    """What makes two submissions the same request: the image bytes and the options the client chose."""
    digest = hashlib.sha256(image)
    digest.update(b"\0" + options.model_dump_json(exclude_none=True).encode())
    return digest.hexdigest()


async def admitted(request: web.Request, admit: Callable[[], Awaitable[T]]) -> T:
    """`admit()`, with its Rejected turned into the API's refusal (429, 403, 409 or 503 with a sentence)."""
    try:
        return await admit()
    except Rejected as exc:
        request.app[METRICS].submissions.labels(outcome=exc.code).inc()
        extra = {"retry_after": exc.retry_after} if exc.code == "rate_limited" else {}
        if exc.code == "rate_limited" and exc.retry_after is None:
            extra["retry_after"] = 1.0
        raise Refused(REJECTED_STATUS.get(exc.code, 429), exc.code, exc.message, **extra) from None


async def accepted(request: web.Request, job: JobRecord, *, created: bool) -> web.Response:
    request.app[METRICS].submissions.labels(outcome="accepted" if created else "repeated").inc()
    position = await request.app[QUEUE].position(job.id) if job.status == "queued" else None
    body = JobAccepted(id=job.id, status=job.status, position=position)  # type: ignore[arg-type]
    return json_model(body, status=202 if created else 200)


async def read_form(request: web.Request) -> tuple[dict[str, str], bytes | None]:
    """The form's text fields by name and the image bytes, streamed with the body cap (client_max_size).

    What request.post() did, minus its costs on every submission: the Content-Type parsed by the
    email package, each part's Content-Disposition parsed once per attribute, files spooled to a
    temporary file. Refusals keep post()'s order: a malformed body or the cap first, then the fields.
    """
    if not _is_form_data(request):
        raise Refused(415, "not_multipart", "Send the job as multipart/form-data with an image part.")
    try:
        parts = await within_deadline(request, _parts(request))
    except (HttpProcessingError, ValueError, AssertionError, UnicodeError, LookupError, RuntimeError) as exc:
        # RuntimeError: aiohttp's answer to an unknown Content-Transfer-Encoding or Content-Encoding of a part
        log.debug("malformed multipart body: %s", exc)
        raise Refused(400, "bad_multipart", "That upload isn't a well-formed multipart form.") from None
    seen: set[str] = set()
    fields: dict[str, str] = {}
    image: bytes | None = None
    for name, value in parts:
        if name in seen:
            raise Refused(400, "bad_form", f"The form has the {name[:40]} field twice.")
        seen.add(name)
        if name == "image":
            image = value if isinstance(value, bytes) else value.encode()
        elif name in FORM_FIELDS or name == "options":
            fields[name] = value if isinstance(value, str) else value.decode("utf-8", "replace")
        else:
            raise Refused(400, "bad_form", f"The form has a field I don't know: {name[:40]}.")
    if "is_admin" in fields:
        flag = fields["is_admin"].strip().lower()
        if flag not in ("true", "false", "1", "0"):
            raise Refused(400, "bad_form", "The form's is_admin must be true or false.")
        fields["is_admin"] = "true" if flag in ("true", "1") else "false"
    return fields, image


def _is_form_data(request: web.Request) -> bool:
    mimetype = parse_mimetype(request.headers.get(hdrs.CONTENT_TYPE, ""))
    return (mimetype.type, mimetype.subtype) == ("multipart", "form-data")


@functools.lru_cache(maxsize=64)
def _disposition(header: str | None) -> dict[str, str]:
    """A part's Content-Disposition parameters; bots send the same few headers, and parsing one costs."""
    return parse_content_disposition(header)[1]


async def _parts(request: web.Request) -> list[tuple[str, str | bytes]]:
    """Every part as (name, value): a file part's bytes as sent, a text part decoded by its charset as post() did.

    A part that is neither a file nor text comes as bytes (post() gave a bytearray, whose repr the
    image field used to end up as).
    """
    reader = await request.multipart()
    payload = request.content
    max_size = request.client_max_size
    out: list[tuple[str, str | bytes]] = []
    while (part := await reader.next()) is not None:
        if 0 < max_size < payload.total_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=max_size, actual_size=payload.total_bytes)
        if len(out) > len(FORM_FIELDS) + 1:
            # Every field name is known once at most; one more part is a duplicate or a stranger.
            raise Refused(400, "bad_form", "The form has more fields than a job takes.")
        if not isinstance(part, BodyPartReader):
            raise ValueError("nested multipart")
        params = _disposition(part.headers.get(hdrs.CONTENT_DISPOSITION))
        name = content_disposition_filename(params, "name")
        if name is None:
            raise ValueError("Multipart field missing name.")
        cap = FIELD_BYTES.get(name, FIELD_BYTES["other"])
        raw = bytearray()
        while chunk := await part.read_chunk():
            if 0 < max_size < payload.total_bytes:
                raise web.HTTPRequestEntityTooLarge(max_size=max_size, actual_size=payload.total_bytes)
            raw.extend(chunk)
            if name != "image" and len(raw) > cap:  # the image is capped by the body cap, then by intake
                raise Refused(
                    413, "too_large", f"The form's {name[:40]} field is too large ({cap // 1024} KB at most)."
                )
        value = bytearray()
        async for decoded in part.decode_iter(raw):
            value.extend(decoded)
        part_type = part.headers.get(hdrs.CONTENT_TYPE)
        if content_disposition_filename(params, "filename"):
            out.append((name, bytes(value)))  # a file: post() handed over the bytes
        elif part_type is None or part_type.startswith("text/"):
            out.append((name, value.decode(part.get_charset(default="utf-8"))))
        else:
            out.append((name, bytes(value)))
    return out


def parse_options(raw: str | None, model: type[Opts]) -> Opts:
    """The options part: a JSON object validated by `model` (the pipeline's bounds, for a job)."""
    data: dict[str, Any] = {}
    if raw is not None and raw.strip():
        try:
            data = safejson.loads_object(raw, what="options field", max_bytes=FIELD_BYTES["options"])
        except safejson.BadJSON as exc:
            raise Refused(400, "bad_options", exc.message) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Refused(400, "bad_options", validation_message(exc, "options")) from None


async def find_job(request: web.Request) -> JobRecord:
    """The job named in the path, or a 404 with a sentence."""
    job_id = request.match_info["id"]
    job = await request.app[QUEUE].get(job_id) if JOB_ID.fullmatch(job_id) else None
    if job is None:
        raise Refused(404, "job_not_found", "There is no job with that id.")
    return job


async def view_of(request: web.Request, job: JobRecord) -> JobView:
    """The job's API view, with its queue position while queued."""
    position = await request.app[QUEUE].position(job.id) if job.status == "queued" else None
    return JobView.of(job, position, gallery=request.app[SETTINGS].gallery.public)


async def get_job(request: web.Request) -> web.Response:
    """GET /v1/jobs/{id}: where the job is."""
    job = await find_job(request)
    return json_model(await view_of(request, job))


async def job_result(request: web.Request) -> web.Response:
    """GET /v1/jobs/{id}/result: the animation bytes once done; 404 before, 410 once swept."""
    job = await find_job(request)
    found = await request.app[REPOSITORY].result(job.id) if job.status == "done" else None
    if found is None:
        if job.status == "done" or job.result_expired:
            raise Refused(410, "result_expired", "That animation is no longer kept; please make it again.")
        if job.status in ("failed", "cancelled"):
            raise Refused(404, "no_result", f"That job was {job.status}, so it has no animation.")
        raise Refused(404, "not_ready", "That animation isn't ready yet.")
    data, fmt = found
    headers = {"Content-Disposition": f'attachment; filename="makeitmove-{job.id}.{fmt}"'}
    return web.Response(body=data, content_type=MEDIA_TYPES.get(fmt, "application/octet-stream"), headers=headers)


async def cancel_job(request: web.Request) -> web.Response:
    """DELETE /v1/jobs/{id}: only its requester (platform + user_id) or the admin token may cancel."""
    job = await find_job(request)
    if not is_admin_request(request):
        who = await read_requester(request)
        if (who.platform, who.user_id) != (job.platform, job.user_id):
            raise Refused(403, "not_your_job", "Only the person who asked for this animation can cancel it.")
    cancelled = await request.app[QUEUE].cancel(job.id)
    if cancelled is None:
        raise Refused(404, "job_not_found", "There is no job with that id.")
    log.info("job %s cancel asked: now %s", job.id, cancelled.status)
    return json_model(await view_of(request, cancelled))


async def read_requester(request: web.Request) -> Requester:
    """Who asks (platform, user_id): from the query, or from a JSON body; a 400 with a sentence if malformed."""
    raw: dict[str, Any] = {k: v for k, v in request.query.items() if k in ("platform", "user_id")}
    if request.can_read_body and request.content_type == "application/json":
        raw.update(await read_json_object(request, "request body"))
    try:
        return Requester.model_validate(raw)
    except ValidationError as exc:
        raise Refused(400, "bad_requester", validation_message(exc, "request")) from None


def _user(request: web.Request) -> tuple[str, str]:
    platform, user_id = request.match_info["platform"], request.match_info["user_id"]
    if not (re.fullmatch(NAME, platform) and re.fullmatch(NAME, user_id)):
        raise Refused(400, "bad_user", "A platform or user id has 1 to 64 letters, digits or . _ : @ -.")
    return platform, user_id


async def user_jobs(request: web.Request) -> web.Response:
    """GET /v1/users/{platform}/{user_id}/jobs?limit=: the user's newest jobs first."""
    platform, user_id = _user(request)
    raw = request.query.get("limit", "10")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3) or not 1 <= int(raw) <= 100:
        raise Refused(400, "bad_limit", "The limit must be a whole number from 1 to 100.")
    jobs = await request.app[REPOSITORY].history(platform, user_id, limit=int(raw))
    queued = await request.app[REPOSITORY].queued_ids() if any(j.status == "queued" for j in jobs) else []
    places = {job_id: n for n, job_id in enumerate(queued, start=1)}
    gallery = request.app[SETTINGS].gallery.public
    return json_model(JobList(jobs=[JobView.of(j, places.get(j.id), gallery=gallery) for j in jobs]))


async def user_quota(request: web.Request) -> web.Response:
    """GET /v1/users/{platform}/{user_id}/quota: what the user has left."""
    platform, user_id = _user(request)
    return json_model(QuotaView.of(await request.app[REPOSITORY].quota(platform, user_id)))
