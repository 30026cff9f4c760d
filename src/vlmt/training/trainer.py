"""The training loop: schedule -> task batches -> Adam updates -> metrics, validation, checkpoints.

Plain functions. `train(cfg, run_dir)` builds the parts from the config, runs the loop and leaves
everything of the run in `run_dir`:

    config.yaml        the resolved config (what was actually run)
    train.log          human-readable log (start, validations, checkpoints, resume points)
    metrics.jsonl      one JSON object per line: {"step", "split": "train"|"val", "<task>/<name>": ..}
    tensorboard/       the same scalars as TensorBoard event files (when tensorboard is installed)
    checkpoints/       see vlmt.training.checkpoint
    summary.json       final step, last validation metrics, best checkpoint

The loop knows nothing about individual tasks: it asks the schedule which task(s) to train,
takes the next batch from each task's stream, and calls `task(model, batch)`.

Resume is bit-identical on CPU: the k-th batch of a task depends on (seed, k) only, the learning
rate on the iteration only, and the checkpoint holds the optimizer, schedule and RNG states and
the number of batches each task has consumed. Under DDP the checkpoint (written by the first
process) cannot hold every process's RNG state; there each process seeds its generators at every
iteration from (seed, rank, iteration) instead, which makes DDP resume bit-identical as well.
Validation runs with forked RNG states, so how often one validates never changes the training
trajectory.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vlmt import config as C
from vlmt.errors import ConfigError, TrainingError
from vlmt.io import atomic_write, write_json
from vlmt.tasks.base import move_to
from vlmt.training import checkpoint as ckpt
from vlmt.training.optimizers import TaskAdam
from vlmt.training.prefetch import Prefetcher, prefetched
from vlmt.training.schedules import (CurriculumSchedule, PeriodicSchedule, StepDecay, TaskSchedule,
                                     WeightedJointSchedule, default_stages)

log = logging.getLogger("vlmt.train")


# --------------------------------------------------------------------------- building


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_seed(seed: int, rank: int, step: int) -> int:
    """Seed of process `rank`'s generators at iteration `step` of a DDP run: a function of
    (seed, rank, step) only, so a resumed run draws what an uninterrupted one draws."""
    return int(np.random.SeedSequence((seed, rank, step)).generate_state(1, np.uint64)[0] % 2**63)


def resolve_device(name: str, local_rank: int = 0, *, world: int = 1) -> torch.device:
    """`auto` -> cuda when available, else cpu; `cuda` without one is a config error. Under
    torchrun (`world` > 1) each process takes the GPU of its LOCAL_RANK, so a device naming one
    GPU (`cuda:0`) is refused there: every process would use the same GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but no CUDA device is available")
    if name.startswith("cuda:") and world > 1:
        raise ConfigError(f"train.device: {name!r} names one GPU, but under torchrun each of the {world} "
                          f"processes takes the GPU of its LOCAL_RANK; use 'cuda' or 'auto'")
    if name == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"train.device: process LOCAL_RANK {local_rank} has no GPU of its own "
                              f"({torch.cuda.device_count()} visible); start at most that many processes per node")
        name = f"cuda:{local_rank}"
    return torch.device(name)


def init_distributed(device: str = "auto") -> tuple[int, int, int]:
    """(rank, world size, local rank); starts the process group when launched by torchrun
    (WORLD_SIZE > 1): NCCL when `device` (train.device) resolves to a GPU, which then becomes
    the process's current device; gloo on CPUs (also on a GPU host told to train on the CPU).

    The group lives until the process exits, and later trainings in the same process (the cells
    of `vlmt search-layers`, a run and its resume) use it: destroying the default group and
    starting it again can pair a fast process with a slow one's previous group and hang."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank, world=world)
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)  # NCCL collectives (the final barrier) run on the current device
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        atexit.register(_end_process_group)
    return dist.get_rank(), dist.get_world_size(), local_rank


def _end_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


class Objective(nn.Module):
    """The model and every task's head as one module: one forward per update computes the
    weighted sum of the scheduled tasks' losses (one forward also suits DDP)."""

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
        return total, outs


