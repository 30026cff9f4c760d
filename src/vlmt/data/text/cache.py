"""A bounded least-recently-used map for caches keyed by text a client may choose (a served
model's questions and choices): without a bound, every new text would stay in memory for the life
of the process. `TEXT_CACHE_SIZE` entries keep the texts of a dataset's questions warm while a
server's memory stays flat under arbitrary text."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

TEXT_CACHE_SIZE = 4096


class LRUCache(Generic[K, V]):
    """At most `maxsize` entries; a `get` hit makes its entry the most recent, a `put` past the
    bound drops the least recent one."""

    def __init__(self, maxsize: int = TEXT_CACHE_SIZE):
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
