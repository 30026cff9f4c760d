"""Evaluating tasks, and evaluating a run folder's checkpoint (`vlmt evaluate run`).

Evaluation never disturbs training: it runs with forked generator states, so how often a run
validates does not change its trajectory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from vlmt.errors import ConfigError
from vlmt.training import checkpoint as ckpt
from vlmt.training.build import Parts, rebuild, run_config


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
    with _forked_rng(device), autocast(device, precision):
        for name, task in tasks.items():
            for key, value in task.evaluate(model, split, device=device).items():
                out[f"{name}/{key}"] = float(value)
    return out


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bf16 autocast when `precision` (train.precision) is bf16, else a no-op context."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def evaluate_run(run_dir: str | Path, *, split: str = "test", checkpoint: str = "best", device: str | None = None,
                 rerank: int | tuple[int, int] | None = None,
                 before: Callable[[Parts, torch.device], Any] | None = None,
                 own_best: bool = True) -> dict[str, dict[str, float]]:
    """{task name: {metric: value}} of a run's checkpoint (best, else last) on `split`. In a run
    trained with train.keep_best: per_task, `best` judges each task at its own best checkpoint
    (`judging_checkpoints`) unless `own_best` is false (export: every task at the one checkpoint
    exported). `rerank` sets every retrieval task's `rerank_k` (two-stage scoring; a pair:
    captions per image query, images per caption query) for this evaluation; `before` is called
    with the rebuilt parts (only the tasks judged at that checkpoint) and their device first (e.g.
    to write predictions)."""
    groups: dict[str, list[str]] = {}
    if checkpoint == "best" and own_best and ckpt.task_best_info(run_dir):
        for task, (step, _) in judging_checkpoints(run_dir).items():
            groups.setdefault(str(step), []).append(task)
    results: dict[str, dict[str, float]] = {}
    reranked = False
    for which, names in (groups or {checkpoint: []}).items():
        cfg, parts = rebuild(run_dir, which, device=device)
        if names:
            parts = dataclasses.replace(parts, tasks={n: t for n, t in parts.tasks.items() if n in names})
        if rerank is not None and (not names or any(hasattr(t, "rerank_k") for t in parts.tasks.values())):
            k, k_t2i = rerank if isinstance(rerank, tuple) else (rerank, None)
            set_rerank(parts.tasks, k, k_t2i)  # per task: only at the checkpoint judging a retrieval task
            reranked = True
        dev = next(parts.objective.parameters()).device
        with autocast(dev, cfg.train.precision):
            if before is not None:
                before(parts, dev)
            results.update({name: {k: float(v) for k, v in task.evaluate(parts.model, split, device=dev).items()}
                            for name, task in parts.tasks.items()})
    if rerank is not None and not reranked:
        raise ConfigError("--rerank: this run has no task that ranks two-stage (a retrieval task)")
    order = list(run_config(run_dir).tasks)
    return {name: results[name] for name in sorted(results, key=order.index)}


def judging_checkpoints(run_dir: str | Path) -> dict[str, tuple[int, str]]:
    """{task: (step, why)} for a run trained with train.keep_best: per_task: the checkpoint that
    judges each task (its own best; `last` for a task that trains on val; `best` for one without
    updates of its own) and a few words saying why. {} for other runs."""
    bests = ckpt.task_best_info(run_dir)
    if not bests:
        return {}
    out: dict[str, tuple[int, str]] = {}
    for task in run_config(run_dir).tasks:
        b = bests.get(task)
        if b is None:  # a task the run did not know when it wrote the file
            b = {"judged_at": "last", "why": "no per-task record"}
        if "judged_at" in b:
            step = int(ckpt.find_checkpoint(run_dir, b["judged_at"]).name.removeprefix("step_"))
            chosen = ckpt.best_info(run_dir) if b["judged_at"] == "best" else None
            on = f", selected on {chosen.get('metric')}" if chosen else ""
            out[task] = (step, f"the {b['judged_at']} checkpoint{on}: {b.get('why')}")
        else:
            out[task] = (int(b["step"]), f"its own best, {b.get('metric')} = {b.get('value'):.5g} on val")
    return out


def set_rerank(tasks: dict[str, Any], k: int, k_t2i: int | None = None) -> None:
    """Evaluate every retrieval task of `tasks` two-stage, re-scoring each query's `k` best pairs."""
    if k < 1 or (k_t2i is not None and k_t2i < 1):
        raise ConfigError(f"--rerank must be >= 1, got {k}" + (f"/{k_t2i}" if k_t2i is not None else ""))
    retrieval = {name: task for name, task in tasks.items() if hasattr(task, "rerank_k")}  # two-stage evaluation
    if not retrieval:
        raise ConfigError("--rerank: this run has no task that ranks two-stage (a retrieval task)")
    for name, task in retrieval.items():
        if task.shortlist is None:
            raise ConfigError(f"--rerank: tasks.{name} has no shortlist head; train with "
                              f"tasks.{name}.shortlist_dim > 0 (e.g. --set tasks.{name}.shortlist_dim=64)")
        task.rerank_k, task.rerank_k_t2i = k, k_t2i
