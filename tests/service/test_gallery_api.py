"""POST /v1/jobs/{id}/share and JobView.shareable on the real app: who may share, and what can be shared."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from engine.config import load_settings
from engine.pipeline import Pipeline
from engine.service.api.handlers.gallery import GALLERY_OFF, NOT_REQUESTER, REMOVED
from engine.service.keys import REPOSITORY
from storage.records import NewJob
from storage.repository import Repository
from tests.service.api_world import ADMIN_AUTH, AUTH, assert_error, events, get_json, run, submit

PUBLIC = {"public": True}
ALICE = {"platform": "test", "user_id": "u1"}


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    """The real CPU pipeline, built once: apps in this module share it, each with its own database."""
    return Pipeline(load_settings())


async def done_job(client: TestClient) -> dict[str, Any]:
    """A finished animation asked for by ALICE, as its event stream ends."""
    status, body, _ = await submit(client, user=ALICE["user_id"])
    assert status == 202, body
    final = (await events(client, body["id"]))[-1]
    assert final["status"] == "done", final
    return final


async def share(
    client: TestClient, job_id: str, who: dict[str, str] | None = ALICE, *, query: bool = False,
    headers: dict[str, str] = AUTH,
) -> tuple[int, dict[str, Any]]:  # fmt: skip
    """POST the share as `who`, in a JSON body (or the query)."""
    sent: dict[str, Any] = {"params": who} if query else {"json": who}
    async with client.post(f"/v1/jobs/{job_id}/share", headers=headers, **sent) as response:
        return response.status, await response.json()


def repository(client: TestClient) -> Repository:
    """The app's own repository, to look at what was stored."""
    return client.server.app[REPOSITORY]


def test_the_requester_shares_a_done_animation_once_and_no_one_else_can(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        job = await done_job(client)
        assert job["shareable"] is True, "the last event says it can be shared"
        assert (await get_json(client, f"/v1/jobs/{job['id']}"))[1]["shareable"] is True
        listed = (await get_json(client, "/v1/users/test/u1/jobs"))[1]["jobs"]
        assert [j["shareable"] for j in listed] == [True]

        for who, headers in (
            ({"platform": "test", "user_id": "u2"}, AUTH),
            (None, ADMIN_AUTH),
            (ALICE | {"platform": "x"}, ADMIN_AUTH),
        ):
            status, body = await share(client, job["id"], who, headers=headers)
            assert_error(status, body, 403, "not_requester")
            assert body["message"] == NOT_REQUESTER
        assert await repository(client).gallery(10) == [], "a refused share shares nothing"

        status, shared = await share(client, job["id"], query=True)
        assert status == 200 and shared["job_id"] == job["id"] and shared["shared"] is True, shared
        assert datetime.fromisoformat(shared["shared_at"]) <= datetime.now(timezone.utc)
        assert await share(client, job["id"]) == (200, shared), "sharing again answers the first share"
        assert [e.job_id for e in await repository(client).gallery(10)] == [job["id"]]

        assert await repository(client).remove_from_gallery(job["id"])
        status, body = await share(client, job["id"])
        assert_error(status, body, 409, "removed")
        assert body["message"] == REMOVED

        assert_error(*await share(client, "0" * 32), 404, "job_not_found")
        assert_error(*await share(client, job["id"], {"platform": "test", "user_id": "no spaces"}), 400)

    run(tmp_path, pipeline, scenario, gallery=PUBLIC)


def test_only_a_done_animation_or_remix_with_its_result_kept_can_be_shared(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        repo = repository(client)
        job = await done_job(client)
        assert await repo.sweep(retention_days=1, now=datetime.now(timezone.utc) + timedelta(days=2)) == 1
        assert (await get_json(client, f"/v1/jobs/{job['id']}"))[1]["shareable"] is False
        status, body = await share(client, job["id"])
        assert_error(status, body, 409, "not_shareable")
        assert "no longer kept" in body["message"]

        # Stored, never queued to the worker: they stay as they are for as long as the test looks.
        waiting = (await repo.submit(NewJob(chat_id="c1", is_admin=False, options={}, seed=1, image=b"x", **ALICE))).job
        tune = NewJob(chat_id="c1", is_admin=True, options={"name": "wiggle"}, seed=1, image=b"x", kind="tune", **ALICE)
        tuning = (await repo.submit(tune)).job
        for job_id, words in ((waiting.id, "finished"), (tuning.id, "not a checkpoint")):
            status, body = await share(client, job_id)
            assert_error(status, body, 409, "not_shareable")
            assert words in body["message"], body
            assert (await get_json(client, f"/v1/jobs/{job_id}"))[1]["shareable"] is False
        assert await repo.gallery(10) == []

    run(tmp_path, pipeline, scenario, gallery=PUBLIC)


def test_with_the_gallery_off_nothing_is_shareable(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        job = await done_job(client)
        assert job["shareable"] is False
        assert_error(*await share(client, job["id"], {"platform": "test", "user_id": "u2"}), 403, "not_requester")
        status, body = await share(client, job["id"])
        assert_error(status, body, 409, "gallery_off")
        assert body["message"] == GALLERY_OFF
        assert await repository(client).gallery_entry(job["id"]) is None

    run(tmp_path, pipeline, scenario)
