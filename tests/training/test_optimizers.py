"""TaskAdam: the shared form is torch's Adam; the per-task form is one independent Adam per task."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vlmt.errors import ConfigError, TrainingError
from vlmt.training.optimizers import TaskAdam

SCHEDULE = ["a", "a", "a", "b", "a", "b", "b", "a"]
SCALE = {"a": 30.0, "b": 0.1}  # task a's gradients are 300x larger, as VQA's are on the encoder


def losses(model: nn.Linear, task: str, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(step)
    x = torch.randn(4, 3, generator=g)
    return SCALE[task] * model(x).pow(2).mean()


def fresh() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def run(opt_model: nn.Linear, opt: TaskAdam) -> None:
    for step, task in enumerate(SCHEDULE):
        opt.zero_grad()
        losses(opt_model, task, step).backward()
        opt.step([task])


def test_shared_form_is_torch_adam():
    a, b = fresh(), fresh()
    opt = TaskAdam(a.parameters(), tasks=["a", "b"], per_task=False, lr=1e-2, betas=(0.9, 0.99))
    run(a, opt)
    ref = torch.optim.Adam(b.parameters(), lr=1e-2, betas=(0.9, 0.99))
    for step, task in enumerate(SCHEDULE):
        ref.zero_grad()
        losses(b, task, step).backward()
        ref.step()
    # bit for bit: TaskAdam's shared form is torch's Adam itself (same kernels on the same machine)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_per_task_form_normalises_each_task_by_its_own_moments():
    a, b = fresh(), fresh()
    opt = TaskAdam(a.parameters(), tasks=["a", "b"], per_task=True, lr=1e-2, betas=(0.9, 0.99))
    run(a, opt)
    refs = {t: torch.optim.Adam(b.parameters(), lr=1e-2, betas=(0.9, 0.99)) for t in "ab"}
    for step, task in enumerate(SCHEDULE):
        refs[task].zero_grad()
        losses(b, task, step).backward()
        refs[task].step()
    # bit for bit: TaskAdam's shared form is torch's Adam itself (same kernels on the same machine)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    # task b's first step moves every weight by about lr, although its gradients are tiny
    c = fresh()
    opt = TaskAdam(c.parameters(), tasks=["a", "b"], per_task=True, lr=1e-2, betas=(0.9, 0.99))
    before = c.weight.detach().clone()
    opt.zero_grad()
    losses(c, "b", 0).backward()
    opt.step(["b"])
    assert torch.allclose((c.weight - before).abs(), torch.full_like(before, 1e-2), rtol=1e-3)


def test_state_dict_round_trip_and_mismatches():
    a = fresh()
    opt = TaskAdam(a.parameters(), tasks=["a", "b"], per_task=True, lr=1e-2, betas=(0.9, 0.99))
    run(a, opt)
    state = opt.state_dict()
    assert set(state["per_task"]) == {"a", "b"}
    again = TaskAdam(a.parameters(), tasks=["a", "b"], per_task=True, lr=1e-2, betas=(0.9, 0.99))
    again.load_state_dict(state)
    assert float(again.optimizers["a"].state[a.weight]["step"]) == SCHEDULE.count("a")
    shared = TaskAdam(a.parameters(), tasks=["a", "b"], per_task=False, lr=1e-2, betas=(0.9, 0.99))
    with pytest.raises(ConfigError, match="per_task_state true, the config says false"):
        shared.load_state_dict(state)
    other = TaskAdam(a.parameters(), tasks=["a", "c"], per_task=True, lr=1e-2, betas=(0.9, 0.99))
    with pytest.raises(ConfigError, match="Adam states for"):
        other.load_state_dict(state)
    with pytest.raises(TrainingError, match="one task per update"):
        opt.step(["a", "b"])


def test_per_task_form_with_one_task_trained_is_the_shared_form():
    """A single-task run is the same with either option, so single-task baselines carry over."""
    a, b = fresh(), fresh()
    per_task = TaskAdam(a.parameters(), tasks=["a", "b"], per_task=True, lr=1e-2, betas=(0.9, 0.99))
    shared = TaskAdam(b.parameters(), tasks=["a", "b"], per_task=False, lr=1e-2, betas=(0.9, 0.99))
    for step in range(5):
        for model, opt in ((a, per_task), (b, shared)):
            opt.zero_grad()
            losses(model, "a", step).backward()
            opt.step(["a"])
    # bit for bit: TaskAdam's shared form is torch's Adam itself (same kernels on the same machine)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
