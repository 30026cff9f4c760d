"""The training loop: schedule -> task batches -> Adam updates -> metrics, validation, checkpoints.

Plain functions. `train(cfg, run_dir)` builds the parts from the config, runs the loop and leaves
everything of the run in `run_dir`:

    config.yaml        the resolved config (what was actually run)
    data.json          what the data section read, when it describes itself (`data.run_record()`):
                       e.g. the images and questions an SVLR run holds out of train for model selection
    model/             config.json (the model's constructor arguments, the tasks) and what reads its
                       inputs (vocabulary, answers, labels, word vectors, region extractor): with a
                       checkpoint's weights, a model usable without its data (`vlmt.load`, `vlmt export`)
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

import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlmt import config as C
from vlmt.errors import ConfigError, TrainingError
from vlmt.io import atomic_write, write_json
from vlmt.seeding import seed_everything, step_seed
from vlmt.tasks.base import move_to
from vlmt.training import checkpoint as ckpt
from vlmt.training.build import (
    MODEL_FOLDER,
    build_lr_schedule,
    build_parts,
    build_schedule,
    load_experiment,
    model_config,
    save_model_folder,
)
from vlmt.training.distributed import init_distributed, resolve_device
from vlmt.training.evaluate import autocast, evaluate_tasks
from vlmt.training.optimizers import TaskAdam
from vlmt.training.prefetch import Prefetcher, prefetched
from vlmt.training.run_folder import RunLock, read_records
from vlmt.training.schedules import CurriculumSchedule, StepDecay, TaskSchedule, update_counts

log = logging.getLogger("vlmt.train")
DATA_LOG = logging.getLogger("vlmt.data")
DATA_RECORD = "data.json"  # RUN/data.json: the data section's `run_record()`


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
        for logger in (log, DATA_LOG):  # the data build's progress (validation, reading) too
            logger.addHandler(h)
    for logger in (log, DATA_LOG):
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return handlers


class MetricsWriter:
    """Appends records to metrics.jsonl (and TensorBoard when available)."""

    def __init__(self, run_dir: Path, *, resume_step: int | None, tensorboard: bool):
        self.path = run_dir / "metrics.jsonl"
        try:
            if resume_step is not None and self.path.exists():
                # drop what a killed run wrote after its checkpoint: those steps are run again
                kept = [line for line, record in read_records(self.path, cut_last_line=True)
                        if record["step"] <= resume_step]
                with atomic_write(self.path, "w", encoding="utf-8") as f:
                    f.write("".join(line + "\n" for line in kept))
            elif resume_step is None:
                self.path.unlink(missing_ok=True)
            self.file = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            raise TrainingError(f"{self.path}: cannot write the metrics log ({e.strerror})") from None
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("tensorboard is not installed: metrics go to metrics.jsonl only")
            else:
                self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step)

    def write(self, record: dict[str, Any]) -> None:
        try:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        except OSError as e:
            raise TrainingError(f"{self.path}: cannot write the metrics log ({e.strerror}); the checkpoints "
                                f"written before are intact: free some space and continue with --resume") from None
        if self.tb is not None:
            for key, value in record.items():
                if key not in ("step", "split") and isinstance(value, (int, float)):
                    self.tb.add_scalar(f"{record['split']}/{key}", value, record["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


# --------------------------------------------------------------------------- the loop


def _writing(path: Path, write: Any) -> None:
    """Run a write of the run folder; a failure (a full disk, a read-only folder) is one line."""
    try:
        write()
    except OSError as e:
        raise TrainingError(f"{e.filename or path}: cannot write ({e.strerror or e}); free some space or make the "
                            f"folder writable") from None


def _best_rule(cfg: C.ExperimentConfig, tasks: dict[str, Any]) -> tuple[str, str]:
    metric = cfg.train.best_metric
    if metric is None:
        first = next(iter(tasks))
        metric = f"{first}/{tasks[first].primary_metric}"
    if metric.partition("/")[0] not in tasks:
        raise ConfigError(f"train.best_metric: {metric!r} should be '<task>/<metric>' with a task of "
                          f"the tasks section ({', '.join(tasks)})")
    trains_on = getattr(tasks[metric.partition("/")[0]], "trains_on", None)
    if cfg.train.keep_best and callable(trains_on) and trains_on("val"):
        raise ConfigError(f"train.best_metric: {metric!r} would select the checkpoint on val, which "
                          f"{metric.partition('/')[0]} trains on (data.datasets.vqa.train_splits); set "
                          f"train.keep_best: false to evaluate at the last checkpoint (the paper's test-server "
                          f"setting)")
    mode = cfg.train.best_mode
    if mode is None:
        name, _, key = metric.partition("/")
        if name not in tasks or key != tasks[name].primary_metric:
            raise ConfigError(f"train.best_mode: needed (min or max) for best_metric {metric!r}, "
                              f"which is not a task's primary metric")
        mode = "max" if tasks[name].higher_is_better else "min"
    return metric, mode


def _task_rules(cfg: C.ExperimentConfig, tasks: dict[str, Any], counts: dict[str, int]
                ) -> tuple[dict[str, tuple[str, str]], dict[str, dict[str, str]]]:
    """train.keep_best: per_task: ({task: ("<task>/<primary metric>", "max"|"min")} for every task
    selected on its own val metric, {task: {"judged_at": "last"|"best", "why": ..}} for the others):
    a task that trains on val is judged at the last checkpoint; a task without updates in the run
    (evaluated only, e.g. zero-shot VQA) at `best`, so that its own val split selects nothing.
    `counts`: each task's updates in the run. ({}, {}) for other runs."""
    if cfg.train.keep_best != "per_task":
        return {}, {}
    rules, others = {}, {}
    for name, task in tasks.items():
        trains_on = getattr(task, "trains_on", None)
        if callable(trains_on) and trains_on("val"):
            others[name] = {"judged_at": "last", "why": "it trains on val"}
        elif not counts.get(name):
            others[name] = {"judged_at": "best", "why": "it has no updates of its own"}
        else:
            rules[name] = (f"{name}/{task.primary_metric}", "max" if task.higher_is_better else "min")
    for name, other in others.items():
        log.info("train.keep_best per_task: %s keeps no best of its own (%s): judged at the %s checkpoint",
                 name, other["why"], other["judged_at"])
    return rules, others


