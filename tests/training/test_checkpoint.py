"""Which checkpoint folders `save_checkpoint` keeps (`train.keep_checkpoints`), and resuming from them."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vlmt.training import checkpoint as ckpt


def kept(run: Path) -> list[int]:
    return sorted(int(p.name[5:]) for p in (run / ckpt.CHECKPOINTS).glob("step_*") if p.is_dir())


def save_steps(run: Path, steps: list[int], *, best_at: int | None = None,
               task_best_at: dict[str, int] | None = None, keep_last: int | None = 2) -> nn.Linear:
    """Save a small module at `steps` in order, marking `best` at `best_at` and each task's own
    best at its step of `task_best_at`; returns the module as saved last."""
    torch.manual_seed(0)
    module = nn.Linear(3, 2)
    for step in steps:
        with torch.no_grad():
            module.weight.add_(1.0)  # each checkpoint holds other weights
        best = {"metric": "a/mse", "value": float(step)} if step == best_at else None
        task_best = {task: {"metric": f"{task}/mse", "value": float(step)}
                     for task, at in (task_best_at or {}).items() if at == step}
        ckpt.save_checkpoint(run, step=step, modules=module, state={"note": "t"}, best=best,
                             task_best=task_best or None, keep_last=keep_last)
    return module


STEPS = [10, 20, 30, 40, 50, 60]


def test_default_keeps_the_last_the_one_before_and_the_best(tmp_path):
    save_steps(tmp_path, STEPS, best_at=20)
    assert kept(tmp_path) == [20, 50, 60]
    assert ckpt.find_checkpoint(tmp_path, "best").name == "step_00000020"


def test_none_keeps_every_checkpoint_and_the_pointers_stay_right(tmp_path):
    save_steps(tmp_path, STEPS, best_at=20, keep_last=None)
    assert kept(tmp_path) == STEPS
    for step in STEPS:  # each one is intact and can be named
        assert ckpt.find_checkpoint(tmp_path, str(step)).name == f"step_{step:08d}"
    assert ckpt.find_checkpoint(tmp_path, "last").name == "step_00000060"
    assert ckpt.find_checkpoint(tmp_path, "best").name == "step_00000020"


def test_a_count_keeps_that_many_newest_and_every_best(tmp_path):
    save_steps(tmp_path, STEPS, best_at=10, task_best_at={"a": 20, "b": 30}, keep_last=3)
    assert kept(tmp_path) == [10, 20, 30, 40, 50, 60]  # 40-60 newest, 10 best, 20 and 30 the tasks' own bests
    save_steps(tmp_path / "more", [*STEPS, 70, 80], best_at=10, task_best_at={"a": 20, "b": 30}, keep_last=3)
    assert kept(tmp_path / "more") == [10, 20, 30, 60, 70, 80]
    assert {t: p["step"] for t, p in ckpt.task_best_info(tmp_path / "more").items()} == {"a": 20, "b": 30}


def test_per_task_bests_survive_the_default_too(tmp_path):
    save_steps(tmp_path, STEPS, best_at=30, task_best_at={"a": 10, "b": 30})
    assert kept(tmp_path) == [10, 30, 50, 60]
    assert ckpt.find_checkpoint(tmp_path, "best:a").name == "step_00000010"


def test_a_damaged_folder_after_last_goes_whatever_is_kept(tmp_path):
    save_steps(tmp_path, [10, 20, 30], keep_last=None)
    # a resume that skipped a damaged newest checkpoint (30) starts again from 20 and saves 25
    (tmp_path / ckpt.CHECKPOINTS / "step_00000030" / ckpt.WEIGHTS).write_bytes(b"cut short")
    directory, skipped = ckpt.resume_checkpoint(tmp_path)
    assert directory.name == "step_00000020" and skipped[0].startswith("step_00000030/")
    save_steps(tmp_path, [25], keep_last=None)
    assert kept(tmp_path) == [10, 20, 25]


def test_resume_takes_the_newest_intact_checkpoint_of_a_run_keeping_all(tmp_path):
    module = save_steps(tmp_path, STEPS, keep_last=None)
    directory, skipped = ckpt.resume_checkpoint(tmp_path)
    assert directory.name == "step_00000060" and skipped == []
    assert ckpt.load_state(directory)["step"] == 60
    loaded = nn.Linear(3, 2)
    ckpt.load_weights(directory, loaded)
    assert torch.equal(loaded.weight, module.weight)

