"""The engine API refuses bad images, bad options and broken requests with a JSON sentence, never a trace."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from engine.config import load_settings
from engine.pipeline import Pipeline
from engine.service.api.handlers import jobs as handlers_jobs
from tests.service.api_world import (
    AUTH,
    TOKEN,
    assert_error,
    get_json,
    meme,
    run,
    submit,
)


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    """The real CPU pipeline, built once: apps in this module share it, each with its own database."""
    return Pipeline(load_settings())


def test_bad_images_are_refused_with_a_sentence(tmp_path: Path, pipeline: Pipeline) -> None:
    png = meme()
    cases = [
        (b"%PDF-1.7 not a meme", 415, "not_an_image", "PDF"),
        (b"II*\x00" + bytes(64), 415, "unsupported_format", "TIFF"),
        (png[: len(png) // 2], 400, "damaged", "damaged"),
        (meme(20, 20), 400, "too_small", "too small"),
        (b"", 400, "empty", "empty"),
        (png + bytes(5000), 413, "too_large", "too large"),
    ]

    async def scenario(client: TestClient) -> None:
        for data, expected, code, words in cases:
            status, body, _ = await submit(client, data)
            assert_error(status, body, expected, code)
            assert words in body["message"], body
        form = aiohttp.FormData({"platform": "test", "user_id": "u1", "chat_id": "c1"})
        async with client.post("/v1/jobs", data=form, headers=AUTH) as response:
            assert_error(response.status, await response.json(), 415, "not_multipart")
        status, body, _ = await submit(client, png)  # the cap is the intake's, and this one fits
        assert status == 202, body

    run(tmp_path, pipeline, scenario, intake={"max_bytes": len(png) + 1000})


def test_bad_options_are_refused_with_a_sentence(tmp_path: Path, pipeline: Pipeline) -> None:
    cases: list[tuple[Any, str]] = [
        ({"frames": 4, "sparkles": True}, "sparkles"),
        ({"frames": 1000}, "frames"),
        ({"motion": "wild"}, "motion"),
        ({"camera": "../zoom"}, "camera"),
        ({"format": "avi"}, "format"),
        ({"seed": -1}, "seed"),
        ("{not json", "JSON"),
        ("[1, 2]", "JSON object"),
    ]

    async def scenario(client: TestClient) -> None:
        for options, words in cases:
            status, body, _ = await submit(client, options=options)
            assert_error(status, body, 400, "bad_options")
            assert words in body["message"], body
        status, body, _ = await submit(client, is_admin="maybe")
        assert_error(status, body, 400, "bad_form")
        status, body, _ = await submit(client, user="bad user!")
        assert_error(status, body, 400, "bad_form")
        assert "user_id" in body["message"]

    run(tmp_path, pipeline, scenario)


def test_every_error_is_json(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        status, body = await get_json(client, "/nowhere")
        assert_error(status, body, 404, "not_found")
        status, body = await get_json(client, "/v1/jobs/" + "f" * 32)
        assert_error(status, body, 404, "job_not_found")
        async with client.put("/v1/jobs", headers=AUTH) as response:
            assert_error(response.status, await response.json(), 405, "method_not_allowed")
            assert "POST" in response.headers["Allow"]
        status, body, _ = await submit(client, meme() + bytes(300_000))
        assert_error(status, body, 413, "too_large")
        broken = b"--xyz\r\nContent-Disposition: form-data; name=image\r\n\r\nabc"  # never closed
        headers = AUTH | {"Content-Type": "multipart/form-data; boundary=xyz"}
        async with client.post("/v1/jobs", data=broken, headers=headers) as response:
            assert_error(response.status, await response.json(), 400)

    run(tmp_path, pipeline, scenario, engine={"max_body_bytes": 200_000})


def test_internal_errors_are_one_calm_line(
    tmp_path: Path, pipeline: Pipeline, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def bug(request: Any) -> Any:  # a handler that hits a bug, to see what a 500 looks like
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(handlers_jobs, "read_form", bug)

    async def scenario(client: TestClient) -> None:
        status, body, _ = await submit(client)
        assert_error(status, body, 500, "internal")
        assert "secret" not in json.dumps(body)

    with caplog.at_level(logging.ERROR, logger="engine.service.api.middleware"):
        run(tmp_path, pipeline, scenario)
    assert "secret internal detail" in caplog.text and "Traceback" in caplog.text
    assert TOKEN not in caplog.text


def test_a_connection_error_of_ours_is_a_500_not_the_clients_fault(
    tmp_path: Path, pipeline: Pipeline, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def database_gone(request: Any) -> Any:  # e.g. PostgreSQL refusing connections while the client waits
        raise ConnectionRefusedError("database at 127.0.0.1:5432 refused")

    monkeypatch.setattr(handlers_jobs, "read_form", database_gone)

    async def scenario(client: TestClient) -> None:
        status, body, _ = await submit(client)
        assert_error(status, body, 500, "internal")

    with caplog.at_level(logging.ERROR, logger="engine.service.api.middleware"):
        run(tmp_path, pipeline, scenario)
    assert "ConnectionRefusedError" in caplog.text and "Traceback" in caplog.text
