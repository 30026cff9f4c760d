"""`Progress`: what a long data step is doing, as plain log lines (start, each tenth once the step
has run `delay` seconds, end with count and time)."""

from __future__ import annotations

import logging

from vlmt.data.readers.progress import Progress


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _logger(name: str) -> tuple[logging.Logger, _Lines]:
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    handler = _Lines()
    logger.addHandler(handler)
    return logger, handler


def test_a_long_step_says_its_stage_each_tenth_and_its_end_in_plain_lines():
    logger, out = _logger("test.progress.long")
    with Progress(logger, "matching", total=20, unit="images", delay=0.0) as p:
        for _ in range(20):
            p.update()
    assert out.lines[0] == "matching: 20 images ..."
    assert [line.split(" (")[0] for line in out.lines[1:-1]] == [f"matching: {10 * k}%" for k in range(1, 10)]
    assert out.lines[-1].startswith("matching: done, 20 images (")
    assert not any(c in line for line in out.lines for c in "\r\x1b")  # no bar in the log


def test_a_short_step_says_only_its_start_and_end_and_a_failed_one_no_end():
    logger, out = _logger("test.progress.short")
    with Progress(logger, "reading", total=5, unit="MB") as p:  # delay 3 s: no tenths
        p.update(5)
    assert len(out.lines) == 2 and out.lines[1].startswith("reading: done, 5 MB")
    try:
        with Progress(logger, "failing", quiet=True):
            raise ValueError("bad record")
    except ValueError:
        pass
    assert len(out.lines) == 2


def test_a_step_closed_with_its_own_summary_ends_once():
    logger, out = _logger("test.progress.summary")
    with Progress(logger, "reading Genome") as p:
        p.close("40 images, 142 objects")
    assert out.lines[1:] and len(out.lines) == 2 and "done, 40 images, 142 objects" in out.lines[1]
