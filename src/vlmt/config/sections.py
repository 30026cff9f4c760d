"""The sections of an experiment file as typed dataclasses.

    data:     {type: datasets, root: world:tiny, ...}       a registered `DataConfig`
    model:    {type: hierarchical, dim: 64, ...}             a registered `ModelConfig`
    tasks:    {vqa: {type: vqa, layer: 5, ...}, ...}          registered `TaskConfig`s, by name
    schedule: ScheduleConfig   optim: OptimConfig   train: TrainConfig

The extensible sections are bases here; their types subclass them next to the code they configure
(`vlmt.data.section`, `vlmt.models.hierarchical`, `vlmt.tasks.vqa`, ...). A model config is
also the model's constructor arguments: the sizes that come from the data (vocabulary, feature
width, ...) are fields marked with `from_data()`, left unset in experiment files and filled in when
the model is built, so the built model's config is complete and stored with its weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from vlmt.config.registry import register_data

FROM_DATA = "from_data"
KEYED = "keyed"


def from_data(default: Any = None) -> Any:
    """A model-config field whose value comes from the data section when the model is built; an
    experiment file may not set it."""
    return field(default=default, metadata={FROM_DATA: True})


def keyed(value_type: Callable[[str], type]) -> Any:
    """A `dict[str, Any]` field whose values are dataclasses picked by their key: `value_type(key)`
    gives the dataclass of one entry (a KeyError, whose message the loader reports, for an unknown
    key). A data section's `datasets` (kind -> files config) is one."""
    return field(default_factory=dict, metadata={KEYED: value_type})


def family_of(data: Any, name: str) -> Any:
    """What a model reads its sizes from: family `name`'s data when `data` is a section holding
    several families (`data.family(name)`, built on first use), else `data` itself (one family's
    data or assets, handed over directly)."""
    get = getattr(data, "family", None)
    return get(name) if callable(get) else data


def data_fields(cls: type) -> set[str]:
    """Names of the `from_data()` fields of a config dataclass."""
    return {f.name for f in dataclasses.fields(cls) if f.metadata.get(FROM_DATA)}


@dataclass
class DataConfig:
    """Base of data sections; `build()` returns whatever the model and tasks need (or None)."""

    def build(self, *, seed: int) -> Any:
        return None

    def dataset_files(self) -> dict[str, Any]:
        """The datasets the section reads: name (a kind of `vlmt.data.datasets`) -> its files
        config. The gallery of a served model finds its test pictures through them."""
        return {}

    @classmethod
    def load_assets(cls, folder: Path) -> Any:
        """What the built section's `assets` saved into `folder` (`assets.save(folder)`): the part of
        the data a trained model needs to read new inputs. None for a section without assets."""
        return None


@register_data("none")
@dataclass
class NoData(DataConfig):
    """No shared data: each task generates or reads its own (e.g. the trainer sanity check)."""


@dataclass(frozen=True)
class ModelConfig:
    """Base of model sections: the model's constructor arguments. Subclasses add their fields and
    implement `build`, which fills the `from_data()` fields from the data section and returns the
    model; the model keeps that complete config and never changes it."""

    def build(self, *, data: Any) -> Any:  # -> torch.nn.Module
        raise NotImplementedError

    def create(self) -> Any:  # -> torch.nn.Module
        """The model from this config alone, every `from_data()` field set (a model rebuilt from its
        saved config; its weights are loaded afterwards)."""
        raise NotImplementedError


@dataclass
class TaskConfig:
    """Fields every task has; subclasses add their own and implement `build`.

    batch_size: examples per update; loss_weight: weight of the task's loss when several tasks are
    trained in one update (joint schedule) or its scale under task switching; iterations / step:
    the task's `#iter_i` and `#step_i` of the hierarchical paper (Sec. 4.2), used by the periodic
    schedule and the learning-rate halving.
    """

    batch_size: int = 32
    loss_weight: float = 1.0
    iterations: int = 1000
    step: int = 1000

    def build(self, *, name: str, data: Any, model: Any, seed: int) -> Any:
        """The task (see `vlmt.tasks.base.Task`), with its head; `seed` orders its training
        batches (`vlmt.seeding.stream_seed`)."""
        raise NotImplementedError


@dataclass
class ScheduleConfig:
    """Which task(s) to train at each iteration.

    kind: periodic (Algorithm 1), curriculum (single -> pairs -> all, each stage periodic),
    joint (every task every step, weighted by loss_weight).
    cycle: C, iterations per switching cycle. order: tasks in schedule order (default: the order
    of the `tasks` section). stages: curriculum stages as lists of task names (default: from
    `curriculum`). curriculum: `subsets` (every single task, every pair, ..., then all) or
    `growing` (the first task, the first two, ..., all). budget: `shared` (each task's
    `iterations` divided over the stages it is in: its updates in all) or `full` (every stage
    runs its tasks' whole `iterations`, Sec. 4.2 to the letter).
    """

    kind: Literal["periodic", "curriculum", "joint"] = "periodic"
    cycle: int = 100
    order: list[str] | None = None
    stages: list[list[str]] | None = None
    curriculum: Literal["subsets", "growing"] = "subsets"
    budget: Literal["shared", "full"] = "shared"


