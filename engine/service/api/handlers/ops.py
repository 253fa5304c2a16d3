"""Operational endpoints: health, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

from aiohttp import web

from engine.service.api.middleware import json_model
from engine.service.api.models import Health
from engine.service.keys import METRICS, OPENAPI, PIPELINE, REPOSITORY
from engine.service.metrics import CONTENT_TYPE


async def health(request: web.Request) -> web.Response:
    """GET /v1/health: no token needed; says whether the pipeline is loaded and how deep the queue is."""
    depth = len(await request.app[REPOSITORY].queued_ids())
    return json_model(Health(status="ok", pipeline_loaded=PIPELINE in request.app, queue_depth=depth))


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text, database counts refreshed at scrape time."""
    registry = request.app[METRICS]
    registry.refresh(await request.app[REPOSITORY].stats())
    return web.Response(body=registry.render(), headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    """GET /v1/openapi.json: the OpenAPI 3.1 document of this API."""
    return web.json_response(request.app[OPENAPI])
