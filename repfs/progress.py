"""Progress of a long job (scrub, recover, drain) for a person or for a log.

On a terminal it is click's progress bar. Anywhere else (a pipe, a systemd journal, a
cron mail) a bar's carriage returns make no sense, so it prints a line at most every
`every` seconds and one at the end: `scrub: 1,200/4,000 blocks (30%), 85.0 blocks/s,
ETA 33s`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

import click


def duration(seconds: float) -> str:
    """`45s`, `3m05s`, `2h07m`: short, for people."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    def __init__(
        self,
        label: str,
        unit: str = "blocks",
        *,
        stream: TextIO | None = None,
        every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        tty: bool | None = None,
    ) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self.clock = clock
        self.tty = self.stream.isatty() if tty is None else tty
        self.done = 0
        self.total = 0
        self._started = 0.0
        self._first = 0
        self._seen = False
        self._last = ""
        self._printed_at: float | None = None
        self._bar: Any = None

    def __enter__(self) -> Progress:
        self._started = self.clock()
        if self.tty:
            self._bar = click.progressbar(length=1, label=self.label, show_eta=True, show_pos=True, file=self.stream)
            self._bar.__enter__()
        return self

    def rate(self) -> float:
        elapsed = self.clock() - self._started
        return (self.done - self._first) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        rate = self.rate()
        eta = f", ETA {duration((self.total - self.done) / rate)}" if rate > 0 and self.total > self.done else ""
        return f"{self.label}: {self.done:,}/{self.total:,} {self.unit}{pct}, {rate:.1f} {self.unit}/s{eta}"

    def update(self, done: int, total: int) -> None:
        if not self._seen:
            self._seen = True
            self._first = done  # a resumed job: the rate counts this run's work only
        self.done, self.total = done, total
        if self._bar is not None:
            self._bar.length = max(total, 1)
            self._bar.label = f"{self.label} {self.rate():7.1f} {self.unit}/s"
            self._bar.update(done - self._bar.pos)
            return
        now = self.clock()
        if self._printed_at is None:
            self._printed_at = now
            return
        if now - self._printed_at >= self.every:
            self._printed_at = now
            self._print()

    def _print(self) -> None:
        line = self.line()
        if line != self._last:
            self._last = line
            print(line, file=self.stream, flush=True)

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.__exit__(typ, exc, tb)
        elif typ is None and self.total:
            self._print()
