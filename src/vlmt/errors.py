"""User-facing errors: the CLI prints them as one line and exits non-zero, without a traceback."""

from __future__ import annotations

import functools
import sys
from typing import Callable, ParamSpec

P = ParamSpec("P")


class VlmtError(Exception):
    """An error caused by the user's input (file, config, arguments), not by a bug in vlmt."""

    exit_code = 1


class ConfigError(VlmtError):
    """A config file or override is invalid; the message names the file and the key."""


class InvalidInput(VlmtError, ValueError):
    """A trained model was given inputs it cannot use (a picture it cannot read regions from, a
    question with no word, ...); a ValueError too, so callers may catch it as one."""


class TrainingError(VlmtError):
    """Training cannot go on (e.g. the loss became NaN/inf); names the step and the run file."""


class DataError(VlmtError):
    """A data file is invalid; names the file, the record and the field that are wrong."""

    def __init__(self, file: object, message: str, *, record: object = None, field: str | None = None):
        self.file = str(file)
        self.record = record
        self.field = field
        self.reason = message
        super().__init__(format_problem(self.file, message, record=record, field=field))


def format_problem(file: object, message: str, *, record: object = None, field: str | None = None) -> str:
    """One line `file: record R: field F: message`, the form every data problem is reported in."""
    parts = [str(file)]
    if record is not None:
        parts.append(f"record {record}")
    if field is not None:
        parts.append(f"field {field!r}")
    parts.append(message)
    return ": ".join(parts)



def report(e: VlmtError) -> int:
    """Print `e` as the one line `error: ...` on stderr, the way `vlmt` reports a user's mistake,
    and return the exit status to stop with (no traceback: the input is wrong, not vlmt)."""
    print(f"error: {e}", file=sys.stderr)
    return e.exit_code


def reports_errors(main: Callable[P, int | None]) -> Callable[P, int]:
    """Wrap a script's `main` so that a `VlmtError` ends it as `vlmt` ends a command: one line on
    stderr (`report`) and a non-zero return instead of a traceback; Ctrl-C returns 130 quietly.
    A `main` that returns None returns 0."""

    @functools.wraps(main)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return int(main(*args, **kwargs) or 0)
        except VlmtError as e:
            return report(e)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
