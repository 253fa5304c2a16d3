"""Following one job until it is final, for every bot: reconnects while the engine is away, one ending."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.core.engine_client import EngineClient
from bot.core.errors import EngineError, EngineUnavailable
from bot.core.models import Job

log = logging.getLogger(__name__)

RECONNECT_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # waits between event-stream reconnects while the engine is away


async def follow(
    engine: EngineClient,
    job_id: str,
    *,
    progress: Callable[[Job], Awaitable[None]],
    finish: Callable[[Job], Awaitable[None]],
    lost: Callable[[EngineError], Awaitable[None]],
) -> None:
    """Call `progress` on each change and `finish` once the job is final; `lost` when the engine refuses it.

    The engine away (a restart) is waited out with backoff; an engine answer such as "no such job" (a new
    database) or "result expired" ends the job through `lost`, since asking again would get the same answer.
    Any other failure in the callbacks is logged and the job followed again.
    """
    attempt = 0
    while True:
        try:
            async for job in engine.events(job_id):
                attempt = 0
                if job.final:
                    await finish(job)
                    return
                await progress(job)
        except EngineUnavailable:
            wait = RECONNECT_S[min(attempt, len(RECONNECT_S) - 1)]
            attempt += 1
            log.warning("engine unreachable while watching job %s; retrying in %.0f s", job_id, wait)
            await asyncio.sleep(wait)
        except EngineError as exc:
            await lost(exc)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("watching job %s failed; retrying", job_id)
            await asyncio.sleep(RECONNECT_S[-1])
