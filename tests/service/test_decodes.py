"""The decoding budget: bytes and slots held at once are bounded; past the wait it is Busy, never unbounded."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from engine.config import load_settings, replace
from engine.pipeline import Pipeline
from engine.service.api.handlers import jobs
from engine.service.decodes import Busy, DecodeBudget
from engine.stages.intake import Intake
from tests.service.api_world import ADMIN_AUTH, run, submit
from tests.support.memes import meme

MB = 1024 * 1024


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    """The real CPU pipeline at tiny settings, shared by this module's apps."""
    return Pipeline(replace(load_settings(), ocr={"backend": "none"}, generate={"frames": 2}, encode={"size": 64}))


def test_decodes_wait_for_room_and_never_hold_more_than_the_budget() -> None:
    async def main() -> None:
        budget = DecodeBudget(100 * MB, wait_s=60, slots=8)
        release = asyncio.Event()
        peak = 0

        async def decode(nbytes: int) -> None:
            nonlocal peak
            async with budget.hold(nbytes):
                peak = max(peak, budget.held)
                await release.wait()

        first = asyncio.create_task(decode(60 * MB))
        while budget.held == 0:
            await asyncio.sleep(0)
        second = asyncio.create_task(decode(60 * MB))  # doesn't fit beside the first: it waits
        third = asyncio.create_task(decode(30 * MB))  # fits: it runs
        while budget.held != 90 * MB:
            await asyncio.sleep(0)
        assert not second.done() and peak == 90 * MB
        release.set()
        await asyncio.gather(first, second, third)
        assert peak <= 100 * MB and budget.held == 0

    asyncio.run(main())


def test_a_decode_that_cannot_start_within_the_wait_is_busy_and_frees_nothing() -> None:
    async def main() -> None:
        budget = DecodeBudget(10 * MB, wait_s=0.2, slots=1)
        release = asyncio.Event()

        async def hold() -> None:
            async with budget.hold(MB):
                await release.wait()

        holder = asyncio.create_task(hold())
        while budget.held == 0:
            await asyncio.sleep(0)
        with pytest.raises(Busy):  # the one slot is taken, whatever the bytes
            async with budget.hold(MB):
                pass
        assert budget.held == MB
        release.set()
        await holder
        async with budget.hold(50 * MB):  # larger than the budget: it runs alone, holding all of it
            assert budget.held == 10 * MB

    asyncio.run(main())


def test_a_banned_users_image_is_never_decoded(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[int] = []

    class Counted(Intake):  # the submit handler's Intake only: the worker decodes again when the job runs
        def __call__(self, data: bytes) -> Any:
            decoded.append(len(data))
            return super().__call__(data)

    monkeypatch.setattr(jobs, "Intake", Counted)

    async def scenario(client: TestClient) -> None:
        async with client.post(
            "/v1/admin/bans", json={"platform": "test", "user_id": "mallory"}, headers=ADMIN_AUTH
        ) as r:
            assert r.status == 200
        status, body, _ = await submit(client, meme(seed=5), user="mallory")
        assert (status, body["code"]) == (403, "banned") and decoded == []
        status, body, _ = await submit(client, meme(seed=6), user="alice")
        assert status == 202 and len(decoded) == 1, "an allowed user's image is decoded once"
        status, body, _ = await submit(client, meme(seed=7), user="alice")
        assert (status, body["code"]) == (429, "rate_limited") and len(decoded) == 1

    run(tmp_path, pipeline, scenario, limits={"user": {"jobs": 1}})
