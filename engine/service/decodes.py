"""How much image decoding the service does at once: a memory budget and a count, both bounded.

A decode's memory is known from the image's header before any pixel is read (Intake.inspect), so a burst of
large uploads waits for room instead of all decoding at once; one that can't start within the wait is refused
with a 503 and a sentence, and the engine's memory stays bounded whatever the clients send.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator


class Busy(Exception):
    """No room for a decode within the wait; the handler answers 503 with this sentence."""

    message = "I'm decoding too many images right now; please try again in a moment."


class DecodeBudget:
    """At most `capacity` bytes of estimated decoder memory and `slots` decodes at once."""

    def __init__(self, capacity: int, wait_s: float, slots: int | None = None) -> None:
        if capacity <= 0 or wait_s <= 0:
            raise ValueError(f"capacity and wait_s must be positive, got {capacity} and {wait_s}")
        self.capacity, self.wait_s = capacity, wait_s
        self.slots = slots or max(1, os.cpu_count() or 1)
        self._free, self._running = capacity, 0
        self._changed = asyncio.Condition()

    @property
    def held(self) -> int:
        """Bytes held by the decodes running now."""
        return self.capacity - self._free

    @contextlib.asynccontextmanager
    async def hold(self, nbytes: int) -> AsyncIterator[None]:
        """Room for one decode of `nbytes`, waiting up to wait_s; Busy past that.

        An image larger than the whole budget may still run, alone: intake's pixel cap bounds it, and refusing
        it outright would make the cap a lie.
        """
        need = min(max(nbytes, 0), self.capacity)
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self._fits(need)), self.wait_s)
            except asyncio.TimeoutError:
                raise Busy() from None
            self._free -= need
            self._running += 1
        try:
            yield
        finally:
            async with self._changed:
                self._free += need
                self._running -= 1
                self._changed.notify_all()

    def _fits(self, need: int) -> bool:
        return self._running < self.slots and self._free >= need
