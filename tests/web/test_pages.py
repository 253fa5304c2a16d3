"""The dashboard's pages through the real app on aiohttp's test client: each form, the history and the gallery.

The browser tests (test_browser.py) drive the same pages in Chromium; these run everywhere, fast.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from PIL import Image

from engine.pipeline import Pipeline
from tests.support.memes import meme
from tests.web.client import BOT_AUTH, page_csrf, run, sign_in, write_lora
from tests.web.world import SMALL, settings_for


# --- the pages' forms ----------------------------------------------------------------------------------
def test_limits_and_bans_forms_apply_to_the_next_submission(tmp_path: Path, pipeline: Pipeline) -> None:
    async def submit(client: TestClient, user: str) -> tuple[int, dict[str, Any]]:
        form = aiohttp.FormData()
        form.add_field("image", meme(), filename="meme.png", content_type="image/png")
        form.add_field("options", json.dumps(SMALL))
        for name, value in {"platform": "telegram", "user_id": user, "chat_id": "c1"}.items():
            form.add_field(name, value)
        async with client.post("/v1/jobs", data=form, headers=BOT_AUTH) as response:
            return response.status, await response.json()

    async def scenario(client: TestClient) -> None:
        await sign_in(client)
        token = await page_csrf(client, "/admin/limits")
        limits = {"user_jobs": "1", "user_window_s": "600", "user_concurrent": "5", "chat_jobs": "1,000",
                  "chat_window_s": "600", "queue_max": "100"}  # fmt: skip
        bad = dict(limits, user_jobs="-3")
        async with client.post("/admin/limits", data={"csrf": token, **bad}) as response:
            assert response.status == 400 and "user_jobs" in await response.text()
        async with client.post("/admin/limits", data={"csrf": token, **limits}) as response:
            assert response.status == 200 and "The limits are saved" in await response.text()
        assert (await submit(client, "alice"))[0] == 202
        status, body = await submit(client, "alice")
        assert status == 429 and body["code"] == "rate_limited"

        ban = {"csrf": token, "platform": "telegram", "user_id": "mallory", "reason": "spam <b>bold</b>"}
        async with client.post("/admin/bans", data=ban) as response:
            html = await response.text()
            assert "The user is banned" in html and "spam &lt;b&gt;bold&lt;/b&gt;" in html
        status, body = await submit(client, "mallory")
        assert status == 403 and body["code"] == "banned"
        async with client.post("/admin/bans/telegram/mallory/lift", data={"csrf": token}) as response:
            assert "The ban is lifted" in await response.text()
        assert (await submit(client, "mallory"))[0] == 202

    run(settings_for(tmp_path), pipeline, scenario)


def test_checkpoint_upload_is_checked_capped_and_never_leaves_a_partial_file(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    good = tmp_path / "made" / "good.safetensors"
    write_lora(good.parent, "good")
    folder = tmp_path / "ckpt"

    async def upload(client: TestClient, token: str, data: bytes, name: str = "", filename: str = "x.safetensors"):
        form = aiohttp.FormData()
        form.add_field("csrf", token)
        form.add_field("name", name)
        form.add_field("file", data, filename=filename, content_type="application/octet-stream")
        async with client.post("/admin/checkpoints/upload", data=form) as response:
            return response.status, await response.text()

    async def scenario(client: TestClient) -> None:
        await sign_in(client)
        token = await page_csrf(client, "/admin/checkpoints")
        status, html = await upload(client, token, b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
        assert status == 400 and "That file isn&#39;t a checkpoint I can use" in html
        status, html = await upload(client, token, b"\0" * (2 * 1024 * 1024))
        assert status == 413 and "larger than the 1 MB limit" in html
        status, html = await upload(client, token, good.read_bytes(), name="../../etc/passwd")
        assert status == 400 and "never a path" in html
        status, html = await upload(client, token, good.read_bytes(), filename="my-lora.safetensors")
        assert status == 200 and "The checkpoint is uploaded" in html and "my-lora" in html
        status, html = await upload(client, token, good.read_bytes(), name="my-lora")
        assert status == 400 and "already a checkpoint called my-lora" in html
        assert sorted(p.name for p in folder.iterdir()) == ["my-lora.safetensors"]  # no partial dot-files left

        async with client.post("/admin/checkpoints/active", data={"csrf": token, "name": "nope"}) as response:
            assert response.status == 400 and "There is no checkpoint called nope" in await response.text()
        async with client.post("/admin/checkpoints/active", data={"csrf": token, "name": "my-lora"}) as response:
            assert "jobs that start from now on use it" in await response.text()
        async with client.post("/admin/checkpoints/my-lora/delete", data={"csrf": token}) as response:
            assert response.status == 400 and "is the active checkpoint" in await response.text()
        async with client.post("/admin/checkpoints/active", data={"csrf": token, "name": ""}) as response:
            assert "No checkpoint is active now" in await response.text()
        async with client.post("/admin/checkpoints/my-lora/delete", data={"csrf": token}) as response:
            assert "The checkpoint is deleted" in await response.text()
        assert list(folder.iterdir()) == []

    run(settings_for(tmp_path, web={"max_upload_mb": 1}), pipeline, scenario)


def test_training_and_tuning_say_what_they_need_on_a_cpu_engine(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        await sign_in(client)
        async with client.get("/admin/checkpoints") as response:
            html = await response.text()
            assert "needs the engine&#39;s GPU video backend" in html and 'action="/admin/trainings"' not in html
        token = await page_csrf(client, "/admin/checkpoints")
        data = {"csrf": token, "dataset": "memes", "name": "x"}
        async with client.post("/admin/trainings", data=data) as response:
            assert response.status == 409 and "GPU video backend" in await response.text()

    run(settings_for(tmp_path), pipeline, scenario)


def test_history_job_page_thumbnail_and_preview_of_a_real_job(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        form = aiohttp.FormData()
        form.add_field("image", meme(), filename="meme.png", content_type="image/png")
        form.add_field("options", json.dumps(SMALL))
        for name, value in {"platform": "discord", "user_id": "bob", "chat_id": "room"}.items():
            form.add_field(name, value)
        async with client.post("/v1/jobs", data=form, headers=BOT_AUTH) as response:
            job_id = (await response.json())["id"]
        async with client.get(f"/v1/jobs/{job_id}/events", headers=BOT_AUTH) as response:
            async for _ in response.content:
                pass  # the stream ends with the job's final state
        await sign_in(client)
        async with client.get("/admin/jobs?platform=discord&user=bob&status=done") as response:
            html = await response.text()
            assert job_id in html and f"/admin/jobs/{job_id}/input" in html and f"/admin/jobs/{job_id}/result" in html
        async with client.get("/admin/jobs?platform=telegram") as response:
            assert job_id not in await response.text()
        async with client.get("/admin/jobs?status=exploded&since=yesterday") as response:
            html = await response.text()
            assert "status filter must be one of" in html and "date must look like" in html and job_id in html
        async with client.get(f"/admin/jobs/{job_id}") as response:
            html = await response.text()
            backend = pipeline.settings.generate.backend
            for part in ("Timings", "Backends", backend, "motion_prompt", "&#34;frames&#34;: 4"):
                assert part in html, part
        async with client.get(f"/admin/jobs/{job_id}/input") as response:
            assert response.status == 200 and response.content_type == "image/png"
            thumb = Image.open(io.BytesIO(await response.read()))
            assert max(thumb.size) <= 192
        async with client.get(f"/admin/jobs/{job_id}/result") as response:
            assert response.status == 200 and response.content_type == "image/gif"
        async with client.get(f"/admin/jobs/{'a' * 32}") as response:
            assert response.status == 404 and response.content_type == "text/html"
        async with client.get("/admin/nowhere") as response:
            assert response.status == 404 and "nothing at that address" in await response.text()
        async with client.get("/v1/nowhere", headers=BOT_AUTH) as response:
            assert response.status == 404 and response.content_type == "application/json"  # the API stays JSON

    run(settings_for(tmp_path), pipeline, scenario)


def test_the_gallery_is_private_unless_public(tmp_path: Path, pipeline: Pipeline) -> None:
    async def private(client: TestClient) -> None:
        async with client.get("/gallery") as response:
            assert response.status == 404
        await sign_in(client)
        async with client.get("/gallery") as response:
            assert response.status == 200 and "The gallery is private" in await response.text()

    async def public(client: TestClient) -> None:
        async with client.get("/gallery") as response:
            html = await response.text()
            assert response.status == 200 and "Nothing has been shared yet." in html and "Sign out" not in html

    run(settings_for(tmp_path), pipeline, private)
    run(settings_for(tmp_path / "public", gallery={"public": True}), pipeline, public)


def test_a_shared_result_shows_in_the_public_gallery_until_an_admin_removes_it(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    async def scenario(client: TestClient) -> None:
        form = aiohttp.FormData()
        form.add_field("image", meme(), filename="meme.png", content_type="image/png")
        form.add_field("options", json.dumps(SMALL))
        for name, value in {"platform": "telegram", "user_id": "zoe", "chat_id": "c9"}.items():
            form.add_field(name, value)
        async with client.post("/v1/jobs", data=form, headers=BOT_AUTH) as response:
            job_id = (await response.json())["id"]
        async with client.get(f"/v1/jobs/{job_id}/events", headers=BOT_AUTH) as response:
            async for _ in response.content:
                pass
        requester = {"platform": "telegram", "user_id": "zoe"}
        async with client.post(f"/v1/jobs/{job_id}/share", json=requester, headers=BOT_AUTH) as response:
            assert response.status == 200, await response.text()
        async with client.get("/gallery") as response:  # anyone, no session
            html = await response.text()
            assert f"/gallery/{job_id}/media" in html and "Remove" not in html
        async with client.get(f"/gallery/{job_id}/media") as response:
            assert response.status == 200 and response.content_type == "image/gif"
        async with client.get(f"/gallery/{'b' * 32}/media") as response:
            assert response.status == 404  # only what is in the gallery is served here
        await sign_in(client)
        token = await page_csrf(client, "/gallery")
        async with client.post(f"/admin/gallery/{job_id}/remove", data={"csrf": token}) as response:
            assert response.status == 200 and "Removed from the gallery." in await response.text()
        client.session.cookie_jar.clear()
        async with client.get("/gallery") as response:
            assert job_id not in await response.text()
        async with client.get(f"/gallery/{job_id}/media") as response:
            assert response.status == 404
        async with client.post(f"/v1/jobs/{job_id}/share", json=requester, headers=BOT_AUTH) as response:
            assert response.status == 409 and (await response.json())["code"] == "removed"

    run(settings_for(tmp_path, gallery={"public": True}), pipeline, scenario)
