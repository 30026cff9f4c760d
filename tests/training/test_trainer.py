"""The trainer end to end on the trainer-check task: run folder, metrics, checkpoints, resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vlmt import cli
from vlmt.errors import ConfigError, TrainingError
from vlmt.training import checkpoint as ckpt
from vlmt.training import trainer
from vlmt.training.build import build_parts, build_schedule, load_experiment, rebuild

SRC = Path(__file__).resolve().parents[2] / "src"

TINY = """\
model: {type: sanity_mlp, in_dim: 8, hidden: 16, dropout: 0.1}
tasks:
  a: {type: sanity_linear, batch_size: 8, iterations: 60, step: 40, out_dim: 3, train_size: 64, val_size: 32,
      map_seed: 1}
  b: {type: sanity_linear, batch_size: 4, iterations: 40, step: 20, out_dim: 2, train_size: 48, val_size: 32,
      map_seed: 2}
schedule: {kind: periodic, cycle: 10}
optim: {lr: 1.0e-2}
train: {seed: 3, eval_every: 20, checkpoint_every: 20, log_every: 1, threads: 1, tensorboard: false, progress: false}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt.checkpoint_dir(run, "last") / "model.safetensors"))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        # bit for bit: seeded runs and resumed runs against themselves on one machine (a promise)
        assert torch.equal(a[key], b[key]), key


def test_train_writes_a_complete_run_folder(config_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", str(config_file), "--out", str(run), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 100  # schedule length: floor(100 / 10) cycles x 10
    assert load_experiment(run / "config.yaml") == load_experiment(config_file)
    assert "training a, b" in (run / "train.log").read_text()
    recs = records(run)
    train = [r for r in recs if r["split"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 101))
    # Algorithm 1 with alpha = (0.6, 0.4), C = 10: steps 1-6 train a, 7-10 train b, ...
    assert [("a/loss" in r, "b/loss" in r) for r in train[:10]] == [(True, False)] * 6 + [(False, True)] * 4
    # lr halves every step_a + step_b = 60 iterations
    assert {r["lr"] for r in train[:60]} == {1e-2} and {r["lr"] for r in train[60:]} == {5e-3}
    val = [r for r in recs if r["split"] == "val"]
    assert [r["step"] for r in val] == [20, 40, 60, 80, 100]
    assert val[-1]["a/mse"] < 0.5 * val[0]["a/mse"]  # the tasks actually learn
    assert summary["val"] == {k: v for k, v in val[-1].items() if k not in ("step", "split")}
    best = ckpt.best_info(run)
    assert best["metric"] == "a/mse" and best["value"] == min(r["a/mse"] for r in val)
    # the last and best checkpoints and the one before the last are kept, each with its checksums;
    # state loads without unpickling objects
    kept = sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir())
    assert kept == sorted({f"step_{best['step']:08d}", "step_00000080", "step_00000100"})
    assert all((run / "checkpoints" / k / "checksums.json").is_file() for k in kept)
    state = ckpt.load_state(ckpt.checkpoint_dir(run, "last"))
    assert state["step"] == 100 and state["model_type"] == "sanity_mlp"
    assert state["model_args"]["hidden"] == 16 and state["consumed"] == {"a": 60, "b": 40}
    # the checkpoint alone rebuilds the model with its weights
    cfg, parts = rebuild(run, "last")
    model, tasks = parts.model, parts.tasks
    x = torch.randn(5, 8)
    direct = load_file(str(ckpt.checkpoint_dir(run, "last") / "model.safetensors"))
    assert torch.equal(model.net[0].weight, direct["model.net.0.weight"])
    assert tasks["a"](model, {"x": x, "y": torch.zeros(5, 3)})["loss"].isfinite()


