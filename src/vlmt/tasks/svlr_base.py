"""What the SVLR tasks share besides their batches (`vlmt.tasks.svlr_batches`): their base class
and the checks of data and model."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from vlmt.errors import ConfigError
from vlmt.models.encoders import WordRegionAligner, is_word_region_aligner
from vlmt.tasks.base import TaskBase, family_data
from vlmt.tasks.svlr_data import SVLRAssets, SVLRData


def need_data(data: Any, where: str) -> SVLRData | SVLRAssets:
    """The `svlr` family's data of `data` (or its saved assets, for a model used without its data),
    checked."""
    part = family_data(data, (SVLRData, SVLRAssets))  # built on first use
    if part is None:
        raise ConfigError(f"{where}: SVLR needs the svlr family's data (data type datasets, with vqa_mc and genome), "
                          f"got {type(data).__name__}")
    return part


class SVLRTask(TaskBase):
    """Base of the SVLR tasks: a name, a config, and the data they were built from (`TaskBase`;
    built from `SVLRAssets`, a task has what reads new inputs and no examples)."""

    _data: SVLRData | None

    def __init__(self, *, name: str, config: Any, data: SVLRData | SVLRAssets, seed: int = 0):
        super().__init__(name=name, config=config, data=data, built_from=SVLRData, seed=seed)

    @property
    def data(self) -> SVLRData:
        """The datasets the task was built from; ConfigError for a task loaded without them."""
        return super().data


def need_model(model: Any, name: str) -> WordRegionAligner:
    """`model`, checked to be an aligner of words and regions (`WordRegionAligner`, as SVLR's)."""
    if not is_word_region_aligner(model):
        raise ConfigError(f"tasks.{name}: SVLR tasks need a model that aligns words with regions (model type svlr; "
                          f"the composed model's are the composed_* tasks), got {type(model).__name__}")
    return model


def split_items(table: Mapping[str, Sequence[Any]], split: str, what: str) -> Any:
    """The non-empty examples of `split` (a list, or the data's column table of them);
    ConfigError naming `what` otherwise."""
    if split not in table:
        raise ConfigError(f"{what}: no split {split!r} (have {', '.join(table)})")
    items = table[split]
    if not items:
        raise ConfigError(f"{what}: split {split!r} is empty")
    return items