def _improves(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value > best if mode == "max" else value < best)


# keys that do not change the trajectory of a run, so a resumed run may set them anew
RESUMABLE_CHANGES = ("train.max_iters", "train.progress", "train.tensorboard", "train.num_workers",
                     "train.log_every", "train.keep_checkpoints", "data.features_on_device")


def train_experiment(config: str | Path, run_dir: str | Path, *, overrides: list[str] | None = None,
                     resume: bool = False, show_plan: bool = False) -> dict[str, Any]:
    """`vlmt train`: train an experiment file (with `key=value` overrides) into `run_dir`. On
    `resume` the run's saved config must equal this one except for RESUMABLE_CHANGES, which are
    saved anew. `show_plan`: print the schedule plan on stderr even when the run is quiet."""
    cfg = load_experiment(config, overrides)
    if resume:
        saved_path = Path(run_dir) / "config.yaml"
        if not saved_path.is_file():
            raise ConfigError(f"{saved_path}: --resume needs the run's saved config; not found")
        changed = C.diff(load_experiment(saved_path), cfg)
        fixed = [k for k in changed if k not in RESUMABLE_CHANGES]
        if fixed:
            raise ConfigError(f"{saved_path}: the run was started with a different config "
                              f"({', '.join(fixed)}); only {', '.join(RESUMABLE_CHANGES)} may change on --resume")
        if changed:
            C.save_config(cfg, saved_path)
    return train(cfg, run_dir, resume=resume, show_plan=show_plan)


