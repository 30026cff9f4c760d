"""Shared helpers of the readers: JSON loading with one-line errors, typed field access, and the
`report` callback through which every problem flows (raise by default, or collect)."""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Protocol

from vlmt.errors import DataError
from vlmt.io import load_json  # noqa: F401  (re-exported for the readers)


class Report(Protocol):
    def __call__(self, file: object, message: str, *, record: object = None, field: str | None = None) -> None: ...


def raise_problem(file: object, message: str, *, record: object = None, field: str | None = None) -> None:
    """The default `report`: the first problem stops the read with a `DataError`."""
    raise DataError(file, message, record=record, field=field)


class Skip(Exception):
    """Raised inside a reader to abandon one record after its problem has been reported."""


def require(obj: Any, key: str, kind: type | tuple[type, ...], file: object, record: object, report: Report) -> Any:
    """`obj[key]` checked to be of `kind` (bool is never an int); reports and raises `Skip` when
    the key is missing or has the wrong type."""
    if not isinstance(obj, dict):
        report(file, f"must be a JSON object, got {type(obj).__name__}", record=record)
        raise Skip
    if key not in obj:
        report(file, "missing", record=record, field=key)
        raise Skip
    value = obj[key]
    if not _is(value, kind):
        report(file, f"must be {_kind_name(kind)}, got {type(value).__name__} {_short(value)}", record=record,
               field=key)
        raise Skip
    return value


def optional(obj: dict, key: str, kind: type | tuple[type, ...], file: object, record: object, report: Report,
             default: Any = None) -> Any:
    """Like `require` for a field that may be absent or null."""
    if obj.get(key) is None:
        return default
    return require(obj, key, kind, file, record, report)


def require_text(obj: Any, key: str, file: object, record: object, report: Report) -> str:
    """A non-empty string field."""
    value = require(obj, key, str, file, record, report)
    if not value.strip():
        report(file, "empty text", record=record, field=key)
        raise Skip
    return value


def top_list(data: Any, key: str, file: object, report: Report) -> list:
    """The top-level list `data[key]` of a JSON object file."""
    if not isinstance(data, dict):
        report(file, f"top level must be a JSON object with {key!r}, got {type(data).__name__}")
        return []
    if key not in data:
        report(file, "missing", field=key)
        return []
    if not isinstance(data[key], list):
        report(file, f"must be a list, got {type(data[key]).__name__}", field=key)
        return []
    return data[key]


def check_box(box: tuple[float, float, float, float], file: object, record: object, field: str, report: Report,
              *, width: float | None = None, height: float | None = None, tolerance: float = 1.0) -> bool:
    """Report a box (x1, y1, x2, y2) that is non-finite, inverted or outside the image."""
    if not all(math.isfinite(v) for v in box):
        report(file, f"non-finite coordinate in {box}", record=record, field=field)
        return False
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        report(file, f"inverted box {box} (x2 < x1 or y2 < y1)", record=record, field=field)
        return False
    if x1 < -tolerance or y1 < -tolerance or (width is not None and x2 > width + tolerance) or (
            height is not None and y2 > height + tolerance):
        report(file, f"box {box} outside the {width}x{height} image", record=record, field=field)
        return False
    return True


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, kinds)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", str: "a string", list: "a list", dict: "an object", float: "a number",
             bool: "true/false"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def collector() -> tuple[list[str], Callable[..., None]]:
    """A (problems, report) pair: `report` appends one formatted line per problem."""
    from vlmt.errors import format_problem

    problems: list[str] = []

    def report(file: object, message: str, *, record: object = None, field: str | None = None) -> None:
        problems.append(format_problem(file, message, record=record, field=field))

    return problems, report