def test_resume_in_process_matches_uninterrupted(config_file, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert cli.main(["train", str(config_file), "--out", str(full), "--set", "train.max_iters=50"]) == 0
    assert cli.main(["train", str(config_file), "--out", str(part), "--set", "train.max_iters=30"]) == 0
    assert cli.main(["train", str(config_file), "--out", str(part), "--set", "train.max_iters=50", "--resume"]) == 0
    assert_same_weights(weights(full), weights(part))
    train = [[r for r in records(run) if r["split"] == "train"] for run in (full, part)]
    assert train[0] == train[1]  # the same losses at every step
    assert "resumed from step_00000030 at step 30" in (part / "train.log").read_text()


def test_run_folder_is_protected_and_resume_checks_the_config(config_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", str(config_file), "--out", str(run), "--set", "train.max_iters=5"]) == 0
    assert cli.main(["train", str(config_file), "--out", str(run)]) == 1
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert cli.main(["train", str(config_file), "--out", str(run), "--resume", "--set", "optim.lr=0.5"]) == 1
    assert "different config (optim.lr)" in capsys.readouterr().err
    assert cli.main(["train", str(config_file), "--out", str(tmp_path / "new"), "--resume"]) == 1
    assert "config.yaml: --resume needs the run's saved config" in capsys.readouterr().err


def test_per_task_adam_state_resumes_bit_identically_and_counts_each_task(config_file, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    per_task = ["--set", "optim.per_task_state=true"]
    assert cli.main(["train", str(config_file), "--out", str(full), *per_task, "--set", "train.max_iters=47"]) == 0
    assert cli.main(["train", str(config_file), "--out", str(part), *per_task, "--set", "train.max_iters=23"]) == 0
    # cycle of 10: 6 updates of a, then 4 of b; 23 iterations = a 6+6+3, b 4+4
    states = ckpt.load_state(ckpt.checkpoint_dir(part, "last"))["optimizer"]["per_task"]
    shared_weight = 0  # model.net.0.weight, the first parameter: moved by both tasks
    assert float(states["a"]["state"][shared_weight]["step"]) == 15
    assert float(states["b"]["state"][shared_weight]["step"]) == 8
    assert cli.main(["train", str(config_file), "--out", str(part), *per_task, "--set", "train.max_iters=47",
                     "--resume"]) == 0
    assert_same_weights(weights(full), weights(part))
    train = [[r for r in records(run) if r["split"] == "train"] for run in (full, part)]
    assert train[0] == train[1]
    shared = tmp_path / "shared"
    assert cli.main(["train", str(config_file), "--out", str(shared), "--set", "train.max_iters=47"]) == 0
    assert not torch.equal(weights(shared)["model.net.0.weight"], weights(full)["model.net.0.weight"])


def test_per_task_state_with_the_joint_schedule_is_a_config_error(config_file, tmp_path, capsys):
    assert cli.main(["train", str(config_file), "--out", str(tmp_path / "r"), "--set", "schedule.kind=joint",
                     "--set", "train.max_iters=5", "--set", "optim.per_task_state=true"]) == 1
    err = capsys.readouterr().err
    assert "optim.per_task_state" in err and "one task per update" in err and "Traceback" not in err


def test_periodic_schedule_of_a_config_carries_the_loss_weights(config_file):
    schedule = build_schedule(load_experiment(config_file, ["tasks.b.loss_weight=3.0"]))
    assert [schedule.next()[0] for _ in range(7)] == [("a", 1.0)] * 6 + [("b", 3.0)]


def test_curriculum_and_joint_schedules_drive_the_loop(config_file, tmp_path):
    run = tmp_path / "cur"
    assert cli.main(["train", str(config_file), "--out", str(run), "--set", "schedule.kind=curriculum",
                     "--set", "schedule.curriculum=growing", "--set", "schedule.budget=full"]) == 0
    train = [r for r in records(run) if r["split"] == "train"]
    # stage [a]: 60 iterations (6 cycles of 10); then [a, b]: 100 iterations
    assert len(train) == 160 and all("b/loss" not in r for r in train[:60]) and "b/loss" in train[66]
    # lr restarts at the stage boundary: [a] halves every 40, [a, b] every 60
    assert train[39]["lr"] == 1e-2 and train[40]["lr"] == 5e-3 and train[60]["lr"] == 1e-2
    run = tmp_path / "joint"
    assert cli.main(["train", str(config_file), "--out", str(run), "--set", "schedule.kind=joint",
                     "--set", "train.max_iters=10", "--set", "optim.lr_step=4"]) == 0
    train = [r for r in records(run) if r["split"] == "train"]
    assert all("a/loss" in r and "b/loss" in r for r in train)
    assert [r["lr"] for r in train[:9]] == [1e-2] * 4 + [5e-3] * 4 + [2.5e-3]


def test_paper_curriculum_trains_each_task_alone_then_together_and_says_so(config_file, tmp_path, capsys):
    run = tmp_path / "cur"
    assert cli.main(["train", str(config_file), "--out", str(run), "--set", "schedule.kind=curriculum"]) == 0
    train = [r for r in records(run) if r["split"] == "train"]
    # subsets, shared budget: [a] 30, [b] 20, then [a, b] 50 (6 a + 4 b per cycle): a 60 and b 40 in all
    assert len(train) == 100
    assert all("b/loss" not in r for r in train[:30]) and all("a/loss" not in r for r in train[30:50])
    assert sum("a/loss" in r for r in train) == 60 and sum("b/loss" in r for r in train) == 40
    # the decay restarts per stage with the stage's share of #step: [a] 20, [b] 10, [a, b] 30
    assert train[19]["lr"] == 1e-2 and train[20]["lr"] == 5e-3 and train[30]["lr"] == 1e-2
    assert train[40]["lr"] == 5e-3 and train[50]["lr"] == 1e-2 and train[80]["lr"] == 5e-3
    logged = (run / "train.log").read_text(encoding="utf-8")
    assert "a: 60 updates at batch 8 = 7.5 epochs of 64 examples" in logged
    assert "b: 40 updates at batch 4 = 3.3 epochs of 48 examples" in logged
    assert "curriculum (shared budget): a from 0; b from 30; a+b from 50" in logged
    # shown on the terminal too, even for a quiet run (train.progress false)
    err = capsys.readouterr().err
    assert "schedule plan:" in err and "a: 60 updates at batch 8" in err


def test_continuous_lr_decay_drives_the_loop_and_resumes_bit_identically(config_file, tmp_path, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    common = ["--set", "schedule.kind=joint", "--set", "optim.lr_step=4", "--set", "optim.lr_decay_style=continuous"]
    assert cli.main(["train", str(config_file), "--out", str(full), *common, "--set", "train.max_iters=14"]) == 0
    assert cli.main(["train", str(config_file), "--out", str(part), *common, "--set", "train.max_iters=7"]) == 0
    assert cli.main(["train", str(config_file), "--out", str(part), *common, "--set", "train.max_iters=14",
                     "--resume"]) == 0
    assert_same_weights(weights(full), weights(part))
    train = [[r for r in records(run) if r["split"] == "train"] for run in (full, part)]
    assert train[0] == train[1]
    assert [r["lr"] for r in train[0]] == pytest.approx([1e-2 * 0.5 ** (t / 4) for t in range(14)], rel=1e-12)
    assert cli.main(["train", str(config_file), "--out", str(tmp_path / "bad"), "--set", "train.max_iters=2",
                     "--set", "optim.lr_decay_style=linear"]) == 1
    err = capsys.readouterr().err
    assert "optim.lr_decay_style" in err and "Traceback" not in err


def test_joint_without_max_iters_is_a_config_error(config_file, tmp_path, capsys):
    assert cli.main(["train", str(config_file), "--out", str(tmp_path / "r"), "--set", "schedule.kind=joint"]) == 1
    assert "train.max_iters: required" in capsys.readouterr().err


def test_bf16_autocast_trains_on_cpu(config_file, tmp_path):
    run = tmp_path / "bf16"
    assert cli.main(["train", str(config_file), "--out", str(run), "--set", "train.precision=bf16",
                     "--set", "train.max_iters=20"]) == 0
    val = [r for r in records(run) if r["split"] == "val"]
    assert torch.isfinite(torch.tensor(val[-1]["a/mse"]))
    assert weights(run)["model.net.0.weight"].dtype == torch.float32  # master weights stay fp32


def test_sigkill_mid_run_then_resume_ends_with_identical_weights(config_file, tmp_path):
    """A run killed with SIGKILL and resumed ends bit-identical to an uninterrupted run (CPU)."""
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "vlmt", "train", str(config_file), "--out", str(killed),
           "--set", "train.max_iters=100000", "--set", "train.checkpoint_every=7",
           "--set", "train.eval_every=1000", "--set", "train.log_every=5"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pointer = killed / "checkpoints" / "last.json"
            if pointer.exists() and json.loads(pointer.read_text())["step"] >= 14:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stopped = ckpt.load_state(ckpt.checkpoint_dir(killed, "last"))["step"]
    assert 14 <= stopped < 100000
    target = stopped + 23  # ends mid-cycle, between checkpoints
    common = ["--set", "train.checkpoint_every=7", "--set", "train.eval_every=1000", "--set", "train.log_every=5",
              "--set", f"train.max_iters={target}"]
    assert cli.main(["train", str(config_file), "--out", str(killed), "--resume", *common]) == 0
    full = tmp_path / "full"
    assert cli.main(["train", str(config_file), "--out", str(full), *common]) == 0
    assert_same_weights(weights(full), weights(killed))
    assert records(full) == records(killed)  # metrics written after the checkpoint were rolled back


@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_one_process(config_file, tmp_path):
    """DDP with gloo: 2 processes x half batches == 1 process with the same global batch."""
    common = ["--set", "model.dropout=0.0", "--set", "train.max_iters=30", "--set", "train.eval_every=30",
              "--set", "train.checkpoint_every=30", "--set", "train.device=cpu"]  # gloo on a GPU host too
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    two = tmp_path / "two"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "vlmt", "train", str(config_file), "--out", str(two), *common],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    one = tmp_path / "one"
    assert cli.main(["train", str(config_file), "--out", str(one), *common]) == 0
    a, b = weights(one), weights(two)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    # not trivially equal to the initial weights: both runs trained
    assert not torch.equal(a["model.net.0.weight"], ckpt_initial_weight(config_file))


def ckpt_initial_weight(config_file: Path) -> torch.Tensor:
    return build_parts(load_experiment(config_file), torch.device("cpu")).model.net[0].weight.detach()


def test_shipped_sanity_config_trains_from_the_cli_with_tensorboard(tmp_path):
    run = tmp_path / "sanity"
    config = SRC.parent / "configs" / "sanity.yaml"
    assert cli.main(["train", str(config), "--out", str(run), "--set", "train.max_iters=20",
                     "--set", "train.threads=1", "--set", "train.progress=false"]) == 0
    try:
        import tensorboard  # noqa: F401
    except ImportError:  # without the extra: metrics.jsonl only, and the log says why
        assert "tensorboard is not installed" in (run / "train.log").read_text()
    else:
        assert any((run / "tensorboard").glob("events.out.tfevents.*"))
    assert [r["step"] for r in records(run) if r["split"] == "val"] == [20]


def test_diverging_run_stops_with_a_named_task(config_file, tmp_path, capsys):
    run = tmp_path / "nan"
    with pytest.raises(TrainingError, match=r"non-finite training scalars \['a/loss'\]"):
        trainer.train(load_experiment(config_file, ["optim.lr=1e30", "train.max_iters=20"]), run)
    # on the command line: one line naming the metrics file and the step, exit status 1
    code = cli.main(["train", str(config_file), "--out", str(tmp_path / "nan2"), "--set", "optim.lr=1e30",
                     "--set", "train.max_iters=20"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err and "metrics.jsonl: step" in err and "['a/loss']" in err


def test_init_from_loads_another_runs_model_weights_and_not_its_heads(config_file, tmp_path):
    source = tmp_path / "source"
    trainer.train_experiment(config_file, source, overrides=["train.max_iters=20"])
    run = tmp_path / "run"  # lr 0: the first update changes nothing, so the weights are the initial ones
    trainer.train_experiment(config_file, run, overrides=["train.max_iters=1", "optim.lr=0", "train.seed=4",
                                                         f"train.init_from={source}"])
    trained, started = weights(source), weights(run)
    model_keys = [k for k in trained if k.startswith("model.")]
    head_keys = [k for k in trained if k.startswith("tasks.")]
    assert model_keys and head_keys
    assert_same_weights({k: trained[k] for k in model_keys}, {k: started[k] for k in model_keys})
    assert not any(torch.equal(trained[k], started[k]) for k in head_keys if k.endswith("weight"))
    assert "initialised the model's" in (run / "train.log").read_text()


def test_init_from_another_architecture_or_no_run_is_a_config_error(config_file, tmp_path, capsys):
    source = tmp_path / "source"
    trainer.train_experiment(config_file, source, overrides=["train.max_iters=2", "model.hidden=12"])
    for target, message in ((source, "train.init_from: .*weights do not fit"),
                            (tmp_path / "nothing", "train.init_from: .*not a run folder")):
        code = cli.main(["train", str(config_file), "--out", str(tmp_path / f"run_{target.name}"),
                         "--set", f"train.init_from={target}"])
        err = capsys.readouterr().err
        assert code != 0 and re.search(message, err), err
        assert "Traceback" not in err


def test_keep_best_false_keeps_no_best_checkpoint_and_evaluates_the_last(config_file, tmp_path, capsys):
    run = tmp_path / "last"
    assert cli.main(["train", str(config_file), "--out", str(run), "--set", "train.keep_best=false"]) == 0
    assert ckpt.best_info(run) is None and not (run / "checkpoints" / "best.json").exists()
    assert any(r["split"] == "val" for r in records(run))  # validation still runs and is logged
    assert ckpt.find_checkpoint(run, "best") == ckpt.find_checkpoint(run, "last")


def test_keep_best_per_task_keeps_each_tasks_best_resumes_and_evaluates_each_there(config_file, tmp_path, capsys):
    per_task = ["--set", "train.keep_best=per_task", "--set", "train.eval_every=10", "--set", "optim.lr=0.05"]
    run = tmp_path / "per_task"
    assert cli.main(["train", str(config_file), "--out", str(run), *per_task]) == 0
    val = [r for r in records(run) if r["split"] == "val"]
    bests = ckpt.task_best_info(run)
    assert set(bests) == {"a", "b"}
    for task in ("a", "b"):  # each task's own best on its own val metric (lower mse is better)
        chosen = min(val, key=lambda r: r[f"{task}/mse"])
        assert bests[task]["step"] == chosen["step"] and bests[task]["value"] == chosen[f"{task}/mse"]
        assert bests[task]["metric"] == f"{task}/mse"
        assert ckpt.damage(ckpt.find_checkpoint(run, f"best:{task}")) is None  # kept, checksummed
    assert bests["a"]["step"] != bests["b"]["step"]  # the run this test needs: the two tasks peak apart
    assert ckpt.best_info(run)["step"] == bests["a"]["step"]  # `best` still follows train.best_metric (a/mse)
    # resumed halfway: the same pointers, the same states
    part = tmp_path / "part"
    assert cli.main(["train", str(config_file), "--out", str(part), *per_task, "--set", "train.max_iters=50"]) == 0
    assert cli.main(["train", str(config_file), "--out", str(part), *per_task, "--set", "train.max_iters=100",
                     "--resume"]) == 0
    strip = {t: {k: v for k, v in p.items()} for t, p in ckpt.task_best_info(part).items()}
    assert strip == bests
    assert_same_weights(weights(run), weights(part))
    # evaluate run judges each task at its own best and says which checkpoint judged which task
    capsys.readouterr()
    assert cli.main(["evaluate", "run", str(run), "--split", "val", "--json"]) == 0
    out = capsys.readouterr()
    scores = json.loads(out.out)
    for task in ("a", "b"):
        assert scores[task]["mse"] == pytest.approx(bests[task]["value"], rel=1e-6)
        assert f"{task}: step {bests[task]['step']} (its own best" in out.err
    # at one checkpoint (export's card, --checkpoint best:b) every task is judged there
    from vlmt.training.evaluate import evaluate_run

    at_b = evaluate_run(run, split="val", checkpoint="best:b")
    assert at_b["b"]["mse"] == pytest.approx(bests["b"]["value"], rel=1e-6)
    at_b_step = next(r for r in val if r["step"] == bests["b"]["step"])
    assert at_b["a"]["mse"] == pytest.approx(at_b_step["a/mse"], rel=1e-6)
    assert evaluate_run(run, split="val", own_best=False)["b"]["mse"] == pytest.approx(
        next(r for r in val if r["step"] == bests["a"]["step"])["b/mse"], rel=1e-6)
    with pytest.raises(ConfigError, match="no task that ranks two-stage"):  # at no checkpoint a retrieval task
        evaluate_run(run, split="val", rerank=5)
    assert cli.main(["export", str(run), "--out", str(tmp_path / "model"), "--checkpoint", "best:c",
                     "--metrics", "none"]) == 1
    assert "no best checkpoint of task 'c'; per-task bests: best:a, best:b" in capsys.readouterr().err


def test_keep_best_per_task_judges_a_task_without_updates_at_best(config_file, tmp_path, capsys):
    run = tmp_path / "only_a"
    assert cli.main(["train", str(config_file), "--out", str(run), "--set", "train.keep_best=per_task",
                     "--set", "schedule.order=[a]", "--set", "train.max_iters=60"]) == 0
    bests = ckpt.task_best_info(run)
    assert "dir" in bests["a"]  # a trains: its own best
    assert bests["b"] == {"judged_at": "best", "why": "it has no updates of its own"}  # b's val selects nothing
    assert ckpt.find_checkpoint(run, "best:b") == ckpt.find_checkpoint(run, "best")
    capsys.readouterr()
    assert cli.main(["evaluate", "run", str(run), "--split", "val"]) == 0
    assert f"b: step {ckpt.best_info(run)['step']} (the best checkpoint, selected on a/mse" in capsys.readouterr().err


def test_keep_checkpoints_all_keeps_every_checkpoint_and_may_change_on_resume(config_file, tmp_path):
    def steps(run: Path) -> list[int]:
        return sorted(int(p.name[5:]) for p in (run / "checkpoints").glob("step_*"))

    every, pruned = tmp_path / "every", tmp_path / "pruned"
    assert cli.main(["train", str(config_file), "--out", str(every), "--set", "train.keep_checkpoints=all"]) == 0
    assert steps(every) == [20, 40, 60, 80, 100]  # every checkpoint_every step
    assert cli.main(["train", str(config_file), "--out", str(pruned)]) == 0
    assert steps(pruned) == sorted({ckpt.best_info(pruned)["step"], 80, 100})  # the default prunes as before
    assert ckpt.best_info(every) == ckpt.best_info(pruned)
    assert_same_weights(weights(every), weights(pruned))  # what is kept does not change the run
    # a run started with the default and resumed keeping all: the same run, every later checkpoint kept
    part = tmp_path / "part"
    assert cli.main(["train", str(config_file), "--out", str(part), "--set", "train.max_iters=50"]) == 0
    assert cli.main(["train", str(config_file), "--out", str(part), "--set", "train.max_iters=100",
                     "--set", "train.keep_checkpoints=all", "--resume"]) == 0
    assert set(steps(part)) >= {40, 50, 60, 80, 100}
    assert_same_weights(weights(every), weights(part))
    assert load_experiment(part / "config.yaml").train.keep_checkpoints == "all"


@pytest.mark.parametrize(("value", "message"), [
    ("1", "key 'train.keep_checkpoints': must be >= 2 or 'all', got 1"),
    ("0", "key 'train.keep_checkpoints': must be >= 2 or 'all', got 0"),
    ("pruned", "key 'train.keep_checkpoints': expected int | 'all', got 'pruned'"),
    ("true", "key 'train.keep_checkpoints': expected int | 'all', got True"),
])
def test_a_bad_keep_checkpoints_is_a_config_error_naming_the_key(config_file, tmp_path, capsys, value, message):
    run = tmp_path / "run"
    assert cli.main(["train", str(config_file), "--out", str(run), "--set", f"train.keep_checkpoints={value}"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not (run / "checkpoints").exists()