@dataclass
class OptimConfig:
    """Adam with step decay: lr * lr_decay ** (iterations // lr_step).

    lr_step None means the hierarchical paper's rule: the sum of `step` over the active tasks
    (per curriculum stage). An integer gives a fixed period (SVLR: decay 0.5 every N).
    lr_decay_style: "staircase" (the formula above; H's "halve after each #step") or
    "continuous" (lr * lr_decay ** (iterations / lr_step), TensorFlow's exponential_decay, SVLR).
    per_task_state: one Adam state per task instead of one shared by all (task-switching
    schedules only; see vlmt.training.optimizers).
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    weight_decay: float = 0.0
    lr_decay: float = 0.5
    lr_step: int | None = None
    lr_decay_style: Literal["staircase", "continuous"] = "staircase"
    grad_clip: float | None = None
    per_task_state: bool = False


@dataclass
class TrainConfig:
    """Loop settings. max_iters None: the schedule's own length. best_metric (default: the first
    task's primary metric) picks the best checkpoint; keep_best false keeps none, so every task
    is evaluated at the last checkpoint (validation still runs and is logged); keep_best
    "per_task" also keeps each task's own best on its own primary validation metric (a task that
    trains on val has none and is judged at the last checkpoint, one without updates, e.g.
    zero-shot, at `best`), and `vlmt evaluate run` judges each task at its own best.
    keep_checkpoints: how many of the newest checkpoints (up to `last`) survive each save, besides
    the best one(s), which always do; 2 (at least: the one before `last` is what a damaged newest
    checkpoint leaves to resume from) or "all" (every one, e.g. to score a learning curve).
    init_from: a run folder whose last
    checkpoint initialises the model's weights (not the task heads, not the optimizer) before the
    first update, e.g. SVLR pre-trained on Genome, then trained jointly."""

    seed: int = 0
    max_iters: int | None = None
    eval_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 50
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    num_workers: int = 0
    threads: int | None = None
    best_metric: str | None = None
    best_mode: Literal["min", "max"] | None = None
    keep_best: bool | Literal["per_task"] = True
    keep_checkpoints: int | Literal["all"] = 2
    init_from: str | None = None
    tensorboard: bool = True
    progress: bool = True


@dataclass
class ExperimentConfig:
    model: ModelConfig
    tasks: dict[str, TaskConfig]
    data: DataConfig = field(default_factory=NoData)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def experiment_problem(cfg: ExperimentConfig) -> tuple[str, str] | None:
    """The first cross-section problem of an experiment as (dotted key, message), or None."""
    names = list(cfg.tasks)
    if not names:
        return "tasks", "at least one task is needed"
    for name, t in cfg.tasks.items():
        for key in ("batch_size", "iterations", "step"):
            if getattr(t, key) < 1:
                return f"tasks.{name}.{key}", f"must be >= 1, got {getattr(t, key)}"
    sch = cfg.schedule
    for i, task in enumerate(sch.order or []):
        if task not in cfg.tasks:
            return f"schedule.order[{i}]", f"no task {task!r} in the tasks section{did_you_mean(task, names)}"
    for s, stage in enumerate(sch.stages or []):
        if not stage:
            return f"schedule.stages[{s}]", "a stage needs at least one task"
        for i, task in enumerate(stage):
            if task not in cfg.tasks:
                return f"schedule.stages[{s}][{i}]", f"no task {task!r} in the tasks section{did_you_mean(task, names)}"
    if sch.cycle < 1:
        return "schedule.cycle", f"must be >= 1, got {sch.cycle}"
    tr = cfg.train
    for key in ("eval_every", "checkpoint_every", "log_every"):
        if getattr(tr, key) < 1:
            return f"train.{key}", f"must be >= 1, got {getattr(tr, key)}"
    if tr.keep_checkpoints != "all" and tr.keep_checkpoints < 2:
        return "train.keep_checkpoints", (f"must be >= 2 or 'all', got {tr.keep_checkpoints} (the checkpoint "
                                          "before the last is what a damaged last one leaves to resume from)")
    if tr.max_iters is not None and tr.max_iters < 1:
        return "train.max_iters", f"must be >= 1, got {tr.max_iters}"
    if cfg.optim.lr_step is not None and cfg.optim.lr_step < 1:
        return "optim.lr_step", f"must be >= 1, got {cfg.optim.lr_step}"
    if cfg.optim.per_task_state and sch.kind == "joint":
        return "optim.per_task_state", ("needs one task per update (schedule.kind periodic or curriculum); "
                                        "the joint schedule trains every task in every update")
    if tr.device != "auto" and not (tr.device == "cpu" or tr.device.startswith("cuda")):
        return "train.device", f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {tr.device!r}"
    return None


def did_you_mean(key: str, candidates: list[str]) -> str:
    """"; did you mean 'x'?" for the closest candidate, or ""."""
    import difflib

    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
