"""vlmt: multi-task vision-language representation learning.

Implements the hierarchical Dense Co-attention multi-task model (Nguyen & Okatani, CVPR 2019)
and SVLR aligned word-region representations (Gupta et al., ICCV 2017) on shared data readers,
tasks, a trainer and official metrics.

    import vlmt
    vlmt.train("tiny", "runs/tiny")                       # a shipped config's name, or a YAML file
    vlmt.evaluate("runs/tiny", split="test")              # {task: {metric: value}}
    vlmt.export("runs/tiny", "models/tiny")               # a standalone model folder
    model = vlmt.load("models/tiny")                      # ... or a run folder
    model.answer("picture.png", "what color is the square?")

The functions (and `vlmt.TrainedModel`) import what they need on first use, so `import vlmt` stays
light (docs/python_api.md). `__all__` lists the whole API.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmt.version import __version__

# the whole public API: `from vlmt import *` gives these names and no others
__all__ = ["TrainedModel", "__version__", "evaluate", "export", "load", "train"]

if TYPE_CHECKING:
    from vlmt.inference.model import TrainedModel


def __getattr__(name: str) -> Any:
    """`vlmt.TrainedModel` (what `load` returns), imported on first use so `import vlmt` stays light."""
    if name == "TrainedModel":
        from vlmt.inference.model import TrainedModel

        return TrainedModel
    raise AttributeError(f"module 'vlmt' has no attribute {name!r}")


def load(path: str | Path, *, checkpoint: str = "best", device: str = "cpu") -> TrainedModel:
    """A trained model, ready to use, from a folder of `vlmt export` or a run folder (its `checkpoint`:
    best, last or a step number); reads nothing else (`vlmt.inference.model.load`)."""
    from vlmt.inference.model import load as _load

    return _load(path, checkpoint=checkpoint, device=device)


def train(config: str | Path, out: str | Path, *, overrides: list[str] | None = None,
          resume: bool = False) -> dict[str, Any]:
    """`vlmt train`: train an experiment (a YAML file or a shipped config's name, with `key=value`
    overrides) into the run folder `out`; returns the run's summary (steps, best checkpoint)."""
    from vlmt.training.trainer import train_experiment

    return train_experiment(config, out, overrides=overrides, resume=resume)


def evaluate(run: str | Path, *, split: str = "test", checkpoint: str = "best",
             device: str | None = None) -> dict[str, dict[str, float]]:
    """`vlmt evaluate run`: {task: {metric: value}} of a run's checkpoint on `split`, with the
    official metrics (needs the run's data)."""
    from vlmt.training.evaluate import evaluate_run

    return evaluate_run(run, split=split, checkpoint=checkpoint, device=device)


def export(run: str | Path, out: str | Path, *, checkpoint: str = "best", metrics: str | None = "test") -> Path:
    """`vlmt export`: write a run's model as a standalone folder `out` (config.json, model.safetensors,
    the vocabulary and other assets, a README.md model card with the metrics of `metrics`, a split
    or None). Returns the folder."""
    from vlmt.inference.export import check_export, export_run
    from vlmt.training.evaluate import evaluate_run

    check_export(Path(run), Path(out), checkpoint)
    scores = evaluate_run(run, split=metrics, checkpoint=checkpoint, own_best=False) if metrics else None
    return export_run(run, out, checkpoint=checkpoint, metrics=scores, metrics_split=metrics or "test")
