"""Registries of the extensible config sections: `data`, `model` and each entry of `tasks`.

A registry is a plain dict from a `type:` name to the config dataclass that section becomes, filled
by a decorator that refuses duplicates:

    @register_task("vqa")
    @dataclass
    class VQATaskConfig(TaskConfig): ...

Registration happens when the module defining the dataclass is imported. Nothing here imports those
modules: `vlmt.training.build` imports every module that registers a type, by plain imports, so a
config loaded through it (`vlmt.training.build.load_experiment`, `vlmt train`) can name any of them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, TypeVar

T = TypeVar("T")


class Registry:
    """Name -> config dataclass for one extensible section; duplicates are refused."""

    def __init__(self, section: str):
        self.section = section
        self._entries: dict[str, type] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorator(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise ValueError(f"{self.section} type {name!r} is already registered "
                                 f"by {self._entries[name].__module__}.{self._entries[name].__qualname__}")
            if not dataclasses.is_dataclass(cls):
                raise TypeError(f"{self.section} type {name!r}: {cls.__qualname__} must be a dataclass")
            self._entries[name] = cls
            return cls
        return decorator

    def __getitem__(self, name: str) -> type:
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def name_of(self, cls: type) -> str:
        for name, entry in self._entries.items():
            if entry is cls:
                return name
        raise KeyError(f"{cls.__qualname__} is not a registered {self.section} type")


DATA = Registry("data")
MODELS = Registry("model")
TASKS = Registry("task")

register_data = DATA.register
register_model = MODELS.register
register_task = TASKS.register