def train(cfg: C.ExperimentConfig, run_dir: str | Path, *, resume: bool = False,
          show_plan: bool = False) -> dict[str, Any]:
    """Train `cfg` into `run_dir` (resuming from its last checkpoint when `resume`). The schedule
    plan goes to `train.log` and, with `train.progress` or `show_plan`, to stderr."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrainingError(f"{run_dir}: cannot create the run folder ({e.strerror})") from None
    first = int(os.environ.get("RANK", "0")) == 0  # under torchrun only the first process writes the folder
    with RunLock(run_dir) if first else contextlib.nullcontext():
        ckpt.remove_partial(run_dir)  # what a process killed while writing a checkpoint left
        exists = ckpt.has_checkpoints(run_dir)
        if resume and not exists:
            raise ConfigError(f"{run_dir}: --resume given but the run has no checkpoint yet")
        if not resume and exists:
            raise ConfigError(f"{run_dir}: already holds a run; pass --resume to continue it or choose another --out")
        resume_from = None
        if resume:
            resume_from, skipped = ckpt.resume_checkpoint(run_dir)
            for line in skipped:
                print(f"warning: skipping the damaged checkpoint {line}; resuming from {resume_from.name}",
                      file=sys.stderr)
        rank, world, local_rank = init_distributed(cfg.train.device)
        if world > 1:
            import torch.distributed as dist

            dist.barrier()  # every process has checked the run folder before the first one writes to it
        handlers = _setup_logging(run_dir, quiet=not cfg.train.progress) if rank == 0 else []
        try:
            return _train(cfg, run_dir, resume_from, rank=rank, world=world, local_rank=local_rank,
                          show_plan=show_plan)
        finally:
            for h in handlers:
                log.removeHandler(h)
                DATA_LOG.removeHandler(h)
                h.close()
            if handlers:
                DATA_LOG.propagate = True  # outside a run, data messages go wherever the caller's logging sends them


def schedule_plan(cfg: C.ExperimentConfig, schedule: TaskSchedule, lr_schedule: StepDecay,
                  tasks: dict[str, Any], max_iters: int) -> list[str]:
    """What the run will do, in lines a person reads at its start: each task's updates and the
    epochs of its training set they make, the curriculum's stages, and where the learning-rate
    decay restarts."""
    counts = update_counts(schedule, max_iters)
    lines = []
    for name, task in tasks.items():
        n = counts.get(name, 0)
        batch = cfg.tasks[name].batch_size
        try:
            examples = task.num_examples("train") if hasattr(task, "num_examples") else None
        except NotImplementedError:  # a task that streams its own batches need not count them
            examples = None
        epochs = f" = {n * batch / examples:.1f} epochs of {examples:,} examples" if examples else ""
        lines.append(f"  {name}: {n:,} updates at batch {batch}{epochs}" if n else
                     f"  {name}: no updates in these {max_iters:,} iterations")
    if isinstance(schedule, CurriculumSchedule):
        stages = "; ".join(f"{'+'.join(s.names)} from {start:,}" for s, start in zip(schedule.stages, schedule.starts))
        lines.append(f"  curriculum ({cfg.schedule.budget} budget): {stages}")
    restarts = [start for start, _ in lr_schedule.segments]
    lines.append(f"  learning rate x{cfg.optim.lr_decay} every {', '.join(f'{s:,}' for _, s in lr_schedule.segments)}"
                 f" updates ({lr_schedule.style})"
                 + (f", restarting at {', '.join(f'{r:,}' for r in restarts[1:])}" if len(restarts) > 1 else ""))
    return ["schedule plan:"] + lines


def _train(cfg: C.ExperimentConfig, run_dir: Path, resume_from: Path | None, *,
           rank: int, world: int, local_rank: int, show_plan: bool = False) -> dict[str, Any]:
    tr = cfg.train
    if tr.threads:
        torch.set_num_threads(tr.threads)
    device = resolve_device(tr.device, local_rank, world=world)
    seed_everything(tr.seed)
    parts = build_parts(cfg, device)
    model, tasks, modules = parts.model, parts.tasks, parts.objective
    if tr.init_from and resume_from is None:
        source = Path(tr.init_from)
        if not (source / "config.yaml").is_file():
            raise ConfigError(f"train.init_from: {source}: not a run folder (no config.yaml)")
        loaded = ckpt.load_encoder_weights(ckpt.find_checkpoint(source, "last"), model, source="train.init_from")
        log.info("initialised the model's %d tensors from %s (last checkpoint; task heads as built)", loaded, source)
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
    task_rules, task_others = _task_rules(cfg, tasks, update_counts(schedule, max_iters)
                                          if tr.keep_best == "per_task" else {})
    optimizer = TaskAdam(modules.parameters(), tasks=list(tasks), per_task=cfg.optim.per_task_state,
                         lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps,
                         weight_decay=cfg.optim.weight_decay)
    consumed = {name: 0 for name in tasks}
    step, best_value = 0, None
    task_best_values: dict[str, float] = {}  # train.keep_best: per_task: each task's best so far
    resumed_window: dict[str, list[float]] = {}
    if resume_from is not None:
        state = ckpt.load_state(resume_from)
        ckpt.load_weights(resume_from, modules)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        lr_schedule.load_state_dict(state["lr_schedule"])
        consumed.update(state["consumed"])
        step, best_value = int(state["step"]), state["best_value"]
        task_best_values = dict(state.get("task_best_values", {}))
        if world == 1:
            ckpt.set_rng_state(state["rng"])
        resumed_window = state["log_window"]
        log.info("resumed from %s at step %d", resume_from.name, step)
    elif main:
        _writing(run_dir / "config.yaml", lambda: C.save_config(cfg, run_dir / "config.yaml"))
        log.info("training %s on %s for %d iterations (%s schedule), run folder %s",
                 ", ".join(tasks), device, max_iters, cfg.schedule.kind, run_dir)
        plan = schedule_plan(cfg, schedule, lr_schedule, tasks, max_iters)
        for line in plan:
            log.info("%s", line)
        if show_plan and not tr.progress:  # a quiet run logs to train.log only; `vlmt train` shows it
            print("\n".join(plan), file=sys.stderr)
    if main and not (run_dir / MODEL_FOLDER / "config.json").is_file():
        # what vlmt.load and vlmt export need besides weights
        _writing(run_dir / MODEL_FOLDER, lambda: save_model_folder(run_dir / MODEL_FOLDER, cfg, parts))
    run_record = getattr(parts.data, "run_record", None)
    if main and callable(run_record) and not (run_dir / DATA_RECORD).is_file():
        _writing(run_dir / DATA_RECORD, lambda: write_json(run_dir / DATA_RECORD, run_record()))
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
            "model_args": dataclasses.asdict(model_config(model))}

    def save(at_step: int, *, best: dict | None, task_best: dict[str, dict] | None = None) -> None:
        state = {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                 "lr_schedule": lr_schedule.state_dict(), "consumed": dict(consumed),
                 "best_value": best_value, "rng": ckpt.rng_state(),
                 **({"task_best_values": dict(task_best_values)} if task_rules else {}),
                 "log_window": {k: [float(x) for x in v] for k, v in window.items()}, **meta}
        path = ckpt.save_checkpoint(run_dir, step=at_step, modules=modules, state=state, best=best,
                                    task_best=task_best,
                                    keep_last=None if tr.keep_checkpoints == "all" else tr.keep_checkpoints)
        marks = (["best"] if best else []) + [f"best of {t}" for t, b in (task_best or {}).items()
                                               if "judged_at" not in b]
        log.info("step %d: checkpoint %s%s", at_step, path.name, f" ({', '.join(marks)})" if marks else "")

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
            with autocast(device, tr.precision):
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
            assert metrics is not None  # the first process has one
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
            best, task_best = None, {}
            if step % tr.eval_every == 0 or step == max_iters:
                last_val = evaluate_tasks(model, tasks, "val", device, tr.precision)
                metrics.write({"step": step, "split": "val", **last_val})
                log.info("step %d: val %s", step, " ".join(f"{k}={v:.5g}" for k, v in last_val.items()))
                if tr.keep_best:
                    value = last_val.get(best_metric)
                    if value is None:
                        raise ConfigError(f"train.best_metric: {best_metric!r} is not among the validation "
                                          f"metrics {sorted(last_val)}")
                    if _improves(value, best_value, best_mode):
                        best_value = value
                        best = {"metric": best_metric, "value": value}
                for name, (task_metric, task_mode) in task_rules.items():
                    value = last_val.get(task_metric)
                    if value is None:
                        raise ConfigError(f"train.keep_best: per_task: {task_metric!r} is not among the "
                                          f"validation metrics {sorted(last_val)}")
                    if _improves(value, task_best_values.get(name), task_mode):
                        task_best_values[name] = value
                        task_best[name] = {"metric": task_metric, "value": value}
            if best is not None or task_best or step % tr.checkpoint_every == 0 or step == max_iters:
                save(step, best=best, task_best={**task_others, **task_best} if task_best else None)
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
    if task_rules:
        summary["task_best"] = ckpt.task_best_info(run_dir)
    write_json(run_dir / "summary.json", summary)
    log.info("done: %d iterations in %.1f s; best %s", step, elapsed, summary["best"])
    return summary
