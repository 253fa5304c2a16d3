"""The dashboard's gate through the real app: sessions, sign-in and its limit, CSRF, and junk from clients."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestClient

from engine.pipeline import Pipeline
from engine.service.keys import Tokens
from engine.service.web.routes import ROUTES
from engine.service.web.sessions import SESSION_COOKIE
from tests.web.client import concrete, page_csrf, run, sign_in
from tests.web.world import ADMIN, BOT, csrf_of, settings_for


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
