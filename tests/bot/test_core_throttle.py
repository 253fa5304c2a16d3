"""bot.core.throttle: the per-chat sliding window, driven by a fake clock."""

from __future__ import annotations

import pytest

from bot.core.throttle import EditThrottle


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_at_most_per_minute_in_any_sliding_minute() -> None:
    clock = Clock()
    throttle = EditThrottle(3, min_interval=0, clock=clock)
    for _ in range(3):
        assert throttle.allow("g")
        clock.now += 10
    assert not throttle.allow("g")  # 3 sent at 0, 10 and 20 s
    assert throttle.wait_time("g") == pytest.approx(30)
    clock.now += 29.9
    assert not throttle.allow("g")
    clock.now += 0.2  # the first one has left the window, the other two haven't
    assert throttle.allow("g") and not throttle.allow("g")


def test_min_interval_between_edits() -> None:
    clock = Clock()
    throttle = EditThrottle(100, min_interval=2.0, clock=clock)
    assert throttle.allow(1) and not throttle.allow(1)
    assert throttle.wait_time(1) == pytest.approx(2.0)
    clock.now += 2.0
    assert throttle.wait_time(1) == 0 and throttle.allow(1)


def test_chats_are_counted_separately() -> None:
    clock = Clock()
    throttle = EditThrottle(1, min_interval=0, clock=clock)
    assert throttle.allow("a") and throttle.allow("b") and not throttle.allow("a")


def test_reserve_always_succeeds_but_counts() -> None:
    clock = Clock()
    throttle = EditThrottle(2, min_interval=0, clock=clock)
    throttle.reserve("g")
    throttle.reserve("g")
    throttle.reserve("g")  # a result goes out even over the budget
    assert not throttle.allow("g")
    clock.now += 60.5
    assert throttle.allow("g")


def test_idle_chats_are_forgotten() -> None:
    clock = Clock()
    throttle = EditThrottle(5, min_interval=1, clock=clock)
    for chat in range(100):
        throttle.allow(chat)
    clock.now += 61
    for chat in range(100):
        assert throttle.wait_time(chat) == 0
    assert not throttle._sent


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="per_minute"):
        EditThrottle(0, min_interval=1)
    with pytest.raises(ValueError, match="min_interval"):
        EditThrottle(5, min_interval=-1)
