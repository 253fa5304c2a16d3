"""Bearer-token checks, and JSON errors for everything that goes wrong, aiohttp's own refusals included."""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
from typing import Any

from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ValidationError

from engine.errors import UserError
from engine.service.keys import SETTINGS, TOKENS, Tokens

log = logging.getLogger(__name__)

PUBLIC = frozenset({"/v1/health", "/v1/openapi.json"})
# aiohttp raises these itself (unknown route, wrong method, body cap); each gets a code and a sentence.
HTTP_ERRORS = {
    400: ("bad_request", "That request isn't one I can read."),
    404: ("not_found", "There is nothing at that address."),
    405: ("method_not_allowed", "That address doesn't take that kind of request."),
    413: ("too_large", "That upload is too large."),
    415: ("unsupported_media_type", "That request's content type isn't one I accept."),
}
# A body aiohttp can't decode (a bad chunk, a wrong length, a stream cut short). A ConnectionError counts as the
# client's only when the client's own connection is gone: the database's can raise one too, and that is ours.
CLIENT_FAULTS = (asyncio.IncompleteReadError, HttpProcessingError, ClientPayloadError)
INTERNAL = "Something went wrong inside the engine; please try again in a moment."
# Intake's refusals that are not plain 400s.
USER_ERROR_STATUS = {"too_large": 413, "too_many_pixels": 413, "not_an_image": 415, "unsupported_format": 415}


def json_error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    """The one shape of every error answer."""
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(max(1, math.ceil(extra["retry_after"])))
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="makeitmove"'
    return web.json_response({"code": code, "message": message, **extra}, status=status, headers=headers)


def json_model(model: BaseModel, status: int = 200) -> web.Response:
    """A pydantic model as a JSON answer."""
    return web.Response(text=model.model_dump_json(), status=status, content_type="application/json")


def validation_message(exc: ValidationError, what: str) -> str:
    """The first problem of a pydantic error as a sentence that names the field."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or what
    if first["type"] == "extra_forbidden":
        return f"The {what} has a key I don't know: {where}."
    if first["type"] == "missing":
        return f"The {what} is missing {where}."
    reason = str(first["msg"]).removeprefix("Value error, ")
    return f"The {what}'s {where} is not valid: {reason[:1].lower() + reason[1:]}."


class Refused(Exception):
    """A request refused with a status, a code and a sentence (raised by handlers, answered here)."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the JSON error shape; log internal ones with their traceback."""
    try:
        return await handler(request)
    except Refused as exc:
        response = json_error(exc.status, exc.code, exc.message, **exc.extra)
        if exc.status in (408, 413):  # the rest of the body was never read: this connection can't carry another
            response.force_close()
        return response
    except UserError as exc:
        return json_error(USER_ERROR_STATUS.get(exc.code, 400), exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, message = HTTP_ERRORS.get(exc.status, ("http_error", "That request can't be answered."))
        if exc.status == 413:
            limit = request.app[SETTINGS].engine.max_body_bytes
            message = f"That upload is too large (the limit is {limit / 1024 / 1024:.0f} MB)."
        response = json_error(exc.status, code, message)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except CLIENT_FAULTS as exc:  # the client's body broke: its doing, so one quiet line
        return _client_fault(request, exc)
    except ConnectionError as exc:
        if request.transport is None or request.transport.is_closing():  # the client hung up mid-request
            return _client_fault(request, exc)
        return _internal(request)
    except Exception:
        return _internal(request)


def _client_fault(request: web.Request, exc: BaseException) -> web.Response:
    log.info("%s %s: the client's body or connection broke (%s)", request.method, request.path, _why(exc))
    return json_error(400, "bad_request", "That request's body broke off or couldn't be read.")


def _internal(request: web.Request) -> web.Response:
    log.exception("internal error on %s %s", request.method, request.path)
    return json_error(500, "internal", INTERNAL)


def _why(exc: BaseException) -> str:
    return type(exc).__name__ if isinstance(exc, HttpProcessingError) else f"{type(exc).__name__}: {exc}"[:120]


def _presented(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _matches(presented: str | None, expected: str | None) -> bool:
    if presented is None or expected is None:
        return False
    # A header may carry any byte (aiohttp hands undecodable ones over as surrogates): compare bytes, never fail.
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def is_admin_request(request: web.Request) -> bool:
    """The request carries the admin token."""
    return _matches(_presented(request), request.app[TOKENS].admin)


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bot endpoints need ENGINE_TOKEN (or the admin token); /v1/admin/* needs ENGINE_ADMIN_TOKEN."""
    path = request.path
    if path in PUBLIC or not (path.startswith("/v1/") or path == "/metrics"):
        return await handler(request)
    tokens: Tokens = request.app[TOKENS]
    presented = _presented(request)
    if path.startswith("/v1/admin/"):
        if tokens.admin is None:
            raise Refused(403, "admin_disabled", "The admin API is disabled on this engine (no ENGINE_ADMIN_TOKEN).")
        if not _matches(presented, tokens.admin):
            raise _unauthorized("That needs the admin token.")
        return await handler(request)
    # Without ENGINE_TOKEN the engine only listens on loopback (checked at start) and bots need no token.
    if tokens.bot is not None and not (_matches(presented, tokens.bot) or _matches(presented, tokens.admin)):
        raise _unauthorized("That needs the engine's bearer token.")
    return await handler(request)


def _unauthorized(message: str) -> Refused:
    return Refused(401, "unauthorized", message)
