"""Per-task gradient norms on the shared encoder, and what one shared Adam state makes of them.

Tests the explanation of why joint training hurts retrieval and grounding on the synthetic world
(docs/hierarchical_experiments.md): the tasks' losses put gradients of very different sizes on
the parameters they share (language encoder, region encoder, dense co-attention layers), and with
periodic switching one Adam state normalises every task's step by moments that the largest task
sets.

For each task of the config, on the same `--batches` training batches (train mode, dropout on,
a fixed seed per batch so every measurement point sees the same masks), it reports:

- `grad_norm`: the L2 norm of that task's loss gradient over each shared group (`language`,
  `regions`, `layer1`..`layerL`, and `shared` = all of them), mean over batches;
- `ratio_to_largest`: the largest task's norm over this task's, per group;
- with a checkpoint that holds an optimizer state: `adam_step_rms`, the root mean square over the
  shared parameters of `g / (sqrt(v_hat) + eps)` - the size of the step this task's gradient
  would get from the run's second-moment estimate, relative to the 1.0 that Adam gives a task
  whose own gradients set `v` (in a run with `optim.per_task_state` each task is measured against
  its own state).

Measured points: the initial weights of the config (seed `train.seed`), each `--after N`
(a temporary run of the config's schedule trained for N iterations, then measured), and each
`--run RUN` (its `--checkpoint`). `--schedule` adds the iteration-count check: how many updates
each task gets and at which learning-rate factors, in the joint run and in its single-task run.

    PYTHONPATH=src python benchmarks/task_gradients.py src/vlmt/configs/hierarchical_world.yaml \
        [--set key=value ...] [--batches 4] [--after 300 ...] [--run RUN ...] [--schedule] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlmt import config as C
from vlmt.cli import at_least
from vlmt.errors import ConfigError, reports_errors
from vlmt.seeding import seed_everything
from vlmt.tasks.base import move_to
from vlmt.training import checkpoint as ckpt
from vlmt.training.build import build_lr_schedule, build_parts, build_schedule, load_experiment
from vlmt.training.trainer import train


def shared_group(name: str) -> str | None:
    """The shared group of an `Objective` parameter name, or None for a task's own parameters."""
    if name.startswith("model.language."):
        return "language"
    if name.startswith("model.regions."):
        return "regions"
    m = re.match(r"model\.layers\.(\d+)\.", name)
    if m:
        return f"layer{int(m.group(1)) + 1}"
    if name.startswith("model."):
        return "encoder_other"
    return None


def adam_second_moments(state: dict[str, Any], modules: nn.Module, task: str) -> dict[str, tuple[torch.Tensor, int]]:
    """Parameter name -> (exp_avg_sq, step) of the optimizer state that serves `task` in a checkpoint."""
    opt = state["optimizer"]
    if "per_task" in opt:  # optim.per_task_state: one Adam per task
        opt = opt["per_task"].get(task)
        if opt is None:
            return {}
    names = [n for n, _ in modules.named_parameters()]
    ids = [i for group in opt["param_groups"] for i in group["params"]]
    out = {}
    for index, name in zip(ids, names):
        s = opt["state"].get(index)
        if s and "exp_avg_sq" in s:
            out[name] = (s["exp_avg_sq"], int(float(s["step"])))
    return out


def measure(modules: nn.Module, tasks: dict[str, Any], *, batches: int, seed: int, eps: float, beta2: float,
            state: dict[str, Any] | None, device: torch.device) -> dict[str, Any]:
    """Per task and shared group: mean gradient norm over `batches` and (with `state`) Adam step RMS."""
    modules.train()
    named = [(n, p) for n, p in modules.named_parameters() if p.requires_grad]
    groups = sorted({g for n, _ in named if (g := shared_group(n))}, key=lambda g: (g[:5] != "langu", g))
    out: dict[str, Any] = {}
    for name, task in tasks.items():
        v = adam_second_moments(state, modules, name) if state else {}
        stream = task.batches("train", start=0)
        norms = {g: [] for g in [*groups, "shared"]}
        steps = {g: [] for g in [*groups, "shared"]}
        for b in range(batches):
            batch = move_to(next(stream), device)
            torch.manual_seed(seed + b)
            modules.zero_grad(set_to_none=True)
            task(modules.model, batch)["loss"].backward()
            sq = Counter()
            step_sq, count = Counter(), Counter()
            for n, p in named:
                g = shared_group(n)
                if g is None or p.grad is None:
                    continue
                sq[g] += float(p.grad.pow(2).sum())
                if n in v:
                    exp_avg_sq, t = v[n]
                    v_hat = exp_avg_sq / (1 - beta2 ** t)
                    step_sq[g] += float((p.grad / (v_hat.sqrt() + eps)).pow(2).sum())
                    count[g] += p.numel()
            for g in groups:
                norms[g].append(sq[g] ** 0.5)
                if count[g]:
                    steps[g].append((step_sq[g] / count[g]) ** 0.5)
            norms["shared"].append(sum(sq.values()) ** 0.5)
            if sum(count.values()):
                steps["shared"].append((sum(step_sq.values()) / sum(count.values())) ** 0.5)
        out[name] = {"grad_norm": {g: sum(x) / len(x) for g, x in norms.items()}}
        if any(steps.values()):
            out[name]["adam_step_rms"] = {g: sum(x) / len(x) for g, x in steps.items() if x}
    modules.zero_grad(set_to_none=True)
    for g in [*groups, "shared"]:
        top = max(out[t]["grad_norm"][g] for t in out)
        for t in out:
            norm = out[t]["grad_norm"][g]
            out[t].setdefault("ratio_to_largest", {})[g] = top / norm if norm > 0 else None
    return out