def build_parts(cfg: C.ExperimentConfig, device: torch.device):
    """Data -> model -> tasks, moved to `device`. Returns (model, tasks, objective) where the
    `Objective` holds every trained parameter ("model.*", "tasks.<name>.*").

    The generators are seeded with `train.seed` after the data is built: building it may draw
    from or reseed them (a world generated on first use trains its region extractor), and the
    initial weights must not depend on whether the data was already in the cache."""
    data = cfg.data.build(seed=cfg.train.seed)
    seed_everything(cfg.train.seed)
    model = cfg.model.build(data=data)
    tasks = {name: tcfg.build(name=name, data=data, model=model, train=cfg.train)
             for name, tcfg in cfg.tasks.items()}
    objective = Objective(model, tasks)
    objective.to(device)
    return model, tasks, objective


def build_schedule(cfg: C.ExperimentConfig) -> TaskSchedule:
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


# --------------------------------------------------------------------------- logging and metrics


class _TqdmHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def _setup_logging(run_dir: Path, quiet: bool) -> list[logging.Handler]:
    fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.FileHandler(run_dir / "train.log", encoding="utf-8")]
    if not quiet:
        handlers.append(_TqdmHandler())
    for h in handlers:
        h.setFormatter(fmt)
        log.addHandler(h)
    log.setLevel(logging.INFO)
    log.propagate = False
    return handlers


