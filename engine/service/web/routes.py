"""The dashboard's and the gallery's routes, and `setup_web`, which the engine's app factory calls."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import aiohttp_jinja2
from aiohttp import web

from engine.service.keys import SETTINGS
from engine.service.web import checkpoints, gallery, history, limits, queue, signin, statspage
from engine.service.web.render import setup_templates
from engine.service.web.sessions import SignInLimiter

STATIC = Path(__file__).parent / "static"
JOB = "{id:[0-9a-f]{32}}"
NAME = "{name:[A-Za-z0-9][A-Za-z0-9._-]{0,99}}"
USER = "{platform:[A-Za-z0-9_.:@-]{1,64}}/{user_id:[A-Za-z0-9_.:@-]{1,64}}"


async def home(request: web.Request) -> web.StreamResponse:
    """GET /admin: the queue."""
    raise web.HTTPSeeOther("/admin/queue")


ROUTES = (
    ("GET", "/admin", home),
    ("GET", "/admin/", home),
    ("GET", "/admin/signin", signin.signin_form),
    ("POST", "/admin/signin", signin.signin),
    ("POST", "/admin/signout", signin.signout),
    ("GET", "/admin/queue", queue.queue_page),
    ("GET", "/admin/queue/events", queue.queue_events),
    ("POST", f"/admin/jobs/{JOB}/cancel", queue.cancel_job),
    ("GET", "/admin/jobs", history.history_page),
    ("GET", f"/admin/jobs/{JOB}", history.job_page),
    ("GET", f"/admin/jobs/{JOB}/input", history.job_input),
    ("GET", f"/admin/jobs/{JOB}/result", history.job_result),
    ("GET", "/admin/checkpoints", checkpoints.checkpoints_page),
    ("POST", "/admin/checkpoints/active", checkpoints.switch_checkpoint),
    ("POST", "/admin/checkpoints/upload", checkpoints.upload_checkpoint),
    ("POST", f"/admin/checkpoints/{NAME}/delete", checkpoints.delete_checkpoint),
    ("POST", "/admin/trainings", checkpoints.start_training),
    ("POST", "/admin/tunes", checkpoints.start_tuning),
    ("GET", "/admin/limits", limits.limits_page),
    ("POST", "/admin/limits", limits.save_limits),
    ("POST", "/admin/bans", limits.add_ban),
    ("POST", f"/admin/bans/{USER}/lift", limits.lift_ban),
    ("GET", "/admin/stats", statspage.stats_page),
    ("GET", "/gallery", gallery.gallery_page),
    ("GET", f"/gallery/{JOB}/media", gallery.gallery_media),
    ("POST", f"/admin/gallery/{JOB}/remove", gallery.remove_from_gallery),
)


def asset_version() -> str:
    """A digest of the stylesheet and script, so browsers fetch them again after an upgrade."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def setup_web(app: web.Application) -> None:
    """Templates, the static files, the sign-in limiter and every page's route."""
    settings = app[SETTINGS]
    setup_templates(app)
    aiohttp_jinja2.get_env(app).globals["asset_version"] = asset_version()
    app[signin.LIMITER] = SignInLimiter(settings.web.signin_attempts, settings.web.signin_window_s)
    app[history.THUMBS] = OrderedDict()
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
