"""DDP (torchrun, 2 CPU processes, gloo) on the hierarchical model's tasks, against one process.

VQA and grounding: 2 processes x half batches train the objective of 1 process with the global
batch (the grounding loss divides by the global number of (phrase, proposal) pairs), so the final
weights and the validation metrics agree. Retrieval draws its negatives inside each process's
half batch, so it trains a different objective; there the DDP run must equal its definition: the
mean over processes of each process's local loss, with each process's random draws seeded from
(seed, rank, iteration) - checked against a reference computed in this process, across a resume.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from vlmt import cli
from vlmt.seeding import seed_everything, step_seed
from vlmt.training import checkpoint as ckpt
from vlmt.training.build import build_parts, load_experiment

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
CPU = torch.device("cpu")


def tiny_config(path: Path, tasks: list[str], *, dropout: float) -> Path:
    """The shipped tiny config (same world, model and per-task batches) with only `tasks`,
    a periodic schedule switching task every 3 iterations, and the given dropout."""
    raw = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    raw["tasks"] = {name: raw["tasks"][name] for name in tasks}
    raw["model"].update(fc_dropout=dropout, lstm_dropout=dropout)
    raw["schedule"] = {"kind": "periodic", "cycle": 3 * len(tasks)}
    # eps 1e-6 instead of 1e-8: some biases have a gradient that is exactly zero in exact arithmetic
    # (a bias before a softmax); Adam with eps 1e-8 turns their float rounding noise, which differs
    # between 1 and 2 processes, into full learning-rate steps and the comparison into noise.
    raw["optim"]["eps"] = 1.0e-6
    # device cpu: gloo on a GPU host too; best_metric null: the first task's primary metric
    raw["train"].update(device="cpu", progress=False, log_every=3, best_metric=None)
    path.write_text(yaml.safe_dump(raw))
    return path


def torchrun(*args: str) -> None:
    """`python -m torch.distributed.run --standalone --nproc_per_node 2 ARGS` on this machine's CPU."""
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        # SIGTERM: the launcher then stops its workers (they run in sessions of their own, so
        # killing the launcher alone, as subprocess.run's timeout does, would leave them running)
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        finally:
            proc.kill()
        raise
    assert proc.returncode == 0, err[-3000:]


def last_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt.checkpoint_dir(run, "last") / "model.safetensors"))


def records(run: Path, split: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def initial_weights(config: Path) -> dict[str, torch.Tensor]:
    modules = build_parts(load_experiment(config), CPU).objective
    return {k: v.detach().clone() for k, v in modules.state_dict().items()}


@pytest.mark.slow
def test_vqa_and_grounding_two_processes_match_one_process(tmp_path):
    """Same final weights and validation metrics; the VQA head and layer 3 sit idle during the
    grounding iterations (decoder at layer 2), which DDP must leave untouched as one process does."""
    config = tiny_config(tmp_path / "vg.yaml", ["vqa", "grounding"], dropout=0.0)
    common = ["--set", "train.max_iters=12", "--set", "train.eval_every=6", "--set", "train.checkpoint_every=12"]
    two = tmp_path / "two"
    # on a fresh cache the first process generates the world while the second waits for it
    torchrun("-m", "vlmt", "train", str(config), "--out", str(two), *common)
    one = tmp_path / "one"
    assert cli.main(["train", str(config), "--out", str(one), *common]) == 0
    a, b = last_weights(one), last_weights(two)
    assert a.keys() == b.keys()
    for key in a:
        # measured: at most 1e-5 apart; a per-process mean for grounding puts them 4e-3 apart
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=5e-5, msg=key)
    start = initial_weights(config)
    for key in ("tasks.vqa.head.classifier.3.weight", "tasks.grounding.head.bilinear.weight",
                "model.layers.2.word_in.weight"):
        assert not torch.allclose(a[key], start[key], atol=1e-4), f"{key} did not train"
    # validation runs once per validation step, in the first process only, on the whole split
    assert records(two, "val") == records(one, "val")
    assert [r["step"] for r in records(two, "val")] == [6, 12]
    assert (json.loads((two / "summary.json").read_text())["val"]
            == json.loads((one / "summary.json").read_text())["val"])


def reference_ddp_retrieval(config: Path, steps: int) -> dict[str, torch.Tensor]:
    """What 2 DDP processes compute, in one process: per iteration, each rank seeds its
    generators from (seed, rank, iteration), takes its half of the global batch, draws its
    negatives and dropout masks and back-propagates its local loss; Adam steps on the mean of the
    two gradients."""
    cfg = load_experiment(config)
    parts = build_parts(cfg, CPU)
    model, modules = parts.model, parts.objective
    task = parts.tasks["retrieval"]
    streams = [iter(task.batches("train", rank=r, world_size=2)) for r in range(2)]
    optimizer = torch.optim.Adam(modules.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps)
    params = dict(modules.named_parameters())
    for step in range(steps):  # the learning rate stays at optim.lr (first halving at 150)
        grads = []
        for rank in range(2):
            optimizer.zero_grad(set_to_none=True)
            seed_everything(step_seed(cfg.train.seed, rank, step))
            task(model, next(streams[rank]))["loss"].backward()
            grads.append({n: p.grad.clone() for n, p in params.items() if p.grad is not None})
        for name, p in params.items():
            p.grad = (grads[0][name] + grads[1][name]) / 2 if name in grads[0] else None
        optimizer.step()
    return {k: v.detach().clone() for k, v in modules.state_dict().items()}


@pytest.mark.slow
def test_retrieval_under_ddp_trains_the_mean_of_local_objectives_and_resumes(tmp_path):
    """Retrieval cannot match one process (its negatives come from the local half batch), so it
    is checked against its definition, with dropout on (per-process masks), across a resume."""
    config = tiny_config(tmp_path / "r.yaml", ["retrieval"], dropout=0.1)
    common = ["--set", "train.eval_every=100", "--set", "train.checkpoint_every=3"]
    run = tmp_path / "two"
    # two legs in the same 2 processes (tests/training/torchrun_legs.py): 3 updates, then resume to 6
    torchrun(str(Path(__file__).with_name("torchrun_legs.py")),
             "train", str(config), "--out", str(run), *common, "--set", "train.max_iters=3", "--then",
             "train", str(config), "--out", str(run), *common, "--set", "train.max_iters=6", "--resume")
    got, want = last_weights(run), reference_ddp_retrieval(config, steps=6)
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=5e-5, msg=key)
    assert [r["step"] for r in records(run, "train")] == [3, 6]
