"""The data section of a model that learns both papers' tasks on one encoder (`type:
composed_datasets`): the hierarchical model's datasets (VQA, captions, Flickr30k Entities; a
`vl_datasets` section) and SVLR's (Visual Genome recognition, VQA multiple choice; an
`svlr_datasets` section), read from one root.

    data:
      type: composed_datasets
      root: world:default
      vl: {answer_more_than: 8}     # any key of a vl_datasets section but root
      svlr: {word_dim: 64}          # any key of an svlr_datasets section but root

Built, it is a `ComposedData` whose `parts` are a `VLData` and an `SVLRData`: the encoder's tasks
read the first, the recognition and multiple-choice tasks the second (`vlmt.tasks.base.family_data`).
Its assets are both parts' assets, saved side by side (their files do not collide).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from vlmt.config import DataConfig, register_data
from vlmt.tasks.svlr_data import SVLRAssets, SVLRData, SVLRDataConfig
from vlmt.tasks.vl_data import VLAssets, VLData, VLDatasetsConfig


@dataclass
class ComposedAssets:
    """The assets of both parts (a model used without its data)."""

    vl: VLAssets
    svlr: SVLRAssets

    @property
    def parts(self) -> tuple[VLAssets, SVLRAssets]:
        return (self.vl, self.svlr)

    def save(self, folder: Path) -> list[Path]:
        return [*self.vl.save(folder), *self.svlr.save(folder)]


@dataclass
class ComposedData:
    """The built parts: `vl` for the encoder's tasks, `svlr` for recognition and multiple choice."""

    vl: VLData
    svlr: SVLRData

    @property
    def parts(self) -> tuple[VLData, SVLRData]:
        return (self.vl, self.svlr)

    @property
    def assets(self) -> ComposedAssets:
        return ComposedAssets(self.vl.assets, self.svlr.assets)

    @property
    def root(self) -> Path:
        return self.vl.root


@register_data("composed_datasets")
@dataclass
class ComposedDataConfig(DataConfig):
    """`root` is the folder or source both parts read (their own `root` keys are replaced by it)."""

    root: str = "world:tiny"
    vl: VLDatasetsConfig = field(default_factory=VLDatasetsConfig)
    svlr: SVLRDataConfig = field(default_factory=SVLRDataConfig)

    def validate(self) -> str | None:
        for key, part in (("vl", self.vl), ("svlr", self.svlr)):
            if part.root not in (type(part).root, self.root):
                return f"{key}.root: both parts read data.root ({self.root!r}); set that instead of {part.root!r}"
        return self.vl.validate() or self.svlr.validate()

    def dataset_files(self) -> dict[str, object]:
        """Both parts' datasets (name -> files config), the encoder's first."""
        return {**self.vl.dataset_files(), **self.svlr.dataset_files()}

    @classmethod
    def load_assets(cls, folder: Path) -> ComposedAssets:
        return ComposedAssets(VLAssets.load(folder), SVLRAssets.load(folder))

    def build(self, *, seed: int) -> ComposedData:
        vl = dataclasses.replace(self.vl, root=self.root).build(seed=seed)
        svlr = dataclasses.replace(self.svlr, root=self.root).build(seed=seed)
        return ComposedData(vl, svlr)
