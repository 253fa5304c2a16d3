"""The dashboard's pages through the real app on aiohttp's test client: the gate, sign-in, CSRF, and each form.

The browser tests (test_browser.py) drive the same pages in Chromium; these run everywhere, fast.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image
from safetensors.numpy import save_file

from engine.config import Settings
from engine.pipeline import Pipeline
from engine.service.app import create_app
from engine.service.keys import Tokens
from engine.service.web.routes import ROUTES
from engine.service.web.sessions import SESSION_COOKIE
from tests.support.memes import meme
from tests.web.world import ADMIN, BOT, SMALL, TOKENS, csrf_of, settings_for

BOT_AUTH = {"Authorization": f"Bearer {BOT}"}
SAMPLE = {"id": "0" * 32, "name": "some-checkpoint", "platform": "telegram", "user_id": "42"}
Scenario = Callable[[TestClient], Awaitable[None]]


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    """The real CPU pipeline, shared by this module's apps."""
    from engine.config import load_settings

    return Pipeline(load_settings())


def run(settings: Settings, pipeline: Any, scenario: Scenario, tokens: Tokens = TOKENS) -> None:
    """Serve a fresh app and run one scenario against it."""

    async def main() -> None:
        app = create_app(settings, tokens=tokens, pipeline_factory=lambda _: pipeline)
        async with TestClient(TestServer(app)) as client:
            await asyncio.wait_for(scenario(client), 120)

    asyncio.run(main())


def concrete(path: str) -> str:
    """A route's path with sample values in its placeholders."""
    path = path.replace("{id:[0-9a-f]{32}}", SAMPLE["id"])
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: SAMPLE[m.group(1)], path)


async def sign_in(client: TestClient, token: str = ADMIN, *, next_page: str = "/admin/queue") -> aiohttp.ClientResponse:
    """Fill in the sign-in form as a browser would (its own CSRF token first)."""
    async with client.get("/admin/signin") as form_page:
        token_field = re.search(r'name="csrf" value="([0-9a-f]{64})"', await form_page.text())
    assert token_field is not None
    data = {"csrf": token_field.group(1), "token": token, "next": next_page}
    response = await client.post("/admin/signin", data=data, allow_redirects=False)
    await response.read()
    return response


async def page_csrf(client: TestClient, path: str = "/admin/queue") -> str:
    async with client.get(path) as response:
        assert response.status == 200, await response.text()
        return csrf_of(await response.text())


