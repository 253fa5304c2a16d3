"""The engine's HTTP API as async methods: submit a meme, follow it over SSE, fetch the GIF, admin calls."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.core.errors import EngineError, EngineUnavailable, OptionError
from bot.core.messages import ENGINE_OFFLINE
from bot.core.models import LIMIT_KEYS, Ban, Checkpoints, Job, Limits, Quota, Shared, Stats
from bot.core.options import RemixRequest, Request, TuneRequest

log = logging.getLogger(__name__)

RETRIES = 2  # extra tries after a refused connection, a timeout or a 5xx
RETRY_DELAY_S = 0.3  # doubled each try
STREAM_RECONNECTS = 5  # failed stream connections in a row before following the job by polling
STREAM_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 5.0)
POLL_INTERVAL_S = 1.0
# Event streams open at once. Each holds a socket for the job's whole life; past this many, a job is
# followed by polling until a stream frees up (a file-descriptor bound, far below `ulimit -n`).
MAX_STREAMS = 512
Body = Callable[[], Any]  # builds a fresh body per try: an aiohttp FormData can be sent only once


class _StreamFailed(Exception):
    """The event stream could not be used; follow the job some other way."""


class EngineClient:
    """The engine over HTTP; use `async with EngineClient(...)` or call close().

    Two aiohttp sessions: a pooled one for requests and an unpooled one for event streams. A stream holds
    its connection for minutes, so in one shared pool (aiohttp's limit is 100) a hundred jobs in flight
    would leave no connection for the result downloads that finish them; the streams get their own
    connector without a limit, bounded instead by `max_streams`.
    """

    def __init__(
        self, base_url: str, token: str | None, *, admin_token: str | None = None, timeout: float = 30,
        max_streams: int = MAX_STREAMS,
    ) -> None:  # fmt: skip
        if max_streams < 0:
            raise ValueError(f"max_streams must be 0 or more, not {max_streams}")
        self.base_url = base_url.rstrip("/")
        self._token, self._admin_token = token, admin_token
        self.timeout = timeout
        self.max_streams = max_streams
        self.open_streams = 0
        self._session: aiohttp.ClientSession | None = None
        self._stream_session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"EngineClient({self.base_url!r})"  # never the tokens

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the sessions (they are opened again on the next call)."""
        for session in (self._session, self._stream_session):
            if session is not None:
                await session.close()
        self._session = self._stream_session = None

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop the bot's library owns.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    def _stream_http(self) -> aiohttp.ClientSession:
        # No pool limit: max_streams bounds the streams, and requests never wait behind them.
        if self._stream_session is None or self._stream_session.closed:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout)
            self._stream_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout)
        return self._stream_session

    def _headers(self, admin: bool) -> dict[str, str]:
        token = self._admin_token if admin else self._token
        return {"Authorization": f"Bearer {token}"} if token else {}

    # --- the one place requests are made ---

    async def _call(
        self,
        method: str,
        path: str,
        *,
        admin: bool = False,
        json_body: Any = None,
        body: Body | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[bytes, str, int]:
        """Send one request, retrying briefly when the engine can't be reached; (body, content type, status)."""
        sent_headers = {**self._headers(admin), **(headers or {})}
        for attempt in range(RETRIES + 1):
            try:
                async with self._http().request(
                    method, self.base_url + path, json=json_body, data=body() if body else None,
                    params=params, headers=sent_headers,
                ) as response:  # fmt: skip
                    data = await response.read()
                    log.debug("%s %s -> %d", method, path, response.status)
                    if response.status < 400:
                        return data, response.content_type, response.status
                    error = _engine_error(response.status, data, response.headers.get("Retry-After"))
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                log.warning("engine %s %s failed (try %d): %s", method, path, attempt + 1, type(exc).__name__)
                error = None
            # A full queue is an answer, not an outage; other 5xx are retried like a dropped connection.
            if error is not None and (error.status < 500 or error.code == "queue_full"):
                raise error
            if attempt < RETRIES:
                await asyncio.sleep(RETRY_DELAY_S * 2**attempt)
        log.warning("engine unavailable for %s %s after %d tries", method, path, RETRIES + 1)
        raise EngineUnavailable(ENGINE_OFFLINE)

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        data, _, _ = await self._call(method, path, **kwargs)
        try:
            return json.loads(data)
        except ValueError:
            raise EngineError(502, "bad_answer", "The engine's answer wasn't JSON.") from None

    # --- jobs ---

    async def make(
        self, request: Request, data: bytes, *, filename: str, output: dict[str, Any], platform: str, user_id: str,
        chat_id: str, is_admin: bool = False, idempotency_key: str | None = None,
    ) -> Job:  # fmt: skip
        """Queue what `request` asks for: an animation or a remix (in the `output` format options), or a tune."""
        who: dict[str, Any] = {"platform": platform, "user_id": user_id, "chat_id": chat_id}
        if isinstance(request, TuneRequest):  # a checkpoint, not a file: no output options
            return await self.tune(data, filename=filename, options=request.options, idempotency_key=idempotency_key,
                                   **who)  # fmt: skip
        submit = self.remix if isinstance(request, RemixRequest) else self.submit
        options = {**request.options, **output}
        return await submit(
            data, filename=filename, options=options, is_admin=is_admin, idempotency_key=idempotency_key, **who
        )

    async def submit(
        self,
        image: bytes,
        *,
        filename: str,
        options: dict[str, Any],
        platform: str,
        user_id: str,
        chat_id: str,
        is_admin: bool = False,
        idempotency_key: str | None = None,
    ) -> Job:
        """Queue a meme; the same idempotency key returns the same job (a key is made up when none is given)."""
        who = {"platform": platform, "user_id": user_id, "chat_id": chat_id, "is_admin": is_admin}
        return await self._post_file("/v1/jobs", image, filename, options, who, idempotency_key)

    async def remix(
        self,
        clip: bytes,
        *,
        filename: str,
        options: dict[str, Any],
        platform: str,
        user_id: str,
        chat_id: str,
        is_admin: bool = False,
        idempotency_key: str | None = None,
    ) -> Job:
        """Queue a remix of a GIF or video (options: RemixOptions, prompt required); followed like an animation.

        EngineError "needs_gpu_backend" when the engine has no GPU video backend: its message says how to set one.
        """
        who = {"platform": platform, "user_id": user_id, "chat_id": chat_id, "is_admin": is_admin}
        return await self._post_file("/v1/remixes", clip, filename, options, who, idempotency_key)

    async def tune(
        self,
        clip: bytes,
        *,
        filename: str,
        options: dict[str, Any],
        platform: str,
        user_id: str,
        chat_id: str,
        idempotency_key: str | None = None,
    ) -> Job:
        """Queue a checkpoint tuned on a GIF or video (the admin token; options: TuneOptions, name required).

        Done, the job names the checkpoint in `made`; EngineError "training_busy" while this admin has another.
        """
        who = {"platform": platform, "user_id": user_id, "chat_id": chat_id}
        return await self._post_file("/v1/admin/tunes", clip, filename, options, who, idempotency_key, admin=True)

    async def _post_file(
        self, path: str, data: bytes, filename: str, options: dict[str, Any], who: dict[str, Any],
        idempotency_key: str | None, *, admin: bool = False,
    ) -> Job:  # fmt: skip
        """POST a file with its options and requester as multipart; the job the engine accepted."""
        key = idempotency_key or uuid.uuid4().hex  # retries after a lost answer must not queue the file twice

        def form() -> aiohttp.FormData:
            body = aiohttp.FormData()
            body.add_field("image", data, filename=filename or "meme", content_type="application/octet-stream")
            body.add_field("options", json.dumps(options))
            for name, value in who.items():
                body.add_field(name, ("true" if value else "false") if isinstance(value, bool) else str(value))
            return body

        answer = await self._json("POST", path, admin=admin, body=form, headers={"Idempotency-Key": key})
        return Job.from_json(answer)

    async def get(self, job_id: str) -> Job:
        """Where the job is now."""
        return Job.from_json(await self._json("GET", f"/v1/jobs/{_part(job_id)}"))

    async def events(self, job_id: str) -> AsyncIterator[Job]:
        """The job on every change until it is final: SSE, reconnecting with backoff, else polling `get`."""
        last: Job | None = None
        failures = 0
        streaming = True  # False once the stream has proved unusable for this job
        while True:
            if streaming and self.open_streams < self.max_streams:
                self.open_streams += 1
                try:
                    # aclosing: the connection goes back the moment the job is final, not when GC finds it
                    async with contextlib.aclosing(self._stream(job_id)) as stream:
                        async for job in stream:
                            failures = 0
                            if job != last:
                                last = job
                                yield job
                            if job.final:
                                return
                    # The stream ended before the job did (an engine restart, a proxy): reconnect.
                    failures += 1
                except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as exc:
                    failures += 1
                    log.info("event stream of job %s dropped (%s); reconnect %d", job_id, type(exc).__name__, failures)
                except _StreamFailed as exc:
                    log.warning("event stream of job %s unusable (%s); polling instead", job_id, exc)
                    streaming = False
                finally:
                    self.open_streams -= 1
                if streaming and failures > STREAM_RECONNECTS:
                    log.warning("event stream of job %s failed %d times; polling instead", job_id, failures)
                    streaming = False
                if streaming:
                    await asyncio.sleep(STREAM_BACKOFF_S[min(failures, len(STREAM_BACKOFF_S)) - 1])
                    continue
            # Polling: the stream is unusable, or every stream is taken (then a stream is tried again next time).
            job = await self.get(job_id)
            if job != last:
                last = job
                yield job
            if job.final:
                return
            await asyncio.sleep(POLL_INTERVAL_S)

    async def _stream(self, job_id: str) -> AsyncGenerator[Job, None]:
        """One connection to the event stream; the engine sends keep-alive comments, so a silent socket is dead."""
        url = f"{self.base_url}/v1/jobs/{_part(job_id)}/events"
        async with self._stream_http().get(url, headers=self._headers(False)) as response:
            if response.status != 200:
                error = _engine_error(response.status, await response.read(), response.headers.get("Retry-After"))
                if error.status in (401, 403, 404):
                    raise error
                raise _StreamFailed(f"HTTP {response.status}")
            if response.content_type != "text/event-stream":
                raise _StreamFailed(f"content type {response.content_type}")
            data: list[str] = []
            async for raw in response.content:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                elif not line and data:
                    yield Job.from_json(json.loads("\n".join(data)))
                    data = []

    async def result(self, job_id: str) -> tuple[bytes, str]:
        """The animation's bytes and content type (image/gif, video/mp4 or image/webp)."""
        data, content_type, _ = await self._call("GET", f"/v1/jobs/{_part(job_id)}/result")
        return data, content_type

    async def cancel(self, job_id: str, *, platform: str, user_id: str) -> Job:
        """Cancel as this user (only the requester may); the job as it is now."""
        who = {"platform": str(platform), "user_id": str(user_id)}
        return Job.from_json(await self._json("DELETE", f"/v1/jobs/{_part(job_id)}", json_body=who))

    async def share(self, job_id: str, *, platform: str, user_id: str) -> Shared:
        """Put the result in the engine's gallery as this user (only the requester may; sharing twice is fine).

        EngineError "not_requester" (403), or 409 "gallery_off", "not_shareable" or "removed", each with its sentence.
        """
        who = {"platform": str(platform), "user_id": str(user_id)}
        return Shared.from_json(await self._json("POST", f"/v1/jobs/{_part(job_id)}/share", json_body=who))

    async def history(self, platform: str, user_id: str, limit: int = 10) -> list[Job]:
        """The user's newest jobs first."""
        path = f"/v1/users/{_part(platform)}/{_part(user_id)}/jobs"
        answer = await self._json("GET", path, params={"limit": str(limit)})
        return [Job.from_json(job) for job in answer["jobs"]]

    async def quota(self, platform: str, user_id: str) -> Quota:
        """What the user has left."""
        return Quota.from_json(await self._json("GET", f"/v1/users/{_part(platform)}/{_part(user_id)}/quota"))

    # --- admin (the admin token) ---

    async def checkpoints(self) -> Checkpoints:
        """The checkpoint registry, the active one marked."""
        return Checkpoints.from_json(await self._json("GET", "/v1/admin/checkpoints", admin=True))

    async def activate_checkpoint(self, name: str | None) -> Checkpoints:
        """Start jobs with this checkpoint (None: the base model) from the next job on."""
        answer = await self._json("PUT", "/v1/admin/checkpoints/active", admin=True, json_body={"name": name})
        return Checkpoints.from_json(answer)

    async def stats(self) -> Stats:
        """Queue and usage numbers."""
        return Stats.from_json(await self._json("GET", "/v1/admin/stats", admin=True))

    async def ban(self, platform: str, user_id: str, reason: str = "") -> Ban:
        """Ban a user from submitting."""
        body = {"platform": str(platform), "user_id": str(user_id), "reason": reason}
        return Ban.from_json(await self._json("POST", "/v1/admin/bans", admin=True, json_body=body))

    async def unban(self, platform: str, user_id: str) -> bool:
        """Lift a ban; False if the user wasn't banned."""
        try:
            await self._json("DELETE", f"/v1/admin/bans/{_part(platform)}/{_part(user_id)}", admin=True)
        except EngineError as exc:
            if exc.code == "not_banned":
                return False
            raise
        return True

    async def limits(self) -> Limits:
        """The rate limits in force."""
        return Limits.from_json(await self._json("GET", "/v1/admin/limits", admin=True))

    async def set_limits(self, **numbers: int) -> Limits:
        """Change some limits (the others keep their values); OptionError for a key that isn't a limit."""
        unknown = sorted(set(numbers) - set(LIMIT_KEYS))
        if unknown:
            raise OptionError(f"{unknown[0]} isn't a limit I know; use one of {', '.join(LIMIT_KEYS)}.")
        current = await self.limits()
        body = {key: int(numbers.get(key, getattr(current, key))) for key in LIMIT_KEYS}
        return Limits.from_json(await self._json("PUT", "/v1/admin/limits", admin=True, json_body=body))


def _part(value: str) -> str:
    """A path segment, quoted so an id can't change the path."""
    return quote(str(value), safe="")


def _engine_error(status: int, data: bytes, retry_header: str | None) -> EngineError:
    """The engine's {code, message[, retry_after]} answer, or a generic one when the body isn't that shape."""
    try:
        body = json.loads(data)
        code, message = str(body["code"]), str(body["message"])
        retry = body.get("retry_after")
    except (ValueError, KeyError, TypeError):
        code, message, retry = "http_error", f"The engine answered HTTP {status}.", None
    if retry is None and retry_header is not None:
        try:
            retry = float(retry_header)
        except ValueError:
            retry = None
    return EngineError(status, code, message, float(retry) if retry is not None else None)
