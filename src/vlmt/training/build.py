"""From an experiment config to the parts of a run: data -> model -> tasks (each with its head),
the task schedule and the learning-rate schedule; and the same parts rebuilt from a run folder.

Every module that registers a config type is imported here, by plain imports, so a config loaded
through `load_experiment` can name any registered data, model or task type. A new type is one
more import line below.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlmt import config as C
from vlmt.data import svlr_datasets, vl_datasets  # noqa: F401  (registers data types)
from vlmt.errors import ConfigError
from vlmt.models import hierarchical, svlr  # noqa: F401  (registers model types)
from vlmt.seeding import seed_everything, stream_seed
from vlmt.tasks import grounding, retrieval, sanity, svlr_recognition, svlr_vqa_mc, svlr_zero_shot, vqa  # noqa: F401  (task types)
from vlmt.training import checkpoint as ckpt
from vlmt.training.distributed import resolve_device
from vlmt.training.schedules import (
    CurriculumSchedule,
    PeriodicSchedule,
    StepDecay,
    TaskSchedule,
    WeightedJointSchedule,
    default_stages,
)


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> C.ExperimentConfig:
    """Read, override and validate one experiment file (`vlmt.config.load_config`), with every
    registered type available."""
    return C.load_config(path, overrides)


class Objective(nn.Module):
    """The model and every task (with its head) as one module: "model.*" and "tasks.<name>.*" are
    every trained parameter. One forward per update computes the weighted sum of the scheduled
    tasks' losses (one forward also suits DDP)."""

    def __init__(self, model: nn.Module, tasks: dict[str, nn.Module]):
        super().__init__()
        self.model = model
        self.tasks = nn.ModuleDict(tasks)

    def forward(self, work: list[tuple[str, float, Any]]) -> tuple[torch.Tensor, dict[str, dict]]:
        total: torch.Tensor | float = 0.0
        outs = {}
        for name, weight, batch in work:
            out = self.tasks[name](self.model, batch)
            total = total + weight * out["loss"]
            outs[name] = out
        assert isinstance(total, torch.Tensor), "an update trains at least one task"
        return total, outs


@dataclass
class Parts:
    """What a config builds: the shared data, the model, the tasks by name and the `Objective`
    holding the model and the tasks."""

    data: Any
    model: nn.Module
    tasks: dict[str, Any]
    objective: Objective


def model_config(model: nn.Module) -> C.ModelConfig:
    """The complete config a model was built with (its constructor arguments, sizes included)."""
    config = getattr(model, "config", None)
    if not isinstance(config, C.ModelConfig):
        raise TypeError(f"{type(model).__name__} keeps no ModelConfig in .config")
    return config


def task_seeds(cfg: C.ExperimentConfig) -> dict[str, int]:
    """The seed of every task's training batch order (`vlmt.seeding.stream_seed`); distinct within
    the run."""
    seen: dict[str, int] = {}
    seeds = {}
    for name, tcfg in cfg.tasks.items():
        kind = C.TASKS.name_of(type(tcfg))
        seeds[name] = stream_seed(cfg.train.seed, kind, seen.get(kind, 0))
        seen[kind] = seen.get(kind, 0) + 1
    if len(set(seeds.values())) != len(seeds):
        raise ConfigError(f"tasks: two tasks would draw the same batch order ({seeds}); rename a task type")
    return seeds


def build_parts(cfg: C.ExperimentConfig, device: torch.device) -> Parts:
    """Data -> model -> tasks, moved to `device`.

    The generators are seeded with `train.seed` after the data is built: building it may draw
    from or reseed them (a world generated on first use trains its region extractor), and the
    initial weights must not depend on whether the data was already in the cache. The model's
    parameters are created first, then each task's head in the order of the tasks section."""
    data = cfg.data.build(seed=cfg.train.seed)
    seed_everything(cfg.train.seed)
    model = cfg.model.build(data=data)
    seeds = task_seeds(cfg)
    tasks = {name: tcfg.build(name=name, data=data, model=model, seed=seeds[name]) for name, tcfg in cfg.tasks.items()}
    objective = Objective(model, tasks)
    objective.to(device)
    return Parts(data, model, tasks, objective)


def build_schedule(cfg: C.ExperimentConfig) -> TaskSchedule:
    """The task schedule of `cfg.schedule` over the tasks' `iterations` and `loss_weight`."""
    order = cfg.schedule.order or list(cfg.tasks)
    iterations = {n: cfg.tasks[n].iterations for n in cfg.tasks}
    weights = {n: cfg.tasks[n].loss_weight for n in cfg.tasks}
    kind = cfg.schedule.kind
    try:
        if kind == "periodic":
            return PeriodicSchedule(order, [iterations[n] for n in order], cycle=cfg.schedule.cycle, weights=weights)
        if kind == "curriculum":
            stages = cfg.schedule.stages or default_stages(order)
            return CurriculumSchedule(stages, iterations, cycle=cfg.schedule.cycle, weights=weights)
        return WeightedJointSchedule({n: weights[n] for n in order})
    except ValueError as e:
        raise ConfigError(f"schedule ({kind}): {e}") from None


def build_lr_schedule(cfg: C.ExperimentConfig, schedule: TaskSchedule) -> StepDecay:
    """Hierarchical rule: halve every sum(step_i) over the active tasks (per segment); or every
    `optim.lr_step` iterations when that is set (SVLR)."""
    segments = []
    for start, names in schedule.segments():
        step = cfg.optim.lr_step or sum(cfg.tasks[n].step for n in names)
        segments.append((start, step))
    return StepDecay(segments, gamma=cfg.optim.lr_decay)


def run_config(run_dir: str | Path) -> C.ExperimentConfig:
    """The resolved config a run folder was trained with (its `config.yaml`)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: not found; is {run_dir} a run folder written by `vlmt train`?")
    return load_experiment(path)


def rebuild(run_dir: str | Path, which: str = "best", *, device: str | torch.device | None = None
            ) -> tuple[C.ExperimentConfig, Parts]:
    """The parts of a run rebuilt from its config with the weights of its `which` checkpoint (best,
    else last), in eval mode, on `device` (default: the run's train.device)."""
    cfg = run_config(run_dir)
    if not isinstance(device, torch.device):
        device = resolve_device(device or cfg.train.device)
    directory = ckpt.checkpoint_dir(run_dir, which) or ckpt.checkpoint_dir(run_dir, "last")
    if directory is None:
        raise ConfigError(f"{Path(run_dir) / ckpt.CHECKPOINTS}: no checkpoint yet (expected last.json)")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    parts = build_parts(cfg, device)
    ckpt.load_weights(directory, parts.objective)
    parts.objective.eval()
    return cfg, parts
