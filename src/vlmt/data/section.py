"""The data section of an experiment (`type: datasets`): a named set of datasets read from one
root, and the preprocessing options of the model families that read them.

    data:
      type: datasets
      root: world:tiny                                   # world:<size>[:<seed>], easy_vqa, or a folder
      datasets: {vqa: {}, captions: {}, entities: {}}   # kind (vlmt.data.datasets) -> its files config
      families:
        vl: {answer_more_than: 1}                        # each family's preprocessing options

A *family* is what a model family makes of these datasets (the hierarchical model's vocabulary and
answer pool, SVLR's label sets and question bins): its options dataclass, its build and the
loader of its saved assets, registered by its own module with `register_family` (the shipped ones
in `vlmt.tasks.vl_data` and `vlmt.tasks.svlr_data`). This module knows no family.

`DatasetsConfig.build()` resolves the root (generating a synthetic world on first use) and returns
`BuiltDatasets`, which builds a family's data the first time a model or task asks for it
(`family(name)`) and keeps it: a run of the hierarchical tasks builds the `vl` family only, a
composed run both. A family is built with the global random generators saved and restored, so what
it draws (if anything) never moves a model's initial weights, whenever it is built. The assets of
the built families (what a trained model needs to read new inputs) are saved side by side into a
model folder, and `DatasetsConfig.load_assets` finds which families were saved there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np
import torch

from vlmt.config.registry import register_data
from vlmt.config.sections import DataConfig, keyed
from vlmt.data.datasets import KINDS, resolve_source
from vlmt.data.datasets.base import image_pattern_ok
from vlmt.data.features.resident import set_on_device
from vlmt.errors import ConfigError, DataError

log = logging.getLogger("vlmt.data")


# --------------------------------------------------------------------------- families


@dataclass(frozen=True)
class Family:
    """One model family's preprocessing of a section's datasets.

    name: its key under the section's `families:`. options: the dataclass of its options (every
    field with a default). build(section, options, *, root, seed): its built data from the
    section (`DatasetsConfig`; `section.files(kind)` gives a dataset's files), its options and the
    resolved root folder: an object with `.assets` (`save(folder)` -> files) and optionally
    `run_record()`. load_assets(folder): the assets it saved into a
    model folder, or None when it saved none there. types: the classes of its built data and of
    its assets, by which a task finds its family (`BuiltDatasets.family_for`).
    """

    name: str
    options: type
    build: Callable[..., Any]
    load_assets: Callable[[Path], Any]
    types: tuple[type, ...]


FAMILIES: dict[str, Family] = {}


def register_family(name: str, *, options: type, build: Callable[..., Any], load_assets: Callable[[Path], Any],
                    types: tuple[type, ...]) -> Family:
    """Make `name` a family of the `datasets` section (its module calls this once, at import)."""
    if name in FAMILIES:
        raise ValueError(f"data family {name!r} is already registered by {FAMILIES[name].build.__module__}")
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"data family {name!r}: options {options.__qualname__} must be a dataclass")
    FAMILIES[name] = Family(name, options, build, load_assets, types)
    return FAMILIES[name]


def family(name: str) -> Family:
    """The registered family `name`; KeyError naming the known ones otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown data family {name!r} (known: {', '.join(FAMILIES) or 'none registered'})") from None


def _files_type(kind: str) -> type:
    if kind not in KINDS:
        raise KeyError(f"unknown dataset kind {kind!r} (known: {', '.join(KINDS)})")
    return KINDS[kind].files


def _options_type(name: str) -> type:
    return family(name).options


# --------------------------------------------------------------------------- the section


@register_data("datasets")
@dataclass
class DatasetsConfig(DataConfig):
    """Where the datasets are, which of them the run reads, and each family's options.

    root: source string for `vlmt.data.datasets.resolve_source`. datasets: dataset kind -> its
    files config (`vlmt.data.datasets.<kind>`; `{}` for the official names). features: the
    feature store folder under the root, for a dataset whose files config sets none. images: the
    picture path pattern with `{image_id}` (null: no pictures), likewise. missing: what a family
    does when a listed dataset's files are not under the root: `error`, or `skip` it (a task that
    needs it is then refused by name). check_files: validate the files a family reads (the checks
    and messages of `vlmt data validate`) before it builds, so training refuses data that does not
    validate. families: family name -> its preprocessing options (`register_family`); a family
    not named here builds with its defaults when a task needs it.
    """

    root: str = "world:tiny"
    datasets: dict[str, Any] = keyed(_files_type)
    features: str = "features"
    images: str | None = "images/{image_id}.png"
    missing: Literal["error", "skip"] = "error"
    check_files: bool = True
    families: dict[str, Any] = keyed(_options_type)
    features_on_device: bool = False

    def validate(self) -> str | None:
        patterns = [("images", self.images)] + [(f"datasets.{k}.images", getattr(f, "images", None))
                                                 for k, f in self.datasets.items()]
        for key, pattern in patterns:
            if pattern is not None and not image_pattern_ok(pattern):
                return (f"{key}: the pattern needs an '{{image_id}}' field (e.g. images/{{image_id}}.png), "
                        f"got {pattern!r}")
        for name, options in self.families.items():
            check = getattr(options, "validate", None)
            problem = check() if callable(check) else None
            if problem:
                return f"families.{name}.{problem}"
        return None

    def options(self, name: str) -> Any:
        """The options of family `name`: those the section sets, else its defaults."""
        return self.families.get(name) or family(name).options()

    def files(self, kind: str) -> Any:
        """The files config of dataset `kind`, with the section's store and picture pattern where
        it sets none; None when the section does not list the kind."""
        files = self.datasets.get(kind)
        if files is None:
            return None
        fill = {key: getattr(self, key) for key in ("features", "images")
                if hasattr(files, key) and getattr(files, key) is None}
        return dataclasses.replace(files, **fill) if fill else files

    def dataset_files(self) -> dict[str, Any]:
        """The datasets the section reads (kind -> files config, in the order listed), each with
        the section's store and picture pattern where it sets none."""
        return {kind: self.files(kind) for kind in self.datasets}

    @classmethod
    def load_assets(cls, folder: Path) -> DatasetsAssets:
        """The assets of every family that saved some into `folder`."""
        folder = Path(folder)
        found = {}
        for name, fam in FAMILIES.items():
            assets = fam.load_assets(folder)
            if assets is not None:
                found[name] = assets
        if not found:
            raise DataError(folder, f"no data family's assets here (families: {', '.join(FAMILIES)})")
        return DatasetsAssets(found)

    def feature_stores(self, root: Path) -> list[Path]:
        """The store folders the section's datasets read under the resolved `root` (the section's
        store and each dataset's own), in order, without repeats."""
        folders = [root / self.features] + [root / f.features for f in self.dataset_files().values()
                                            if getattr(f, "features", None)]
        return list(dict.fromkeys(folders))

    def build(self, *, seed: int) -> BuiltDatasets:
        root = resolve_source(self.root, progress=lambda msg: log.info("data: %s", msg))
        set_on_device(self.feature_stores(root), self.features_on_device)  # this process's batches
        return BuiltDatasets(self, root, seed=seed)


# --------------------------------------------------------------------------- built


@contextlib.contextmanager
def _generators_kept() -> Iterator[None]:
    """Python's, numpy's and torch's (CPU) global generators as they were before the block."""
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


class BuiltDatasets:
    """A built `datasets` section: its resolved root, and each family's data, built on first use."""

    def __init__(self, config: DatasetsConfig, root: Path, *, seed: int = 0):
        self.config = config
        self.root = Path(root)
        self.seed = seed
        self.built: dict[str, Any] = {}

    def family(self, name: str) -> Any:
        """The built data of family `name` (built now if it is not yet)."""
        if name not in self.built:
            fam = family(name)
            with _generators_kept():
                self.built[name] = fam.build(self.config, self.config.options(name), root=self.root, seed=self.seed)
        return self.built[name]

    def family_for(self, types: type | tuple[type, ...]) -> Any:
        """The built data of the family registered with any of `types`, or None when no family is."""
        for name, fam in FAMILIES.items():
            if any(issubclass(t, types) for t in fam.types):
                return self.family(name)
        return None

    @property
    def assets(self) -> DatasetsAssets:
        """The built families' assets."""
        return DatasetsAssets({name: data.assets for name, data in self.built.items()})

    @property
    def run_record(self) -> Callable[[], dict] | None:
        """What a run folder records about its data (RUN/data.json): the record of the one built
        family that keeps one, as it is; of several, each under its family's name; None (no
        record) when no built family keeps one."""
        records = {name: data.run_record for name, data in self.built.items() if callable(getattr(data, "run_record",
                                                                                                    None))}
        if not records:
            return None
        if len(records) == 1:
            return next(iter(records.values()))
        return lambda: {name: record() for name, record in records.items()}

    def __repr__(self) -> str:
        return f"BuiltDatasets({self.config.root!r}; built: {', '.join(self.built) or 'none yet'})"


@dataclass
class DatasetsAssets:
    """The assets of the families a model was trained with (a model used without its data)."""

    families: dict[str, Any] = field(default_factory=dict)

    def family(self, name: str) -> Any:
        if name not in self.families:
            raise ConfigError(f"data: the model folder holds no assets of the {name!r} family "
                              f"(it holds: {', '.join(self.families) or 'none'})")
        return self.families[name]

    def family_for(self, types: type | tuple[type, ...]) -> Any:
        """The saved assets that are an instance of `types`, or None."""
        return next((a for a in self.families.values() if isinstance(a, types)), None)

    def save(self, folder: Path) -> list[Path]:
        """Every family's assets into `folder`, side by side (their files do not collide)."""
        return [path for assets in self.families.values() for path in assets.save(folder)]
