"""A data section may be made of parts (`vlmt.data.composed_datasets`): each task family takes the
part it reads. `data_part(data, kinds)` is `data` itself when it is of one of the `kinds`, else the
first of its `parts` that is, else None."""

from __future__ import annotations

from typing import Any


def data_part(data: Any, kinds: type | tuple[type, ...]) -> Any:
    if isinstance(data, kinds):
        return data
    for part in getattr(data, "parts", ()):
        if isinstance(part, kinds):
            return part
    return None
