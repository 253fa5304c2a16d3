"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the real engine and real jobs.

Needs `chromium` (apt-get install chromium chromium-driver; .ci/run installs it) and `playwright` from PyPI,
which drives the system Chromium: nothing is downloaded. Every page's screenshot is saved to artifacts/web/.
Waits are Playwright's: each `expect` waits for the page to show something, up to a bound, never a fixed time.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from engine.config import load_settings
from engine.pipeline import Pipeline
from tests.web.world import ADMIN, ARTIFACTS, Engine, SteppingPipeline, settings_for

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
)
expect = playwright_api.expect

CHROMIUM = os.environ.get("MAKEITMOVE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# As root in a container Chromium needs --no-sandbox; the rest keep it off this closed network.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
PAGES = ("queue", "jobs", "checkpoints", "limits", "stats")
WAIT_MS = 30_000

if not Path(CHROMIUM).is_file():
    pytest.skip(
        f"Chromium not found at {CHROMIUM}: install Debian's chromium and chromium-driver "
        "(apt-get install chromium chromium-driver) or set MAKEITMOVE_CHROMIUM",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def real_pipeline() -> Pipeline:
    """The real CPU pipeline, built once for the module."""
    return Pipeline(load_settings())


@pytest.fixture
def engine(tmp_path: Path, real_pipeline: Pipeline) -> Iterator[Engine]:
    """The engine on a loopback port; its pipeline holds each job at `caption` and at `generate` until released."""
    pipeline = SteppingPipeline(real_pipeline, holds=("caption", "generate"))
    with Engine(settings_for(tmp_path, gallery={"public": True}), pipeline) as served:
        yield served


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; dialogs (confirmations) are accepted."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    yield tab
    context.close()


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as a test artefact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, engine: Engine, token: str = ADMIN) -> None:
    page.goto(f"{engine.url}/admin/queue")
    page.fill("#token", token)
    page.click("button[type=submit]")


def write_lora(directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_file({"down.lora_A.weight": np.zeros((2, 4), np.float32)}, str(directory / f"{name}.safetensors"))


def test_sign_in_with_a_wrong_then_the_right_token_and_out_again(engine: Engine, page: Any) -> None:
    page.goto(f"{engine.url}/admin/stats")
    expect(page).to_have_url(f"{engine.url}/admin/signin?next=/admin/stats")
    shot(page, "signin")
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_have_text("That isn't the admin token.")
    page.fill("#token", ADMIN)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{engine.url}/admin/stats")
    cookie = next(c for c in page.context.cookies() if c["name"] == "mim_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie").find("mim_admin") == -1  # scripts can't read it
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    page.goto(f"{engine.url}/admin/queue")
    expect(page).to_have_url(f"{engine.url}/admin/signin?next=/admin/queue")


def test_every_page_without_the_cookie_goes_to_sign_in(engine: Engine, page: Any) -> None:
    for name in (*PAGES, "jobs/" + "0" * 32):
        page.goto(f"{engine.url}/admin/{name}")
        expect(page).to_have_url(f"{engine.url}/admin/signin?next=/admin/{name}")
        expect(page.locator("#token")).to_be_visible()


def test_a_job_appears_and_moves_live_then_one_is_cancelled(engine: Engine, page: Any) -> None:
    sign_in(page, engine)
    expect(page).to_have_url(f"{engine.url}/admin/queue")
    expect(page.locator("#queue-live")).to_contain_text("Nothing queued or running.")
    page.evaluate("window.notReloaded = true")  # gone if the page reloads

    status, first = engine.submit(user="alice")
    assert status == 202, first
    row = page.locator(f'tr[data-job="{first["id"]}"]')
    expect(row).to_be_visible()  # appeared without a reload
    expect(row.locator(".stage")).to_contain_text("caption")
    status, second = engine.submit(user="bob", chat="c2")
    assert status == 202, second
    queued = page.locator(f'tr[data-job="{second["id"]}"]')
    expect(queued).to_contain_text("queued #1")
    shot(page, "queue")

    pipeline = engine.pipeline
    pipeline.go["caption"].set()
    expect(row.locator(".stage")).to_contain_text("generate")  # the progress moved live
    value = float(row.locator("progress").get_attribute("value") or 0)
    assert value > 0
    assert page.evaluate("window.notReloaded") is True

    queued.get_by_role("button", name="Cancel").click()
    expect(page.locator(f'tr[data-job="{second["id"]}"]')).to_have_count(0)
    assert engine.job(second["id"])["status"] == "cancelled"
    pipeline.go["generate"].set()
    expect(row).to_have_count(0)
    assert engine.wait_final(first["id"])["status"] == "done"
    expect(page.locator("#queue-live")).to_contain_text("Nothing queued or running.")


def test_switch_a_checkpoint_and_the_next_job_uses_it(engine: Engine, page: Any) -> None:
    engine.pipeline.release_all()
    write_lora(Path(engine.settings.checkpoints.dir), "wobble")
    sign_in(page, engine)
    page.goto(f"{engine.url}/admin/checkpoints")
    page.locator('tr[data-checkpoint="wobble"]').get_by_role("button", name="Use").click()
    expect(page.get_by_role("status")).to_contain_text("jobs that start from now on use it")
    expect(page.locator('tr[data-checkpoint="wobble"]')).to_contain_text("active")
    status, body = engine.submit(user="carol")
    assert status == 202, body
    assert engine.wait_final(body["id"])["checkpoint"] == "wobble"


def test_uploading_a_bad_file_shows_the_sentence(engine: Engine, page: Any, tmp_path: Path) -> None:
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    sign_in(page, engine)
    page.goto(f"{engine.url}/admin/checkpoints")
    page.set_input_files("#upload-file", str(bad))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("alert")).to_contain_text("That file isn't a checkpoint I can use")
    shot(page, "checkpoints-bad-upload")
    assert not any(Path(engine.settings.checkpoints.dir).glob("*"))


def test_a_lower_limit_refuses_the_next_submission(engine: Engine, page: Any) -> None:
    engine.pipeline.release_all()
    sign_in(page, engine)
    page.goto(f"{engine.url}/admin/limits")
    page.fill("#limit-user_jobs", "1")
    page.get_by_role("button", name="Save limits").click()
    expect(page.get_by_role("status")).to_contain_text("The limits are saved")
    assert engine.submit(user="dave")[0] == 202
    status, body = engine.submit(user="dave")
    assert status == 429 and body["code"] == "rate_limited", body


def test_a_banned_user_is_refused(engine: Engine, page: Any) -> None:
    sign_in(page, engine)
    page.goto(f"{engine.url}/admin/limits")
    page.fill("#ban-platform", "telegram")
    page.fill("#ban-user", "eve")
    page.fill("#ban-reason", "flooding the channel")
    page.get_by_role("button", name="Ban", exact=True).click()
    expect(page.locator('tr[data-ban="telegram:eve"]')).to_contain_text("flooding the channel")
    status, body = engine.submit(user="eve")
    assert status == 403 and body["code"] == "banned", body
    shot(page, "limits")


def test_a_form_without_its_csrf_token_is_refused(engine: Engine, page: Any) -> None:
    sign_in(page, engine)
    page.goto(f"{engine.url}/admin/limits")
    page.evaluate("document.querySelector('#limits-form input[name=csrf]').remove()")
    page.fill("#limit-user_jobs", "99")
    page.get_by_role("button", name="Save limits").click()
    expect(page.get_by_role("alert")).to_contain_text("This form has expired")
    page.goto(f"{engine.url}/admin/limits")
    expect(page.locator("#limit-user_jobs")).not_to_have_value("99")


def test_every_page_looks_right_on_a_desktop_and_a_phone(engine: Engine, page: Any, browser: Any) -> None:
    engine.pipeline.release_all()
    write_lora(Path(engine.settings.checkpoints.dir), "wobble")
    done = [engine.submit(user=f"user{n}", platform=p)[1]["id"] for n, p in enumerate(("telegram", "discord"))]
    for job_id in done:
        assert engine.wait_final(job_id)["status"] == "done"
    assert engine.share(done[0], "user0")[0] == 200
    sign_in(page, engine)
    for name in PAGES:
        page.goto(f"{engine.url}/admin/{name}")
        expect(page.locator("h1")).to_be_visible()
        page.wait_for_load_state("load")  # thumbnails and previews drawn
        shot(page, f"desktop-{name}")
    page.goto(f"{engine.url}/admin/jobs/{done[0]}")
    page.wait_for_load_state("load")
    shot(page, "desktop-job")
    page.goto(f"{engine.url}/gallery")
    expect(page.locator(f'figure[data-job="{done[0]}"] img')).to_be_visible()
    shot(page, "desktop-gallery")

    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1, is_mobile=True)
    tab = phone.new_page()
    sign_in(tab, engine)
    for name in PAGES:
        tab.goto(f"{engine.url}/admin/{name}")
        expect(tab.locator("h1")).to_be_visible()
        tab.wait_for_load_state("load")
        width = tab.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{name} scrolls sideways on a phone ({width} px)"
        shot(tab, f"phone-{name}")
    phone.close()
