"""What a long data step is doing, said as it goes: a plain line when a step starts (its stage and
how much there is), lines at each tenth of the way once it has run a few seconds, and a line when
it ends (how much, how long). The lines go to a logger, which a training run sends to its
`train.log` and terminal; on a terminal a tqdm bar moves too (none when stderr is a file, so the
log holds plain lines only, never bar control characters).

    with Progress(log, "Genome: matching objects to store boxes", total=len(images), unit="images") as p:
        for im in images:
            ...
            p.update()
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

DELAY = 3.0  # seconds a step runs before its bar and its tenths are shown


def _amount(n: float, unit: str) -> str:
    return f"{n:,.0f} {unit}" if unit else f"{n:,.0f}"


class Progress:
    """One step's progress on `logger` (and a bar on a terminal); see the module docstring.
    `total` None: a count without a fraction. `quiet`: no start line (a step that is usually
    short says only that it ended, with its count and time)."""

    def __init__(self, logger: logging.Logger, stage: str, total: float | None = None, unit: str = "", *,
                 delay: float = DELAY, quiet: bool = False):
        self.logger, self.stage, self.total, self.unit, self.delay = logger, stage, total, unit, delay
        self.n: float = 0  # stays an int while the updates are ints (the bar then shows 6/30, not 6.0/30)
        self.started = time.perf_counter()
        self._next_tenth = 1
        self._bar: Any = None
        self.closed = False
        if not quiet:
            logger.info("%s: %s ...", stage, _amount(total, unit) if total is not None else "started")

    def _open_bar(self) -> None:
        from tqdm import tqdm

        # disable=None: no bar unless stderr is a terminal (a redirected run's file gets lines only)
        self._bar = tqdm(total=self.total, desc=self.stage, unit=f" {self.unit}" if self.unit else "it",
                         initial=self.n, disable=None, file=sys.stderr, leave=False, dynamic_ncols=True)

    def update(self, n: float = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        if self.total:
            while self._next_tenth < 10 and self.n >= self.total * self._next_tenth / 10:
                if time.perf_counter() - self.started >= self.delay:
                    self.logger.info("%s: %d%% (%s of %s, %.0f s)", self.stage, 10 * self._next_tenth,
                                     _amount(self.n, ""), _amount(self.total, self.unit),
                                     time.perf_counter() - self.started)
                self._next_tenth += 1
        if self._bar is None and time.perf_counter() - self.started >= self.delay:
            self._open_bar()

    def close(self, summary: str = "") -> None:
        """End the step: one line with the count (or `summary`) and the time it took (once: a
        step closed inside its `with` block says nothing more at the block's end)."""
        if self.closed:
            return
        self.closed = True
        self.abandon()
        done = summary or _amount(self.n, self.unit)
        self.logger.info("%s: done, %s (%.1f s)", self.stage, done, time.perf_counter() - self.started)

    def abandon(self) -> None:
        """Remove the bar without a closing line (the step failed; its error says why)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: object, value: object, tb: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()
