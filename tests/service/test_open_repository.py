"""The engine opens storage in one place, with the config file's limits as the defaults."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.config import load_settings, replace
from engine.service.repository import default_limits, open_repository
from storage.records import Limits


def test_the_shipped_config_limits_become_repository_limits() -> None:
    assert default_limits(load_settings()) == Limits(
        user_jobs=5, user_window_s=600, user_concurrent=2, chat_jobs=30, chat_window_s=600, queue_max=200
    )


def test_open_repository_uses_the_storage_url_and_the_configured_limits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    limits = {
        "queue_max": 7,
        "user": {"jobs": 3, "window_s": 90, "concurrent": 1},
        "chat": {"jobs": 11, "window_s": 120},
    }
    settings = replace(load_settings(), storage={"url": url}, limits=limits)

    async def opened_limits() -> Limits:
        repo = await open_repository(settings)
        try:
            return await repo.limits()
        finally:
            await repo.close()

    assert asyncio.run(opened_limits()) == Limits(
        user_jobs=3, user_window_s=90, user_concurrent=1, chat_jobs=11, chat_window_s=120, queue_max=7
    )
    assert (tmp_path / "jobs.db").is_file()
