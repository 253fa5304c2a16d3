"""Schemathesis runs the engine's own OpenAPI document against a live loopback server: no 5xx, answers as documented."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import requests
import schemathesis
from aiohttp import web
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from engine.config import load_settings, replace
from engine.pipeline import Pipeline
from engine.service.api.routes import ROUTES, Route
from engine.service.app import create_app
from engine.service.keys import Tokens

TOKEN, ADMIN = "schema-bot-token", "schema-admin-token"
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real app on a real loopback port, served by an event loop in a background thread."""
    tmp: Path = tmp_path_factory.mktemp("schema")
    settings = replace(
        load_settings(),
        storage={"url": f"sqlite:///{tmp / 'engine.db'}"},
        checkpoints={"dir": str(tmp / "ckpt")},
        generate={"frames": 2},
        encode={"size": 64},
        engine={"max_body_bytes": 1_000_000},
    )
    pipeline = Pipeline(settings)
    app = create_app(settings, tokens=Tokens(TOKEN, ADMIN), pipeline_factory=lambda _: pipeline)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="schema-server", daemon=True)
    thread.start()
    runner = web.AppRunner(app)

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    url = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=60)
    try:
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture(scope="module")
def api_schema(live_url: str) -> schemathesis.BaseSchema:
    """The document as the server serves it."""
    return schemathesis.openapi.from_url(f"{live_url}/v1/openapi.json")


def test_the_document_lists_every_route(live_url: str) -> None:
    spec = requests.get(f"{live_url}/v1/openapi.json", timeout=10).json()
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert documented == {(r.method, r.path) for r in ROUTES}
    assert set(spec["components"]["securitySchemes"]) == {"botToken", "adminToken"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert "500" in operation["responses"], (method, path)
            if operation["security"]:
                assert "401" in operation["responses"], (method, path)


# schemathesis' own pytest plugin does not load under pytest 9, so each operation runs as a plain hypothesis test.
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_the_api_answers_as_documented(api_schema: schemathesis.BaseSchema, route: Route, mode: GenerationMode) -> None:
    if mode is GenerationMode.NEGATIVE and not (route.params or route.body):
        pytest.skip("nothing to make invalid: the operation takes no input")
    operation = api_schema[route.path][route.method]

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=20, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(hypothesis.HealthCheck), phases=[hypothesis.Phase.generate],
    )  # fmt: skip
    def check(case: schemathesis.Case) -> None:
        # The admin token is accepted everywhere, so every operation is reachable.
        case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN}"}, checks=CHECKS)

    check()
