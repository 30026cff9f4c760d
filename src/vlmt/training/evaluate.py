"""Evaluating tasks, and evaluating a run folder's checkpoint (`vlmt evaluate run`).

Evaluation never disturbs training: it runs with forked generator states, so how often a run
validates does not change its trajectory.
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from vlmt.errors import ConfigError
from vlmt.training.build import Parts, rebuild


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
                 rerank: int | tuple[int, int] | None = None, before: Callable[[Parts, torch.device], Any] | None = None
                 ) -> dict[str, dict[str, float]]:
    """{task name: {metric: value}} of a run's checkpoint (best, else last) on `split`. `rerank`
    sets every retrieval task's `rerank_k` (two-stage scoring; a pair: captions per image query,
    images per caption query) for this evaluation; `before` is
    called with the rebuilt parts and their device first (e.g. to write predictions)."""
    cfg, parts = rebuild(run_dir, checkpoint, device=device)
    if rerank is not None:
        k, k_t2i = rerank if isinstance(rerank, tuple) else (rerank, None)
        set_rerank(parts.tasks, k, k_t2i)
    dev = next(parts.objective.parameters()).device
    with autocast(dev, cfg.train.precision):
        if before is not None:
            before(parts, dev)
        return {name: {k: float(v) for k, v in task.evaluate(parts.model, split, device=dev).items()}
                for name, task in parts.tasks.items()}


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
