"""Rendering pages: the Jinja2 environment, what every page's template is given, and reading a form safely."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from engine.service.keys import SETTINGS
from engine.service.web.sessions import CSRF_FIELD, AdminSession
from engine.units import human_bytes

# request[SESSION]: the signed-in admin of this request, or None (set by the guard on every page)
SESSION: web.RequestKey[AdminSession | None] = web.RequestKey("admin_session")
MAX_FIELD = 2000  # characters of one form field at most (names, reasons, prompts)


def setup_templates(app: web.Application) -> None:
    """Jinja2 with autoescaping, templates from this package, and the filters the pages use."""
    environment = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("engine.service.web", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(when=when, ago=ago, seconds=seconds, size=human_bytes, percent=percent)


def page(request: web.Request, template: str, context: dict[str, Any], *, status: int = 200) -> web.Response:
    """A whole page: the template with the session, its CSRF token and the gallery setting."""
    session: AdminSession | None = request.get(SESSION)
    settings = request.app[SETTINGS]
    base = {
        "admin": session,
        "csrf": session.csrf if session is not None else "",
        "csrf_field": CSRF_FIELD,
        "gallery_public": settings.gallery.public,
        "path": request.path,
        "notice": None,
        "problem": None,
    }
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


def fragment(request: web.Request, template: str, context: dict[str, Any]) -> str:
    """A piece of a page as text (the live queue's rows)."""
    session: AdminSession | None = request.get(SESSION)
    context = {"csrf": session.csrf if session else "", "csrf_field": CSRF_FIELD, **context}
    return aiohttp_jinja2.render_string(template, request, context)


def field(form: MultiDictProxy[Any], name: str, *, default: str = "") -> str:
    """A text field of a submitted form, stripped and capped; a file where text belongs reads as empty."""
    value = form.get(name, default)
    if not isinstance(value, str):
        return default
    return value.strip()[:MAX_FIELD]


def when(value: datetime | None) -> str:
    """A UTC time as the pages show it."""
    if value is None:
        return "—"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago, in the largest unit that fits."""
    if value is None:
        return "—"
    seconds_ago = max(0.0, ((now or datetime.now(timezone.utc)) - value).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds_ago >= size:
            return f"{seconds_ago / size:.0f} {unit} ago"
    return f"{seconds_ago:.0f} s ago"


def seconds(value: float | None) -> str:
    """A duration for people."""
    if value is None:
        return "—"
    if value >= 90:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s" if value >= 1 else f"{value * 1000:.0f} ms"


def percent(value: float | None) -> str:
    """0..1 as a whole percentage."""
    return "—" if value is None else f"{max(0.0, min(1.0, value)) * 100:.0f}%"