def from_config(cfg: C.ExperimentConfig, device: torch.device):
    seed_everything(cfg.train.seed)
    parts = build_parts(cfg, device)
    return parts.objective, parts.tasks, None


def from_run(run: Path, which: str, device: torch.device):
    directory = ckpt.checkpoint_dir(run, which)
    if directory is None:
        raise ConfigError(f"{run}: no {which} checkpoint; is it a run folder written by `vlmt train`?")
    state = ckpt.load_state(directory)
    cfg = C.from_dict(state["config"], source=str(directory / "state.pt"))
    parts = build_parts(cfg, device)
    ckpt.load_weights(directory, parts.objective)
    return parts.objective, parts.tasks, state, int(state["step"])


def schedule_check(cfg: C.ExperimentConfig) -> dict[str, Any]:
    """Updates per task and their mean learning-rate factor, joint run vs the task's single-task run."""
    def profile(c: C.ExperimentConfig) -> dict[str, dict[str, float]]:
        schedule = build_schedule(c)
        lr = build_lr_schedule(c, schedule)
        per: dict[str, list[float]] = {}
        for it in range(c.train.max_iters or schedule.length):
            for name, _ in schedule.next():
                per.setdefault(name, []).append(lr.factor(it))
        return {n: {"updates": len(f), "mean_lr_factor": sum(f) / len(f),
                    "updates_at_full_lr": sum(1 for x in f if x == 1.0)} for n, f in per.items()}

    joint = profile(cfg)
    out = {}
    for name in joint:
        single_cfg = C.from_dict(C.apply_overrides(C.to_dict(cfg), [f"schedule.order=[{name}]"]))
        single = profile(single_cfg)[name]
        out[name] = {"joint": joint[name], "single": single,
                     "total_updates_of_shared_encoder": {"joint": sum(j["updates"] for j in joint.values()),
                                                         "single": single["updates"]}}
    return out


@reports_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--batches", type=at_least(1), default=4, help="training batches per task and point (default 4)")
    p.add_argument("--after", type=at_least(1), action="append", default=[], metavar="N",
                   help="also measure after N iterations of the config's schedule (trained here)")
    p.add_argument("--run", action="append", default=[], help="also measure a trained run folder")
    p.add_argument("--checkpoint", default="last", choices=["last", "best"])
    p.add_argument("--schedule", action="store_true", help="add the per-task update counts, joint vs single")
    p.add_argument("--threads", type=at_least(1), default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    cfg = load_experiment(args.config, [*args.overrides, "train.progress=false", "train.tensorboard=false"])
    eps, beta2 = cfg.optim.eps, cfg.optim.betas[1]
    started = time.perf_counter()
    points: list[dict[str, Any]] = []

    trained = set(cfg.schedule.order or cfg.tasks)  # evaluation-only tasks (zero-shot) have no loss

    def add(label: str, step: int, modules, tasks, state) -> None:
        t0 = time.perf_counter()
        tasks = {name: task for name, task in tasks.items() if name in trained}
        result = measure(modules, tasks, batches=args.batches, seed=cfg.train.seed, eps=eps, beta2=beta2,
                         state=state, device=device)
        points.append({"point": label, "step": step, "tasks": result, "seconds": round(time.perf_counter() - t0, 2)})
        print(f"{label}: " + "; ".join(f"{t} shared {r['grad_norm']['shared']:.3g}" for t, r in result.items()),
              file=sys.stderr)

    for run in args.run:  # refuse a run folder without the checkpoint before minutes of measuring
        if ckpt.checkpoint_dir(Path(run), args.checkpoint) is None:
            raise ConfigError(f"{run}: no {args.checkpoint} checkpoint; is it a run folder written by `vlmt train`?")
    modules, tasks, _ = from_config(cfg, device)
    add("init", 0, modules, tasks, None)
    for n in sorted(args.after):
        with tempfile.TemporaryDirectory() as tmp:
            run_cfg = C.from_dict(C.apply_overrides(C.to_dict(cfg), [f"train.max_iters={n}",
                                                                      f"train.eval_every={10**9}"]))
            train(run_cfg, Path(tmp) / "run")
            modules, tasks, state, step = from_run(Path(tmp) / "run", "last", device)
            add(f"after {n} iterations", step, modules, tasks, state)
    for run in args.run:
        modules, tasks, state, step = from_run(Path(run), args.checkpoint, device)
        add(f"{run} ({args.checkpoint})", step, modules, tasks, state)
    out: dict[str, Any] = {"config": args.config, "overrides": args.overrides, "batches": args.batches,
                           "points": points}
    if args.schedule:
        out["schedule"] = schedule_check(cfg)
    out["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(out))
    else:
        for pt in points:
            print(f"\n## {pt['point']} (step {pt['step']})")
            groups = list(next(iter(pt["tasks"].values()))["grad_norm"])
            print("task        " + " ".join(f"{g:>9}" for g in groups))
            for t, r in pt["tasks"].items():
                print(f"{t:<11} " + " ".join(f"{r['grad_norm'][g]:9.3g}" for g in groups))
                if "adam_step_rms" in r:
                    print(f"{'  adam step':<11} " + " ".join(f"{r['adam_step_rms'].get(g, float('nan')):9.3g}"
                                                        for g in groups))
        if args.schedule:
            print("\n## updates per task (joint vs single)")
            for t, r in out["schedule"].items():
                print(f"{t}: joint {r['joint']}, single {r['single']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
