"""Per-chat limits on how often the bot posts or edits, so a busy group never hits a platform's flood limit."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable

WINDOW_S = 60.0


class EditThrottle:
    """A sliding one-minute window per chat: status edits wait their turn, final messages always go but count."""

    def __init__(self, per_minute: int, *, min_interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError(f"per_minute must be at least 1, got {per_minute}")
        if min_interval < 0:
            raise ValueError(f"min_interval must be 0 or more seconds, got {min_interval}")
        self.per_minute, self.min_interval, self.clock = per_minute, min_interval, clock
        self._sent: dict[Hashable, deque[float]] = {}

    def _window(self, chat_id: Hashable, now: float) -> deque[float]:
        sent = self._sent.setdefault(chat_id, deque())
        while sent and sent[0] <= now - WINDOW_S:
            sent.popleft()
        return sent

    def wait_time(self, chat_id: Hashable) -> float:
        """Seconds until a status edit in this chat would be allowed (0 when it may go now)."""
        now = self.clock()
        sent = self._window(chat_id, now)
        if not sent:
            self._sent.pop(chat_id, None)  # idle chats don't accumulate
            return 0.0
        wait = sent[-1] + self.min_interval - now
        if len(sent) >= self.per_minute:
            wait = max(wait, sent[len(sent) - self.per_minute] + WINDOW_S - now)
        return max(0.0, wait)

    def allow(self, chat_id: Hashable) -> bool:
        """Whether a status edit may be sent now; if so it is counted."""
        if self.wait_time(chat_id) > 0:
            return False
        self._sent.setdefault(chat_id, deque()).append(self.clock())
        return True

    def reserve(self, chat_id: Hashable) -> None:
        """Count a message that must go regardless (a result or an error); later edits wait for it."""
        now = self.clock()
        self._window(chat_id, now).append(now)
