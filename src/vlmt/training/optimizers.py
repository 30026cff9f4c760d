"""Adam for task-switching training: one state shared by every task, or one state per task.

With periodic task switching (Algorithm 1 of the hierarchical paper) each update trains one task,
and every update moves the shared encoder. The paper uses one Adam optimizer; its moment
estimates of a shared parameter then mix the gradients of all tasks, and Adam divides each
task's step by a second moment that the task with the largest gradients sets (on the synthetic
world VQA's gradient on the shared encoder is 12-29x those of grounding and retrieval at
initialisation, and grounding's stays 7-15x below the others' later on;
benchmarks/task_gradients.py). `per_task=True` keeps one Adam state per task over all
parameters instead: an update of task i uses and advances only state i, so every task's step on
the shared layers is normalised by its own gradient history, as when it is trained alone.

    opt = TaskAdam(params, tasks=["retrieval", "vqa"], per_task=True, lr=1e-3, betas=(0.9, 0.99))
    opt.set_lr(lr); opt.zero_grad(); loss.backward(); opt.step(["vqa"])

`state_dict()` of the shared form is a plain `torch.optim.Adam` state dict (checkpoints written
before this option load unchanged); the per-task form is `{"per_task": {task: Adam state dict}}`.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import nn

from vlmt.errors import ConfigError, TrainingError


class TaskAdam:
    """Adam with a shared state (`per_task=False`, the paper's optimizer) or one state per task."""

    def __init__(self, params: Iterable[nn.Parameter], *, tasks: Sequence[str], per_task: bool, lr: float,
                 betas: tuple[float, float], eps: float = 1e-8, weight_decay: float = 0.0):
        params = list(params)
        self.per_task = per_task
        self.tasks = list(tasks)
        make = lambda: torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)  # noqa: E731
        if per_task:
            self.optimizers = {name: make() for name in self.tasks}
        else:
            self.shared = make()

    def _all(self) -> list[torch.optim.Optimizer]:
        return list(self.optimizers.values()) if self.per_task else [self.shared]

    def set_lr(self, lr: float) -> None:
        for opt in self._all():
            for group in opt.param_groups:
                group["lr"] = lr

    def zero_grad(self) -> None:
        self._all()[0].zero_grad(set_to_none=True)  # every state holds the same parameters

    def step(self, tasks: Sequence[str]) -> None:
        """Apply the gradients of this update, which trained `tasks`."""
        if not self.per_task:
            self.shared.step()
            return
        if len(tasks) != 1:
            raise TrainingError(f"optim.per_task_state: an update trained {list(tasks)}; one Adam state per task "
                                f"needs one task per update (schedule.kind periodic or curriculum)")
        self.optimizers[tasks[0]].step()

    def state_dict(self) -> dict[str, Any]:
        if not self.per_task:
            return self.shared.state_dict()
        return {"per_task": {name: opt.state_dict() for name, opt in self.optimizers.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved_per_task = "per_task" in state
        if saved_per_task != self.per_task:
            raise ConfigError(f"optim.per_task_state: the checkpoint was written with per_task_state "
                              f"{str(saved_per_task).lower()}, the config says {str(self.per_task).lower()}")
        if not self.per_task:
            self.shared.load_state_dict(state)
            return
        if set(state["per_task"]) != set(self.optimizers):
            raise ConfigError(f"optim.per_task_state: the checkpoint has Adam states for {sorted(state['per_task'])}, "
                              f"the config trains {sorted(self.optimizers)}")
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["per_task"][name])
