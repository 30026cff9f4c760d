"""Registries of the extensible config sections: `data`, `model` and each entry of `tasks`.

A registry is a plain dict from a `type:` name to the config dataclass that section becomes, filled
by a decorator that refuses duplicates:

    @register_task("vqa")
    @dataclass
    class VQATaskConfig(TaskConfig): ...

A type that was renamed or merged into another keeps reading older files through an alias
(`Registry.alias(old, new, upgrade)`): the loader turns a section of the old type into one of the
new type with `upgrade(raw)` (a plain dict in, a plain dict out) before checking it.

Registration happens when the module defining the dataclass is imported. Nothing here imports those
modules: `vlmt.training.build` imports every module that registers a type, by plain imports, so a
config loaded through it (`vlmt.training.build.load_experiment`, `vlmt train`) can name any of them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class Registry:
    """Name -> config dataclass for one extensible section; duplicates are refused."""

    def __init__(self, section: str):
        self.section = section
        self._entries: dict[str, type] = {}
        self._aliases: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {}

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

    def alias(self, old: str, new: str, upgrade: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Read sections of the former type `old` as type `new`, their keys converted by `upgrade`
        (the section's plain dict without its `type` key -> the new type's)."""
        if old in self._entries or old in self._aliases:
            raise ValueError(f"{self.section} type {old!r} is already registered")
        self._aliases[old] = (new, upgrade)

    def upgrade(self, name: str, raw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(the current type, its keys) of a section of type `name` (an alias's upgraded)."""
        while name in self._aliases:
            name, convert = self._aliases[name]
            raw = convert(raw)
        return name, raw

    def resolve(self, name: str) -> str:
        """The registered type a name stands for: itself, or the type an alias reads as."""
        while name in self._aliases:
            name = self._aliases[name][0]
        return name

    def aliases(self) -> list[str]:
        return sorted(self._aliases)

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
