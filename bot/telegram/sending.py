"""Bot API calls that survive Telegram's flood control: on a 429, wait what it asks (bounded) and retry once."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from telegram.error import RetryAfter

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_WAIT_S = 30.0  # a longer flood wait would leave the user staring at nothing; give up and let the error show


def retry_seconds(exc: RetryAfter) -> float:
    """RetryAfter's wait in seconds, whether PTB gives it as int or timedelta."""
    with warnings.catch_warnings():  # PTB 22 warns when the int form is read; both forms are handled
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


async def call(make: Callable[[], Awaitable[T]], *, what: str) -> T:
    """Run one Bot API call; after a 429 sleep retry_after (at most MAX_WAIT_S) and try exactly once more."""
    try:
        return await make()
    except RetryAfter as exc:
        wait = retry_seconds(exc)
        if wait > MAX_WAIT_S:
            raise
        log.warning("Telegram flood control on %s: retrying in %.1f s", what, wait)
        await asyncio.sleep(wait)
        return await make()
