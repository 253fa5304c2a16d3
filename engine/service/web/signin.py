"""Signing in to the dashboard with the admin token, and signing out."""

from __future__ import annotations

import logging
import math
from urllib.parse import urlsplit

from aiohttp import web

from engine.service.keys import REPOSITORY, SETTINGS, TOKENS
from engine.service.web.guard import SIGNIN, PageError, check_csrf, posted
from engine.service.web.render import SESSION, field, page
from engine.service.web.sessions import (
    CSRF_FIELD,
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    SIGNIN_COOKIE_S,
    AdminSession,
    SignInLimiter,
    clear_cookie,
    csrf_for,
    csrf_matches,
    digest,
    new_secret,
    set_cookie,
    token_matches,
    well_formed,
)

log = logging.getLogger(__name__)

LIMITER = web.AppKey("signin_limiter", SignInLimiter)
HOME = "/admin/queue"
DISABLED = "The dashboard is off on this engine: start it with ENGINE_ADMIN_TOKEN set to turn it on."


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a page of this dashboard, never another site."""
    if not target:
        return HOME
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin/") or target.startswith("//"):
        return HOME
    if parts.path == SIGNIN or "\\" in target or any(ord(c) < 32 for c in target):
        return HOME
    return target


def _form_page(
    request: web.Request, *, problem: str | None = None, status: int = 200, next_page: str | None = None
) -> web.Response:
    secret = request.cookies.get(SIGNIN_COOKIE)
    fresh = not well_formed(secret)
    if fresh:
        secret = new_secret()
    assert secret is not None
    disabled = request.app[TOKENS].admin is None
    context = {
        "signin_csrf": csrf_for(secret, "signin"),
        "next": safe_next(next_page if next_page is not None else request.query.get("next")),
        "problem": DISABLED if disabled else problem,
        "disabled": disabled,
        "title": "Sign in",
        "bye": "bye" in request.query,
    }
    response = page(request, "signin.html", context, status=403 if disabled else status)
    if fresh:
        set_cookie(response, request, SIGNIN_COOKIE, secret, SIGNIN_COOKIE_S)
    return response


async def signin_form(request: web.Request) -> web.StreamResponse:
    """GET /admin/signin: the form (straight to the queue when already signed in)."""
    if request.get(SESSION) is not None:
        raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    return _form_page(request)


async def signin(request: web.Request) -> web.StreamResponse:
    """POST /admin/signin: check the token (rate-limited per address), open a session, set its cookie."""
    admin_token = request.app[TOKENS].admin
    if admin_token is None:
        raise PageError(403, DISABLED)
    form = await posted(request)
    next_page = field(form, "next")
    if not csrf_matches(request.cookies.get(SIGNIN_COOKIE), field(form, CSRF_FIELD), "signin"):
        return _form_page(
            request, problem="The sign-in form had expired; type the token again.", status=403, next_page=next_page
        )
    limiter = request.app[LIMITER]
    address = request.remote or "unknown"
    wait = limiter.wait_s(address)
    if wait > 0:
        minutes = math.ceil(wait / 60)
        message = f"Too many wrong tokens from your address; try again in {minutes} minute{'s' * (minutes != 1)}."
        response = _form_page(request, problem=message, status=429, next_page=next_page)
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    token = form.get("token")
    if not isinstance(token, str) or not token_matches(token, admin_token):
        limiter.failed(address)
        log.warning("dashboard sign-in refused: a wrong admin token from %s", address)
        return _form_page(request, problem="That isn't the admin token.", status=401, next_page=next_page)
    limiter.succeeded(address)
    session = AdminSession.new(request.app[SETTINGS].web.session_hours)
    await request.app[REPOSITORY].open_session(digest(session.secret), expires_at=session.expires_at)
    log.info("dashboard sign-in from %s", address)
    response = web.HTTPSeeOther(safe_next(next_page))
    max_age = int(request.app[SETTINGS].web.session_hours * 3600)
    set_cookie(response, request, SESSION_COOKIE, session.secret, max_age)
    clear_cookie(response, request, SIGNIN_COOKIE)
    raise response


async def signout(request: web.Request) -> web.StreamResponse:
    """POST /admin/signout: end the session here and on every replica, drop the cookie."""
    await check_csrf(request)
    session = request[SESSION]
    assert session is not None  # the guard let only a signed-in admin through
    await request.app[REPOSITORY].close_session(digest(session.secret))
    log.info("dashboard sign-out")
    response = web.HTTPSeeOther(f"{SIGNIN}?bye=1")
    clear_cookie(response, request, SESSION_COOKIE)
    raise response