def write_lora(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.safetensors"
    save_file({"down.lora_A.weight": np.zeros((2, 4), np.float32)}, str(path), metadata={"rank": "2"})
    return path


# --- the gate ------------------------------------------------------------------------------------------
def test_every_page_without_a_session_sends_the_browser_to_sign_in(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        gets = [concrete(path) for method, path, _ in ROUTES if method == "GET" and path != "/admin/signin"]
        gets = [p for p in gets if p.startswith("/admin")]
        assert len(gets) >= 10
        for path in gets:
            async with client.get(path, allow_redirects=False) as response:
                assert response.status == 303, (path, response.status)
                assert response.headers["Location"].startswith("/admin/signin?next="), path
        for method, path, _ in ROUTES:
            if method == "POST" and path.startswith("/admin") and path != "/admin/signin":
                async with client.post(concrete(path), data={"x": "1"}, allow_redirects=False) as response:
                    text = await response.text()
                    assert response.status == 403, (path, response.status)
                    assert response.content_type == "text/html" and "sign in again" in text, path
        async with client.get("/admin/queue/events", allow_redirects=False) as response:
            assert response.status == 303  # no event stream without a session either

    run(settings_for(tmp_path), pipeline, scenario)


def test_every_form_without_its_csrf_token_is_refused(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        assert (await sign_in(client)).status == 303
        token = await page_csrf(client)
        other = "f" * 64
        for method, path, _ in ROUTES:
            if method != "POST" or path == "/admin/signin":
                continue
            for data in ({}, {"csrf": other}):
                async with client.post(concrete(path), data=data, allow_redirects=False) as response:
                    text = await response.text()
                    assert response.status == 403, (path, data, response.status)
                    assert "reload the page" in text, path
            multipart = aiohttp.FormData()
            multipart.add_field("csrf", other)
            multipart.add_field("file", b"x" * 10, filename="a.safetensors")
            async with client.post(concrete(path), data=multipart, allow_redirects=False) as response:
                assert response.status == 403, (path, "multipart", response.status)
        # the right token from another site's page is still refused
        async with client.post("/admin/limits", data={"csrf": token}, headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 403 and "another site" in await r.text()
        # nothing any refused form asked for happened
        async with client.get("/admin/limits") as response:
            assert "Nobody is banned." in await response.text()

    run(settings_for(tmp_path), pipeline, scenario)


# --- sign-in and sign-out ------------------------------------------------------------------------------
def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_it(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        wrong = await sign_in(client, "not-the-token")
        assert wrong.status == 401 and SESSION_COOKIE not in wrong.cookies
        response = await sign_in(client, next_page="/admin/jobs?status=done")
        assert response.status == 303 and response.headers["Location"] == "/admin/jobs?status=done"
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Max-Age=43200" in cookie and "Secure" not in cookie  # plain HTTP on loopback
        secret = response.cookies[SESSION_COOKIE].value
        for path in ("/admin/queue", "/admin/jobs", "/admin/checkpoints", "/admin/limits", "/admin/stats", "/gallery"):
            async with client.get(path) as page:
                html = await page.text()
                assert page.status == 200, path
                assert ADMIN not in html and secret not in html and ADMIN not in str(page.url), path
        token = await page_csrf(client)
        async with client.post("/admin/signout", data={"csrf": token}, allow_redirects=False) as out:
            assert out.status == 303 and out.headers["Location"].startswith("/admin/signin")
        # the old cookie, sent again by hand, opens nothing: the session is gone on the server
        client.session.cookie_jar.update_cookies({SESSION_COOKIE: secret})
        async with client.get("/admin/queue", allow_redirects=False) as again:
            assert again.status == 303

    run(settings_for(tmp_path), pipeline, scenario)


def test_the_cookie_is_secure_behind_https_and_next_never_leaves_the_dashboard(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    async def scenario(client: TestClient) -> None:
        async with client.get("/admin/signin") as form_page:
            token = csrf_of(await form_page.text())
        for target, expected in (
            ("https://evil.example/", "/admin/queue"),
            ("//evil.example/admin/", "/admin/queue"),
            ("/v1/admin/limits", "/admin/queue"),
            ("/admin/stats?window=7d", "/admin/stats?window=7d"),
        ):
            data = {"csrf": token, "token": ADMIN, "next": target}
            headers = {"X-Forwarded-Proto": "https"}
            async with client.post("/admin/signin", data=data, headers=headers, allow_redirects=False) as response:
                assert response.headers["Location"] == expected, target
                assert "Secure" in response.headers["Set-Cookie"]
            client.session.cookie_jar.clear()
            async with client.get("/admin/signin") as form_page:
                token = csrf_of(await form_page.text())

    run(settings_for(tmp_path), pipeline, scenario)


def test_sign_in_attempts_are_rate_limited_per_address(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        for _ in range(3):
            assert (await sign_in(client, "wrong")).status == 401
        limited = await sign_in(client, ADMIN)  # even the right token waits out the window
        assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
        async with client.get("/admin/queue", allow_redirects=False) as response:
            assert response.status == 303

    run(settings_for(tmp_path, web={"signin_attempts": 3}), pipeline, scenario)


def test_without_an_admin_token_the_dashboard_is_off(tmp_path: Path, pipeline: Pipeline) -> None:
    async def scenario(client: TestClient) -> None:
        async with client.get("/admin/signin") as response:
            assert response.status == 403 and "ENGINE_ADMIN_TOKEN" in await response.text()
            assert 'name="token"' not in await response.text()

    run(settings_for(tmp_path), pipeline, scenario, tokens=Tokens(BOT, None))


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


def test_bytes_a_client_sends_to_the_pages_never_cause_a_500(tmp_path: Path, pipeline: Pipeline) -> None:
    junk = bytes(range(256)) * 8
    bodies: list[tuple[dict[str, str], bytes]] = [
        ({"Content-Type": "application/x-www-form-urlencoded"}, junk),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"token=%ff%fe&csrf=%00&next=%0d%0a"),
        ({"Content-Type": "multipart/form-data; boundary=xx"}, junk),
        ({"Content-Type": "multipart/form-data"}, b"--\r\n"),
        ({"Content-Type": "application/json"}, b'{"token": "x"}'),
        ({"Content-Type": "text/plain"}, b""),
    ]

    async def probe(client: TestClient) -> None:
        for method, path, _ in ROUTES:
            target = concrete(path)
            if method == "GET":
                for query in ("?page=%ff&since=99999-99-99&status=%00", "?next=%0d%0aSet-Cookie:x&window=%ff"):
                    async with client.get(target + query, allow_redirects=False) as response:
                        assert response.status < 500, (target, query, response.status)
                continue
            for headers, body in bodies:
                async with client.post(target, data=body, headers=headers, allow_redirects=False) as response:
                    assert response.status < 500, (target, headers, response.status)
                    assert "Traceback" not in await response.text()

    async def scenario(client: TestClient) -> None:
        await probe(client)  # signed out
        await sign_in(client)
        await probe(client)  # signed in, with no or a wrong CSRF token
        client.session.cookie_jar.clear()
        for value in ("%" * 43, "a" * 43, "a" * 5000, '"quoted"'):  # malformed, or well-formed but never issued
            headers = {"Cookie": f"{SESSION_COOKIE}={value}"}
            async with client.get("/admin/queue", headers=headers, allow_redirects=False) as response:
                assert response.status == 303, value

    run(settings_for(tmp_path), pipeline, scenario)
