"""From an experiment config to the parts of a run: data -> model -> tasks (each with its head),
the task schedule and the learning-rate schedule; the same parts rebuilt from a run folder; and
a trained model's own folder (`config.json` + what reads its inputs), which rebuilds the model and
its heads without the data they were trained on.

Every module that registers a config type is imported here, by plain imports, so a config loaded
through `load_experiment` can name any registered data, model or task type. A new type is one
more import line below, or, from another package, an entry point of the group `vlmt.plugins`
(`load_plugins`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from vlmt import config as C
from vlmt.errors import ConfigError, VlmtError
from vlmt.models import composed, hierarchical, svlr  # noqa: F401  (registers model types)
from vlmt.seeding import seed_everything, stream_seed
from vlmt.tasks import shipped  # noqa: F401  (registers the task types and family data sections)
from vlmt.training import checkpoint as ckpt
from vlmt.training.distributed import resolve_device
from vlmt.training.schedules import (
    CURRICULA,
    CurriculumSchedule,
    PeriodicSchedule,
    StepDecay,
    TaskSchedule,
    WeightedJointSchedule,
)
from vlmt.version import __version__

PLUGIN_GROUP = "vlmt.plugins"
_plugins_loaded: list[str] = []


def load_plugins() -> list[str]:
    """Import every module that installed packages declare in the entry-point group `vlmt.plugins`
    (once per process); importing one registers its data, model and task types. Returns their
    names. A plugin that fails to import is a ConfigError naming it."""
    if not _plugins_loaded:
        from importlib.metadata import entry_points

        for entry in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
            try:
                entry.load()
            except Exception as e:  # a broken third-party package must not end in a traceback
                raise ConfigError(f"plugin {entry.name!r} ({entry.value}, entry point group {PLUGIN_GROUP}): "
                                  f"cannot be imported: {e}") from None
            _plugins_loaded.append(entry.name)
        _plugins_loaded.append("")  # loaded, even when there are none
    return [n for n in _plugins_loaded if n]


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> C.ExperimentConfig:
    """Read, override and validate one experiment file (`vlmt.config.load_config`), with every
    registered type available (the shipped ones and the plugins')."""
    load_plugins()
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
        seeds[name] = stream_seed(cfg.train.seed, kind, seen.get(kind, 0), pinned=getattr(tcfg, "stream_offset", None))
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
            stages = cfg.schedule.stages or CURRICULA[cfg.schedule.curriculum](order)
            return CurriculumSchedule(stages, iterations, cycle=cfg.schedule.cycle, weights=weights,
                                      budget=cfg.schedule.budget)
        return WeightedJointSchedule({n: weights[n] for n in order})
    except ValueError as e:
        raise ConfigError(f"schedule ({kind}): {e}") from None


def build_lr_schedule(cfg: C.ExperimentConfig, schedule: TaskSchedule) -> StepDecay:
    """Hierarchical rule: halve every sum(step_i) over the active tasks (per segment); or every
    `optim.lr_step` iterations when that is set (SVLR). `optim.lr_decay_style` picks a staircase
    or a continuous decay."""
    segments = []
    segments_ = schedule.segments()
    shares = schedule.shares if isinstance(schedule, CurriculumSchedule) else [{n: 1.0 for n in names}
                                                                                 for _, names in segments_]
    for (start, names), share in zip(segments_, shares):
        step = cfg.optim.lr_step or max(1, round(sum(cfg.tasks[n].step * share[n] for n in names)))
        segments.append((start, step))
    return StepDecay(segments, gamma=cfg.optim.lr_decay, style=cfg.optim.lr_decay_style)


def run_config(run_dir: str | Path) -> C.ExperimentConfig:
    """The resolved config a run folder was trained with (its `config.yaml`)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: not found; is {run_dir} a run folder written by `vlmt train`?")
    return load_experiment(path)


def rebuild(run_dir: str | Path, which: str = "best", *, device: str | torch.device | None = None
            ) -> tuple[C.ExperimentConfig, Parts]:
    """The parts of a run rebuilt from its config with the weights of its `which` checkpoint (best,
    else last, or a step number), in eval mode, on `device` (default: the run's train.device)."""
    cfg = run_config(run_dir)
    if not isinstance(device, torch.device):
        device = resolve_device(device or cfg.train.device)
    directory = ckpt.find_checkpoint(run_dir, which)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    parts = build_parts(cfg, device)
    ckpt.load_weights(directory, parts.objective)
    parts.objective.eval()
    return cfg, parts


# --------------------------------------------------------------------------- a model's own folder

MODEL_FORMAT = "vlmt-model"
MODEL_FOLDER = "model"  # RUN/model: written when a run starts
EXTRACTOR = "region_extractor"
DETECTOR_DIR = "detector"  # the world's detector (vlmt.data.synth.world.DETECTOR_DIR)


def model_description(cfg: C.ExperimentConfig, parts: Parts) -> dict[str, Any]:
    """config.json of a trained model: its type and complete constructor arguments, the data type
    its assets belong to, and the experiment that trained it (whose task sections are each head's
    configuration)."""
    model = parts.model
    return {"format": MODEL_FORMAT, "version": 1, "vlmt_version": __version__,
            "model_type": C.MODELS.name_of(type(model_config(model))),
            "model": dataclasses.asdict(model_config(model)),
            "data_type": C.DATA.name_of(type(cfg.data)),
            "tasks": {name: C.TASKS.name_of(type(t)) for name, t in cfg.tasks.items()},
            "experiment": C.to_dict(cfg)}


def preprocess_of(root: Any) -> dict[str, Any]:
    """How the training data's regions were made, so a new picture's are made the same way:
    "regions" is "detector" (the boxes the saved detector finds in the pixels), "pixel_proposals"
    (`vlmt.data.features.proposals`), "oracle" (the world's true boxes: an ablation; a new picture
    falls back to pixel proposals) or "feature_store" (features not computed from pixels, e.g.
    bottom-up features: a new picture needs its regions given); the picture size the regions were
    found at, the region CNN's crop and the tokenizer's rules."""
    from vlmt.data.features.store import FeatureStore
    from vlmt.data.text.tokenize import RULES

    folder = Path(root) if root is not None else None
    out: dict[str, Any] = {"tokenizer": RULES}
    if folder is None or not (folder / EXTRACTOR).is_dir():
        return {**out, "regions": "feature_store", "features": "region features read from a feature store "
                "(e.g. converted bottom-up features), not computed from pixels"}
    world = folder / "world.json"
    method = "pixel_proposals"
    if (folder / DETECTOR_DIR).is_dir():
        method = "detector"
    elif world.is_file():
        proposals = json.loads(world.read_text(encoding="utf-8")).get("proposals", {})
        method = "oracle" if proposals.get("method") == "oracle" else method
    out.update(regions=method, features=f"computed from the pixels by {EXTRACTOR}/ (crops of each region)")
    if method == "detector":
        out["detector"] = json.loads((folder / DETECTOR_DIR / "detector.json").read_text(encoding="utf-8"))["config"]
    try:
        store = FeatureStore(folder / "features")
        sizes = sorted(store.image_size(int(i)) for i in store.image_ids()[:200])
        width, height = sizes[len(sizes) // 2]
        out["picture"] = {"width": int(width), "height": int(height)}
    except (VlmtError, OSError, IndexError):
        pass
    return out


def save_model_folder(folder: str | Path, cfg: C.ExperimentConfig, parts: Parts) -> list[Path]:
    """Write config.json and the data's assets (vocabulary, answers, labels, word vectors, the region
    extractor the features came from) into `folder`, atomically; no weights. Returns the files."""
    from vlmt.io import write_json

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        assets = getattr(parts.data, "assets", None)
        if assets is not None:
            assets.save(tmp)
        root = getattr(parts.data, "root", None)
        for part in (EXTRACTOR, DETECTOR_DIR):  # what made the features from pixels, to make them again
            if root is not None and (Path(root) / part).is_dir():
                shutil.copytree(Path(root) / part, tmp / part)
        write_json(tmp / "config.json", {**model_description(cfg, parts), "preprocess": preprocess_of(root)})
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(p for p in folder.rglob("*") if p.is_file())


def read_model_description(folder: str | Path) -> dict[str, Any]:
    """config.json of a model folder, checked; DataError naming the file otherwise."""
    from vlmt.errors import DataError
    from vlmt.io import load_json

    path = Path(folder) / "config.json"
    info = load_json(path)
    if not isinstance(info, dict) or info.get("format") != MODEL_FORMAT:
        raise DataError(path, f"not a vlmt model description (format {MODEL_FORMAT!r} expected)")
    for key in ("model_type", "model", "data_type", "tasks", "experiment"):
        if key not in info:
            raise DataError(path, "missing", field=key)
    return info


def build_from_model_folder(folder: str | Path, *, device: str | torch.device = "cpu"
                            ) -> tuple[dict[str, Any], Parts]:
    """The model and its tasks (heads and what reads inputs, no examples) from a model folder's
    config.json and assets, without the data they were trained on; weights not loaded. The
    generators of the caller are left as they were."""
    folder = Path(folder)
    load_plugins()
    info = read_model_description(folder)
    where = str(folder / "config.json")
    for registry, key in ((C.MODELS, "model_type"), (C.DATA, "data_type")):
        if registry.resolve(info[key]) not in registry:  # a former type reads as its successor
            raise ConfigError(f"{where}: {registry.section} type {info[key]!r} is not registered here "
                              f"(known: {', '.join(registry.names())}); is the plugin that defines it installed?")
    cfg = C.from_dict(info["experiment"], source=f"{where} (experiment)")
    data_type = cast(type[C.DataConfig], C.DATA[C.DATA.resolve(info["data_type"])])
    assets = data_type.load_assets(folder)
    with torch.random.fork_rng(devices=[]):
        try:
            model = C.MODELS[info["model_type"]](**info["model"]).create()
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: key 'model': {e}") from None
        tasks = {name: tcfg.build(name=name, data=assets, model=model, seed=0) for name, tcfg in cfg.tasks.items()}
    objective = Objective(model, tasks)
    objective.to(torch.device(device))
    objective.eval()
    return info, Parts(assets, model, tasks, objective)
