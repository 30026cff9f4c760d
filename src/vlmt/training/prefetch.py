"""Batches built ahead of the training step (`train.num_workers`).

A task's training batches come from a generator that gathers region features from a
memory-mapped store and pads tokens: 1-10 ms per batch on the synthetic world, work that can
overlap the model's step. `Prefetcher` runs the generator in a background thread and keeps up to
`depth` batches ready. A thread rather than worker processes: the batch streams are seeded per
task (never from the global RNG), so the order is exactly the one the loop would build itself,
nothing needs pickling, and the heavy parts (numpy gathers, torch copies) release the GIL.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_END = object()


class Prefetcher(Generic[T]):
    """An iterator over `source` whose next `depth` items are built in a background thread.
    An exception raised while building an item is raised by `next()` at that item's turn."""

    def __init__(self, source: Iterator[T], *, depth: int, name: str = "batches"):
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._source = source
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._fill, name=f"vlmt-prefetch-{name}", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self) -> None:
        try:
            for item in self._source:
                if not self._put((item, None)):
                    return
            self._put((_END, None))
        except BaseException as e:  # handed to the consumer, raised there
            self._put((None, e))

    def __iter__(self) -> Prefetcher[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item, error = self._queue.get()
        if error is not None:
            self._finished = True
            raise error
        if item is _END:
            self._finished = True
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the thread (it finishes the batch in hand) and drop what was built ahead."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)
        self._finished = True


def prefetched(source: Iterator[T], depth: int, *, name: str = "batches") -> Iterator[T]:
    """`source` itself for depth 0 (built in the caller's loop), else a `Prefetcher`."""
    return source if depth <= 0 else Prefetcher(source, depth=depth, name=name)
