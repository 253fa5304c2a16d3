"""The engine service's aiohttp app: `create_app(settings, tokens=...)` wires storage, pipeline, queue and routes."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator, Callable
from importlib import metadata

from aiohttp import web

from engine.config import Settings
from engine.errors import ConfigError
from engine.pipeline import Pipeline
from engine.service.api.middleware import auth, errors
from engine.service.api.openapi import build_spec
from engine.service.api.routes import ROUTES, add_routes
from engine.service.checkpoints import CheckpointRegistry
from engine.service.decodes import DecodeBudget
from engine.service.keys import (
    CHECKPOINTS,
    CLOSING,
    DECODES,
    METRICS,
    OPENAPI,
    PIPELINE,
    QUEUE,
    REPOSITORY,
    SETTINGS,
    TOKENS,
    Tokens,
)
from engine.service.metrics import MeteredPipeline, ServiceMetrics
from engine.service.queue.local import LocalJobQueue
from engine.service.queue.procrastinate.queue import ProcrastinateJobQueue
from engine.service.queue.protocol import JobQueue
from engine.service.repository import open_repository
from engine.service.web.guard import guard
from engine.service.web.routes import setup_web
from storage.repository import Repository

log = logging.getLogger(__name__)

PipelineFactory = Callable[[Settings], Pipeline]
QueueFactory = Callable[[Repository, Callable[[], MeteredPipeline], Settings, CheckpointRegistry], JobQueue]


def is_loopback(host: str) -> bool:
    """The host only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings, tokens: Tokens) -> None:
    """Refuse to serve beyond loopback without a bot token."""
    host = settings.engine.host
    if tokens.bot is None and not is_loopback(host):
        where = host or "every interface"
        raise ConfigError(f"refusing to listen on {where} without ENGINE_TOKEN; set it, or listen on 127.0.0.1")


def create_app(
    settings: Settings,
    *,
    tokens: Tokens | None = None,
    pipeline_factory: PipelineFactory = Pipeline,
    queue_factory: QueueFactory | None = None,
) -> web.Application:
    """The app; storage, pipeline, queue and the retention sweep open in cleanup_ctx, in that order.

    The queue is [queue] backend's unless `queue_factory` is given: LocalJobQueue runs jobs in this
    process, ProcrastinateJobQueue hands them to `makeitmove worker` processes.
    """
    tokens = tokens if tokens is not None else Tokens()
    check_exposure(settings, tokens)
    backend: QueueFactory = ProcrastinateJobQueue if settings.queue.backend == "procrastinate" else LocalJobQueue
    make_queue = queue_factory or backend
    app = web.Application(client_max_size=settings.engine.max_body_bytes, middlewares=[errors, auth, guard])
    app[SETTINGS] = settings
    app[TOKENS] = tokens
    app[METRICS] = ServiceMetrics()
    app[DECODES] = DecodeBudget(settings.engine.decode_memory_mb * 1024 * 1024, settings.engine.decode_wait_s)
    app[CHECKPOINTS] = CheckpointRegistry(settings.checkpoints.dir)
    app[OPENAPI] = build_spec(ROUTES, version=_version())
    app[CLOSING] = asyncio.Event()

    async def closing(app: web.Application) -> None:
        app[CLOSING].set()

    app.on_shutdown.append(closing)
    add_routes(app)
    setup_web(app)

    async def storage(app: web.Application) -> AsyncIterator[None]:
        try:
            app[REPOSITORY] = await open_repository(settings)
        except ValueError as exc:  # a malformed or unsupported storage URL
            raise ConfigError(f"config key 'storage.url' is not usable: {exc}") from None
        yield
        await app[REPOSITORY].close()

    async def pipeline(app: web.Application) -> AsyncIterator[None]:
        started = asyncio.get_running_loop().time()
        app[PIPELINE] = await asyncio.to_thread(pipeline_factory, settings)
        log.info("pipeline loaded in %.2f s", asyncio.get_running_loop().time() - started)
        yield

    async def queue(app: web.Application) -> AsyncIterator[None]:
        runner = MeteredPipeline(app[PIPELINE], app[METRICS])
        app[QUEUE] = make_queue(app[REPOSITORY], lambda: runner, settings, app[CHECKPOINTS])
        await app[QUEUE].start()
        yield
        await app[QUEUE].stop()

    async def sweeper(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(sweep_forever(app[REPOSITORY], settings), name="retention-sweep")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.extend([storage, pipeline, queue, sweeper])
    return app


async def sweep_forever(repository: Repository, settings: Settings) -> None:
    """Delete expired results now and every sweep_interval_s; a failed sweep is logged and retried next time."""
    while True:
        try:
            swept = await repository.sweep(retention_days=settings.storage.retention_days)
            if swept:
                log.info("retention sweep removed the results of %d jobs", swept)
        except Exception:
            log.exception("retention sweep failed; retrying in %.0f s", settings.storage.sweep_interval_s)
        await asyncio.sleep(settings.storage.sweep_interval_s)


def _version() -> str:
    try:
        return metadata.version("makeitmove")
    except metadata.PackageNotFoundError:
        return "0+unknown"
