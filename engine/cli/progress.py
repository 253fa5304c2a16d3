"""The terminal progress bar of `makeitmove animate`."""

from __future__ import annotations

from typing import Any


class ProgressDisplay:
    """A rich progress bar per stage on stderr; silent when stderr is not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("{task.description:<12}"), BarColumn(), TimeElapsedColumn(),
            console=Console(stderr=True), transient=True,
        )  # fmt: skip
        self._bar.start()
        self._task = self._bar.add_task("starting", total=1.0)
        return self.update

    def update(self, stage: str, fraction: float) -> None:
        """Show the stage now running."""
        self._bar.update(self._task, description=stage, completed=fraction)
        self._bar.refresh()  # stages can be shorter than rich's refresh period; show each one

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
