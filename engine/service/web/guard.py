"""The dashboard's gate: a session for everything under /admin, a CSRF token on every form, HTML errors.

Every path under /admin but the sign-in page needs a signed-in session; without one a GET is sent to the
sign-in page and anything else is refused. Every POST carries the session's CSRF token (a form field, or
the X-CSRF-Token header) and, when the browser names one, our own Origin. The two upload forms are
checked by their handler, which reads the token before the file (web/uploads.py), so a file is never
stored for a forged request; every other form is checked here, whatever its encoding. Errors under /admin
and /gallery are pages, never JSON.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import MultiDictProxy

from engine.errors import UserError
from engine.service.keys import REPOSITORY, TOKENS
from engine.service.web.render import SESSION, page
from engine.service.web.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    AdminSession,
    csrf_matches,
    digest,
    well_formed,
)

log = logging.getLogger(__name__)

SIGNIN = "/admin/signin"
UPLOADS = frozenset({"/admin/checkpoints/upload", "/admin/tunes"})  # they check the token before the file
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Scripts and styles only from this engine (no inline script); media from here and data: for the thumbnails.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
STATUS_TITLES = {
    400: "That request isn't valid",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    413: "Too large",
    429: "Too many attempts",
    500: "Something went wrong",
}


class PageError(Exception):
    """A refusal shown as a page with a status and a sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def is_web_path(path: str) -> bool:
    """Pages of the dashboard or the gallery (not the JSON API)."""
    return path in ("/admin", "/gallery") or path.startswith(("/admin/", "/gallery/"))


async def current_session(request: web.Request) -> AdminSession | None:
    """The signed-in admin of this request, from the cookie and the stored sessions."""
    secret = request.cookies.get(SESSION_COOKIE)
    if request.app[TOKENS].admin is None or not well_formed(secret):
        return None
    assert secret is not None
    expires = await request.app[REPOSITORY].session_expiry(digest(secret))
    return AdminSession(secret, expires) if expires is not None else None


def check_origin(request: web.Request) -> None:
    """A browser's Origin (or Referer) must be this engine: a form posted from another site is refused."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if origin is None:
        return  # neither header (some clients send none): the CSRF token decides alone
    if origin == "null" or urlsplit(origin).netloc != request.host:
        raise PageError(403, "That form came from another site, so I ignored it.")


async def posted(request: web.Request) -> MultiDictProxy[Any]:
    """The submitted form; a body that isn't one (bad bytes, a broken multipart) is a 400 page, not an error."""
    try:
        return await request.post()
    except (ValueError, UnicodeDecodeError, AssertionError) as exc:  # aiohttp's parsers raise these on bad input
        log.info("%s %s: a form that can't be read (%s)", request.method, request.path, type(exc).__name__)
        raise PageError(400, "That form couldn't be read; reload the page and try again.") from None


async def check_csrf(request: web.Request, presented: str | None = None) -> None:
    """The request carries the session's CSRF token; a PageError otherwise."""
    session: AdminSession | None = request.get(SESSION)
    if presented is None:
        presented = request.headers.get(CSRF_HEADER)
    if presented is None and request.content_type in FORMS:
        form = await posted(request)
        value = form.get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    if session is None or not csrf_matches(session.secret, presented):
        raise PageError(403, "This form has expired or didn't come from this dashboard; reload the page and try again.")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Session, Origin and CSRF checks for the pages; their errors as pages; security headers on every answer."""
    if not is_web_path(request.path):
        return await handler(request)
    try:
        response = await _guarded(request, handler)
    except web.HTTPException as exc:
        if exc.status < 400:
            _secure(exc)
            raise
        response = _error_page(request, exc.status, _http_message(exc.status))
    except PageError as exc:
        response = _error_page(request, exc.status, exc.message)
    except UserError as exc:
        response = _error_page(request, 400, exc.message)
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        response = _error_page(request, 500, "Something went wrong inside the engine; the log has the details.")
    _secure(response)
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[SESSION] = await current_session(request)
    path = request.path
    if path.startswith("/admin") and path != SIGNIN and request[SESSION] is None:
        if request.method in SAFE_METHODS:
            target = request.path_qs if path not in ("/admin", "/admin/") else "/admin/queue"
            raise web.HTTPSeeOther(f"{SIGNIN}?next={quote(target, safe='/')}")
        raise PageError(403, "Your sign-in has ended; sign in again and repeat what you did.")
    if request.method not in SAFE_METHODS:
        check_origin(request)
        if path not in UPLOADS and path != SIGNIN:
            await check_csrf(request)
    return await handler(request)


def _error_page(request: web.Request, status: int, message: str) -> web.Response:
    title = STATUS_TITLES.get(status, "That didn't work")
    try:
        return page(request, "error.html", {"title": title, "message": message}, status=status)
    except Exception:  # the error page itself failed: a plain sentence, still no traceback
        log.exception("the error page failed on %s", request.path)
        return web.Response(text=message, status=status, content_type="text/plain")


def _http_message(status: int) -> str:
    return {
        404: "There is nothing at that address.",
        405: "That address doesn't take that kind of request.",
        413: "That upload is too large.",
    }.get(status, "That request can't be answered.")


def _secure(response: web.StreamResponse) -> None:
    if response.prepared:  # an event stream already sent its headers
        return
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")