class MetricsWriter:
    """Appends records to metrics.jsonl (and TensorBoard when available)."""

    def __init__(self, run_dir: Path, *, resume_step: int | None, tensorboard: bool):
        self.path = run_dir / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            # drop what a killed run wrote after its last checkpoint: those steps are re-run
            kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line)["step"] <= resume_step]
            with atomic_write(self.path, "w", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in kept))
        elif resume_step is None:
            self.path.unlink(missing_ok=True)
        self.file = open(self.path, "a", encoding="utf-8")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("tensorboard is not installed: metrics go to metrics.jsonl only")
            else:
                self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step)

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in record.items():
                if key not in ("step", "split") and isinstance(value, (int, float)):
                    self.tb.add_scalar(f"{record['split']}/{key}", value, record["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


# --------------------------------------------------------------------------- the loop


@contextlib.contextmanager
def _forked_rng(device: torch.device):
    """Run a block (validation) without disturbing any generator the training uses."""
    py, npy = random.getstate(), np.random.get_state()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda" if devices else "cpu"):
        yield
    random.setstate(py)
    np.random.set_state(npy)


def evaluate_tasks(model: nn.Module, tasks: dict[str, Any], split: str, device: torch.device,
                   precision: str = "fp32") -> dict[str, float]:
    """{"<task>/<metric>": value} over every task on one split."""
    out: dict[str, float] = {}
    with _forked_rng(device), _autocast(device, precision):
        for name, task in tasks.items():
            for key, value in task.evaluate(model, split, device=device).items():
                out[f"{name}/{key}"] = float(value)
    return out


def _autocast(device: torch.device, precision: str):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _best_rule(cfg: C.ExperimentConfig, tasks: dict[str, Any]) -> tuple[str, str]:
    metric = cfg.train.best_metric
    if metric is None:
        first = next(iter(tasks))
        metric = f"{first}/{tasks[first].primary_metric}"
    if metric.partition("/")[0] not in tasks:
        raise ConfigError(f"train.best_metric: {metric!r} should be '<task>/<metric>' with a task of "
                          f"the tasks section ({', '.join(tasks)})")
    mode = cfg.train.best_mode
    if mode is None:
        name, _, key = metric.partition("/")
        if name not in tasks or key != tasks[name].primary_metric:
            raise ConfigError(f"train.best_mode: needed (min or max) for best_metric {metric!r}, "
                              f"which is not a task's primary metric")
        mode = "max" if tasks[name].higher_is_better else "min"
    return metric, mode


def train(cfg: C.ExperimentConfig, run_dir: str | Path, *, resume: bool = False) -> dict[str, Any]:
    """Train `cfg` into `run_dir` (resuming from its last checkpoint when `resume`)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    last_dir = ckpt.checkpoint_dir(run_dir, "last")
    if resume and last_dir is None:
        raise ConfigError(f"{run_dir}: --resume given but the run has no checkpoint yet")
    if not resume and last_dir is not None:
        raise ConfigError(f"{run_dir}: already holds a run; pass --resume to continue it or choose another --out")
    rank, world, local_rank = init_distributed(cfg.train.device)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # every process has checked the run folder before the first one writes to it
    handlers = _setup_logging(run_dir, quiet=not cfg.train.progress) if rank == 0 else []
    try:
        return _train(cfg, run_dir, last_dir if resume else None, rank=rank, world=world, local_rank=local_rank)
    finally:
        for h in handlers:
            log.removeHandler(h)
            h.close()


def _train(cfg: C.ExperimentConfig, run_dir: Path, resume_from: Path | None, *,
           rank: int, world: int, local_rank: int) -> dict[str, Any]:
    tr = cfg.train
    if tr.threads:
        torch.set_num_threads(tr.threads)
    device = resolve_device(tr.device, local_rank, world=world)
    seed_everything(tr.seed)
    model, tasks, modules = build_parts(cfg, device)
    if world > 1:
        for name, tcfg in cfg.tasks.items():
            if tcfg.batch_size % world:
                raise ConfigError(f"tasks.{name}.batch_size: {tcfg.batch_size} is the global batch and must be "
                                  f"divisible by the {world} processes")
    main = rank == 0
    schedule = build_schedule(cfg)
    lr_schedule = build_lr_schedule(cfg, schedule)
    max_iters = tr.max_iters or schedule.length
    if max_iters is None:
        raise ConfigError("train.max_iters: required with schedule.kind 'joint' (it has no length of its own)")
    best_metric, best_mode = _best_rule(cfg, tasks)
    optimizer = TaskAdam(modules.parameters(), tasks=list(tasks), per_task=cfg.optim.per_task_state,
                         lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps,
                         weight_decay=cfg.optim.weight_decay)
    consumed = {name: 0 for name in tasks}
    step, best_value = 0, None
    resumed_window: dict[str, list[float]] = {}
    if resume_from is not None:
        state = ckpt.load_state(resume_from)
        ckpt.load_weights(resume_from, modules)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        lr_schedule.load_state_dict(state["lr_schedule"])
        consumed.update(state["consumed"])
        step, best_value = int(state["step"]), state["best_value"]
        if world == 1:
            ckpt.set_rng_state(state["rng"])
        resumed_window = state["log_window"]
        log.info("resumed from %s at step %d", resume_from.name, step)
    elif main:
        C.save_config(cfg, run_dir / "config.yaml")
        log.info("training %s on %s for %d iterations (%s schedule), run folder %s",
                 ", ".join(tasks), device, max_iters, cfg.schedule.kind, run_dir)
    metrics = MetricsWriter(run_dir, resume_step=step if resume_from is not None else None,
                            tensorboard=tr.tensorboard) if main else None
    streams = {name: prefetched(iter(task.batches("train", start=consumed[name], rank=rank, world_size=world)),
                                tr.num_workers, name=name)
               for name, task in tasks.items()}
    objective: nn.Module = modules
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # one task per update leaves the other heads without gradients: find_unused_parameters
        objective = DistributedDataParallel(modules, device_ids=[device.index] if device.type == "cuda" else None,
                                            find_unused_parameters=True)
    meta = {"config": C.to_dict(cfg), "model_type": C.MODELS.name_of(type(cfg.model)),
            "model_args": C.to_dict(cfg.model)}

    def save(at_step: int, *, best: dict | None) -> None:
        state = {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                 "lr_schedule": lr_schedule.state_dict(), "consumed": dict(consumed),
                 "best_value": best_value, "rng": ckpt.rng_state(), "log_window": {k: [float(x) for x in v] for k, v in window.items()}, **meta}
        path = ckpt.save_checkpoint(run_dir, step=at_step, modules=modules, state=state, best=best)
        log.info("step %d: checkpoint %s%s", at_step, path.name, " (best)" if best else "")

    from tqdm import tqdm

    # disable=None: a bar on a terminal, none when stderr is a file (train.log has the record)
    bar = tqdm(total=max_iters, initial=step, disable=None if tr.progress and main else True, file=sys.stderr,
               dynamic_ncols=True, desc="train")
    # per-step scalars not yet averaged into a metrics record (kept in checkpoints, so the records
    # of a resumed run equal those of an uninterrupted one)
    window: dict[str, list] = {k: list(v) for k, v in resumed_window.items()}
    shown = ""  # mean losses of the last record, for the progress bar
    last_val: dict[str, float] = {}
    modules.train()
    started = time.perf_counter()
    try:
        while step < max_iters:
            lr = cfg.optim.lr * lr_schedule.factor(step)
            optimizer.set_lr(lr)
            optimizer.zero_grad()
            if world > 1:  # different dropout masks per process; resumable without every process's RNG state
                seed_everything(step_seed(tr.seed, rank, step))
            work = []
            for name, weight in schedule.next():
                work.append((name, weight, move_to(next(streams[name]), device)))
                consumed[name] += 1
            with _autocast(device, tr.precision):
                total, outs = objective(work)
            for name, out in outs.items():  # kept as tensors: no device sync until a record is due
                for key, value in out.items():
                    window.setdefault(f"{name}/{key}", []).append(value.detach())
            total.backward()
            if cfg.optim.grad_clip:
                nn.utils.clip_grad_norm_(modules.parameters(), cfg.optim.grad_clip)
            optimizer.step([name for name, _, _ in work])
            step += 1
            bar.set_postfix_str(f"{' + '.join(name for name, _, _ in work)} | {shown}", refresh=False)
            bar.update(1)
            if not main:
                window.clear()
                continue  # only the first process validates, logs and checkpoints
            if step % tr.log_every == 0 or step == max_iters:
                record = {"step": step, "split": "train", "lr": lr}
                record.update({k: sum(float(x) for x in v) / len(v) for k, v in window.items()})
                metrics.write(record)
                bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
                if bad:
                    raise TrainingError(f"{metrics.path}: step {step}: non-finite training scalars {bad}; "
                                        f"lower optim.lr or set optim.grad_clip, then --resume from the "
                                        f"last checkpoint")
                window.clear()
                shown = " ".join(f"{k} {v:.4g}" for k, v in record.items() if k.endswith("/loss"))
            best = None
            if step % tr.eval_every == 0 or step == max_iters:
                last_val = evaluate_tasks(model, tasks, "val", device, tr.precision)
                metrics.write({"step": step, "split": "val", **last_val})
                value = last_val.get(best_metric)
                if value is None:
                    raise ConfigError(f"train.best_metric: {best_metric!r} is not among the validation "
                                      f"metrics {sorted(last_val)}")
                log.info("step %d: val %s", step, " ".join(f"{k}={v:.5g}" for k, v in last_val.items()))
                if best_value is None or (value > best_value if best_mode == "max" else value < best_value):
                    best_value = value
                    best = {"metric": best_metric, "value": value}
            if best is not None or step % tr.checkpoint_every == 0 or step == max_iters:
                save(step, best=best)
    finally:
        bar.close()
        for stream in streams.values():
            if isinstance(stream, Prefetcher):
                stream.close()
        if metrics is not None:
            metrics.close()
    elapsed = time.perf_counter() - started
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # the first process has written its last checkpoint
    if not main:
        return {"step": step, "rank": rank}
    summary = {"step": step, "val": last_val, "best": ckpt.best_info(run_dir), "seconds": round(elapsed, 3),
               "run": str(run_dir)}
    write_json(run_dir / "summary.json", summary)
    log.info("done: %d iterations in %.1f s; best %s", step, elapsed, summary["best"])
    return summary
