"""The models one pipeline's backends share, each built once per pipeline (never in a module global)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from engine.config import RuntimeSettings

T = TypeVar("T")


class ModelPool:
    """Shared model holders by key: Florence-2 serves OCR and caption, one resident video model serves t2v and i2v."""

    def __init__(self, runtime: RuntimeSettings) -> None:
        self.runtime = runtime
        self._shared: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def shared(self, key: Hashable, make: Callable[[], T]) -> T:
        """The holder under `key`, made by `make()` the first time it is asked for."""
        with self._lock:
            if key not in self._shared:
                self._shared[key] = make()
            held: T = self._shared[key]
            return held
