"""Progress on stderr while a bench runs: stage lines, plus a live status line that a task
redraws (in place on a terminal, a line every few seconds otherwise). stdout stays clean for
the table or the JSON line."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

import trio

if TYPE_CHECKING:
    from collections.abc import Callable


class Progress:
    def __init__(self, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = enabled
        self._live = enabled and self._stream.isatty()
        self._status: Callable[[], str] | None = None
        self._drawn = False

    def stage(self, text: str) -> None:
        """A one-line step ("connecting 1000 subscribers")."""
        if self._enabled:
            self._clear()
            print(f"stretto bench: {text}", file=self._stream, flush=True)

    def track(self, status: Callable[[], str] | None) -> None:
        """Show ``status()`` as the live line from now on (None stops it)."""
        self._clear()
        self._status = status

    def _clear(self) -> None:
        if self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._drawn = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Redraw the live line until cancelled (the caller's nursery owns this task)."""
        task_status.started()
        if not self._enabled:
            await trio.sleep_forever()
        period = 0.25 if self._live else 5.0
        try:
            while True:
                await trio.sleep(period)
                if self._status is None:
                    continue
                text = self._status()
                if self._live:
                    self._stream.write(f"\r\x1b[K  {text}")
                    self._drawn = True
                else:
                    self._stream.write(f"  {text}\n")
                self._stream.flush()
        finally:
            self._clear()
