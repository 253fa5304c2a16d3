"""The engine API end to end: submit, follow, fetch, cancel, limits, bans, checkpoints, history."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy
from aiohttp.test_utils import TestClient
from PIL import Image

from engine.config import load_settings
from engine.errors import ConfigError
from engine.pipeline import Pipeline
from engine.service.app import create_app
from engine.service.keys import Tokens
from tests.service.api_world import (
    ADMIN,
    ADMIN_AUTH,
    AUTH,
    FINAL,
    SLOW,
    TOKEN,
    assert_error,
    events,
    get_json,
    make_settings,
    run,
    submit,
)


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    """The real CPU pipeline, built once: apps in this module share it, each with its own database."""
    return Pipeline(load_settings())


def test_submit_follow_the_events_and_fetch_the_gif(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        status, body, _ = await submit(client)
        assert status == 202 and set(body) == {"id", "status", "position"}, body
        assert body["status"] == "queued" and body["position"] in (1, None)
        seen = await events(client, body["id"])
        assert seen[-1]["status"] == "done", seen[-1]
        fractions = [e["progress"]["fraction"] for e in seen]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0
        assert len({json.dumps(e, sort_keys=True) for e in seen}) == len(seen)  # only changes are sent

        async with client.get(f"/v1/jobs/{body['id']}/result", headers=AUTH) as response:
            assert response.status == 200 and response.content_type == "image/gif"
            assert f"makeitmove-{body['id']}.gif" in response.headers["Content-Disposition"]
            gif = Image.open(io.BytesIO(await response.read()))
        assert gif.format == "GIF" and gif.n_frames == 4 and max(gif.size) == 96

        status, job = await get_json(client, f"/v1/jobs/{body['id']}")
        assert status == 200 and job == seen[-1]
        assert set(job["timings"]) >= {"intake", "generate", "encode", "total"} and job["script"]["motion_prompt"]
        assert job["created_at"].endswith("Z") and job["finished_at"] >= job["created_at"]
        assert job["error"] is None and job["position"] is None and job["checkpoint"] is None

        async with client.get("/metrics", headers=AUTH) as response:
            text = await response.text()
        assert response.status == 200 and response.content_type == "text/plain"
        assert 'makeitmove_stage_seconds_count{stage="generate"} 1.0' in text
        assert 'makeitmove_jobs{status="done"} 1.0' in text and "makeitmove_queue_depth 0.0" in text
        assert 'makeitmove_submissions_total{outcome="accepted"} 1.0' in text

    run(tmp_path, pipeline, scenario)


def test_tokens_are_required_and_admin_is_separate(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, ADMIN_AUTH | {"X": "y"}):
            status, body = await get_json(client, "/v1/users/test/u1/quota", headers=headers)
            if headers.get("Authorization") == f"Bearer {ADMIN}":
                assert status == 200, body  # the admin token is accepted on bot endpoints too
            else:
                assert_error(status, body, 401, "unauthorized")
        async with client.get("/metrics") as response:
            assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
        status, body = await get_json(client, "/v1/admin/stats", headers=AUTH)
        assert_error(status, body, 401, "unauthorized")
        status, body = await get_json(client, "/v1/admin/stats", headers=ADMIN_AUTH)
        assert status == 200 and body["queue_depth"] == 0
        status, body = await get_json(client, "/v1/health", headers={})
        assert status == 200 and body == {"status": "ok", "pipeline_loaded": True, "queue_depth": 0}
        status, spec = await get_json(client, "/v1/openapi.json", headers={})
        assert status == 200 and spec["openapi"].startswith("3.1")

    run(tmp_path, pipeline, scenario)


def test_admin_api_is_disabled_without_an_admin_token(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        status, body = await get_json(client, "/v1/admin/stats", headers=AUTH)
        assert_error(status, body, 403, "admin_disabled")
        assert "admin API is disabled" in body["message"]

    run(tmp_path, pipeline, scenario, tokens=Tokens(TOKEN, None))


def test_a_non_loopback_host_needs_a_token(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, engine={"host": "0.0.0.0"})
    with pytest.raises(ConfigError, match="ENGINE_TOKEN"):
        create_app(settings, tokens=Tokens(None, ADMIN))
    create_app(settings, tokens=Tokens(TOKEN, None))  # with a token it may listen anywhere


def test_a_repeated_idempotency_key_is_the_same_job(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        first, one, _ = await submit(client, key="tg:42:1")
        again, two, _ = await submit(client, key="tg:42:1")
        other, three, _ = await submit(client, key="tg:42:2")
        assert (first, again, other) == (202, 200, 202)
        assert one["id"] == two["id"] != three["id"] and set(two) == set(one)
        status, body, _ = await submit(client, key="has space")
        assert_error(status, body, 400, "bad_idempotency_key")

    run(tmp_path, pipeline, scenario)


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        status, body, _ = await submit(client)
        assert status == 202, body
        status, body, response = await submit(client)
        assert_error(status, body, 429, "rate_limited")
        assert 0 < body["retry_after"] <= 600 and int(response.headers["Retry-After"]) >= 1
        status, body, _ = await submit(client, is_admin="true")  # admins are exempt
        assert status == 202, body
        status, quota = await get_json(client, "/v1/users/test/u1/quota")
        assert status == 200 and quota["jobs_left"] == 0 and quota["jobs_limit"] == 1

    run(tmp_path, pipeline, scenario, limits={"user": {"jobs": 1}})


def test_banned_users_get_403_until_the_ban_is_lifted(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        ban = {"platform": "test", "user_id": "u1", "reason": "spam"}
        async with client.post("/v1/admin/bans", json=ban, headers=AUTH) as response:
            assert response.status == 401
        async with client.post("/v1/admin/bans", json=ban, headers=ADMIN_AUTH) as response:
            body = await response.json()
            assert response.status == 200 and body["reason"] == "spam", body
        status, body, _ = await submit(client)
        assert_error(status, body, 403, "banned")
        async with client.delete("/v1/admin/bans/test/u1", headers=ADMIN_AUTH) as response:
            assert response.status == 200 and (await response.json())["lifted"] is True
        async with client.delete("/v1/admin/bans/test/u1", headers=ADMIN_AUTH) as response:
            assert_error(response.status, await response.json(), 404, "not_banned")
        status, body, _ = await submit(client)
        assert status == 202, body

    run(tmp_path, pipeline, scenario)


async def wait_final(client: TestClient, job_id: str) -> dict[str, Any]:
    seen = await events(client, job_id)
    assert seen and seen[-1]["status"] in FINAL, seen
    return seen[-1]


def test_only_the_requester_or_an_admin_may_cancel(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        _, busy, _ = await submit(client, options=SLOW, user="u9")
        _, mine, _ = await submit(client, user="u1")
        _, theirs, _ = await submit(client, user="u2")
        assert mine["position"] == 2 or mine["status"] == "queued", mine
        path = f"/v1/jobs/{mine['id']}"
        async with client.delete(path, params={"platform": "test", "user_id": "u2"}, headers=AUTH) as response:
            assert_error(response.status, await response.json(), 403, "not_your_job")
        async with client.delete(path, headers=AUTH) as response:
            assert_error(response.status, await response.json(), 403, "not_your_job")
        async with client.delete(path, json={"platform": "test", "user_id": "u1"}, headers=AUTH) as response:
            body = await response.json()
            assert response.status == 200 and body["status"] == "cancelled", body
        async with client.delete(f"/v1/jobs/{theirs['id']}", headers=ADMIN_AUTH) as response:
            assert response.status == 200 and (await response.json())["status"] == "cancelled"
        assert (await wait_final(client, mine["id"]))["status"] == "cancelled"
        assert (await wait_final(client, busy["id"]))["status"] == "done"
        async with client.delete("/v1/jobs/" + "0" * 32, headers=ADMIN_AUTH) as response:
            assert_error(response.status, await response.json(), 404, "job_not_found")

    run(tmp_path, pipeline, scenario)


def test_result_is_404_until_done_and_410_after_the_sweep(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        await submit(client, options=SLOW, user="u9")
        _, job, _ = await submit(client)
        status, body = await get_json(client, f"/v1/jobs/{job['id']}/result")
        assert_error(status, body, 404, "not_ready")
        assert (await wait_final(client, job["id"]))["status"] == "done"
        for _ in range(100):  # the sweep task runs every 0.1 s and keeps results for 0.1 s
            async with client.get(f"/v1/jobs/{job['id']}/result", headers=AUTH) as response:
                if response.status == 410:
                    assert (await response.json())["code"] == "result_expired"
                    break
                assert response.status == 200
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the result was never swept")
        status, after = await get_json(client, f"/v1/jobs/{job['id']}")
        assert status == 200 and after["status"] == "done"  # the history row stays

    run(tmp_path, pipeline, scenario, storage={"retention_days": 0.1 / 86400, "sweep_interval_s": 0.1})


def test_checkpoints_are_chosen_by_name_only(tmp_path: Path, pipeline: Pipeline) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for name in ("style-a", "style-b"):
        safetensors.numpy.save_file({"lora.down": np.zeros((2, 4), np.float32)}, str(folder / f"{name}.safetensors"))
    (tmp_path / "outside.safetensors").write_bytes((folder / "style-a.safetensors").read_bytes())

    async def put(client: TestClient, name: Any) -> tuple[int, Any]:
        async with client.put("/v1/admin/checkpoints/active", json={"name": name}, headers=ADMIN_AUTH) as response:
            return response.status, await response.json()

    async def scenario(client: TestClient) -> None:
        status, listing = await get_json(client, "/v1/admin/checkpoints", headers=ADMIN_AUTH)
        assert status == 200 and [c["name"] for c in listing["checkpoints"]] == ["style-a", "style-b"]
        assert listing["active"] is None and all(c["valid"] and not c["active"] for c in listing["checkpoints"])
        for bad in ("../outside", "/etc/passwd", "ckpt/style-a", "style-a.safetensors", "..", ""):
            status, body = await put(client, bad)
            assert_error(status, body, 400)
            assert body["code"] in ("bad_checkpoint_name", "unknown_checkpoint"), body
        status, body = await put(client, "missing")
        assert_error(status, body, 400, "unknown_checkpoint")
        status, body = await put(client, "style-b")
        assert status == 200 and body["active"] == "style-b", body
        _, job, _ = await submit(client)
        assert (await wait_final(client, job["id"]))["checkpoint"] == "style-b"
        status, body = await put(client, None)
        assert status == 200 and body["active"] is None
        async with client.put("/v1/admin/checkpoints/active", json={"path": "x"}, headers=ADMIN_AUTH) as response:
            assert_error(response.status, await response.json(), 400, "bad_body")

    run(tmp_path, pipeline, scenario)


def test_history_quota_limits_and_stats(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        ids = [(await submit(client))[1]["id"] for _ in range(2)]
        status, body = await get_json(client, "/v1/users/test/u1/jobs?limit=1")
        assert status == 200 and [j["id"] for j in body["jobs"]] == ids[1:]
        status, body = await get_json(client, "/v1/users/test/u1/jobs")
        assert [j["id"] for j in body["jobs"]] == ids[::-1]
        for limit in ("0", "101", "x"):
            status, body = await get_json(client, f"/v1/users/test/u1/jobs?limit={limit}")
            assert_error(status, body, 400, "bad_limit")
        status, quota = await get_json(client, "/v1/users/test/u1/quota")
        assert status == 200 and quota["jobs_left"] == quota["jobs_limit"] - 2
        limits = {"user_jobs": 9, "user_window_s": 60, "user_concurrent": 3, "chat_jobs": 20, "chat_window_s": 60,
                  "queue_max": 50}  # fmt: skip
        async with client.put("/v1/admin/limits", json=limits | {"queue_max": 0}, headers=ADMIN_AUTH) as response:
            assert_error(response.status, await response.json(), 400, "bad_body")
        async with client.put("/v1/admin/limits", json=limits, headers=ADMIN_AUTH) as response:
            assert response.status == 200 and await response.json() == limits
        status, quota = await get_json(client, "/v1/users/test/u1/quota")
        assert quota["jobs_limit"] == 9
        status, stats = await get_json(client, "/v1/admin/stats", headers=ADMIN_AUTH)
        assert status == 200 and sum(stats["jobs_by_status"].values()) == 2 and stats["users_last_24h"] == 1

    run(tmp_path, pipeline, scenario)
