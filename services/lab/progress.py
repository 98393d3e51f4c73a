"""Progress of long lab operations: rich progress bars on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class Reporter:
    """Stages with a known number of steps; each step names its host (or "lab") and what it did."""

    def __init__(self, console: Console | None = None, *, rich: bool | None = None,
                 stream: TextIO | None = None) -> None:
        self.console = console or Console(file=stream or sys.stdout)
        self.rich = self.console.is_terminal if rich is None else rich
        self._out = stream or sys.stdout
        self._started = time.monotonic()
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._counts: dict[str, tuple[int, int]] = {}

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._started:6.2f}s"

    def _line(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self._out, flush=True)

    def begin(self, stage: str, total: int) -> None:
        """A stage of ``total`` steps starts."""
        self._counts[stage] = (0, total)
        if self.rich:
            if self._progress is None:
                self._progress = Progress(TextColumn("[bold]{task.description:<12}"), BarColumn(),
                                          MofNCompleteColumn(), TimeElapsedColumn(), console=self.console,
                                          transient=False)
                self._progress.start()
            self._tasks[stage] = self._progress.add_task(stage, total=total)
        else:
            self._line(f"[{self._elapsed()}] {stage}: {total} step{'s' if total != 1 else ''}")

    def step(self, stage: str, host: str, what: str) -> None:
        """One step of a stage finished."""
        done, total = self._counts.get(stage, (0, 0))
        self._counts[stage] = (done + 1, total)
        if self._progress is not None and stage in self._tasks:
            self._progress.update(self._tasks[stage], advance=1)
        else:
            self._line(f"[{self._elapsed()}] {stage} {done + 1}/{total}: {host}: {what}")

    def end(self, stage: str) -> None:
        """A stage finished."""
        if not self.rich:
            self._line(f"[{self._elapsed()}] {stage}: done")

    def note(self, text: str) -> None:
        """A line of information between stages."""
        self._line(text if self.rich else f"[{self._elapsed()}] {text}")

    def close(self) -> None:
        """Stop the progress display (leaves the finished bars on screen)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self._tasks.clear()


class Silent(Reporter):
    """A reporter that shows nothing."""

    def begin(self, stage: str, total: int) -> None:
        """Nothing."""

    def step(self, stage: str, host: str, what: str) -> None:
        """Nothing."""

    def end(self, stage: str) -> None:
        """Nothing."""

    def note(self, text: str) -> None:
        """Nothing."""
