"""Faults survived: damaged run files are named in one line, `--resume` skips a damaged newest
checkpoint for the newest intact one (and ends bit-identical to an uninterrupted run), a training
killed while writing a checkpoint resumes, a busy run folder is refused, and a write that fails
(a full disk) ends with a clear message and leaves the previous checkpoint and logs intact."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vlmt.cli import main
from vlmt.training import checkpoint as ckpt
from vlmt.training.run_folder import RunLock, read_records

SANITY = Path(__file__).resolve().parents[2] / "configs" / "sanity.yaml"
SET = ["--set", "train.checkpoint_every=20", "--set", "train.eval_every=20", "--set", "train.log_every=10"]


def train(out: Path, iters: int, *extra: str) -> int:
    return main(["train", str(SANITY), "--out", str(out), *SET, "--set", f"train.max_iters={iters}", *extra])


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt.checkpoint_dir(run, "last") / "model.safetensors"))


def records(run: Path) -> list[dict]:
    return [r for _, r in read_records(run / "metrics.jsonl")]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("faults") / "whole"
    assert train(run, 100) == 0
    return run


def same_run(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    # bit for bit: a run resumed after a kill against the uninterrupted run, same machine (a promise)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert records(a) == records(b)


@pytest.mark.parametrize("damage", ["truncated weights", "garbage state", "missing state"])
def test_resume_skips_a_damaged_newest_checkpoint_and_ends_bit_identical(uninterrupted, tmp_path, capsys, damage):
    run = tmp_path / "run"
    assert train(run, 60) == 0
    newest = ckpt.checkpoint_dir(run, "last")
    assert newest.name == "step_00000060"
    if damage == "truncated weights":
        data = (newest / "model.safetensors").read_bytes()
        (newest / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "garbage state":
        (newest / "state.pt").write_bytes(b"\x00not a zip" * 10)
    else:
        (newest / "state.pt").unlink()
    capsys.readouterr()
    assert main(["evaluate", "run", str(run), "--checkpoint", "last"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "damaged checkpoint" in err and "step_00000060" in err
    assert train(run, 100, "--resume") == 0
    err = capsys.readouterr().err
    assert "skipping the damaged checkpoint step_00000060" in err and "resuming from step_00000040" in err
    same_run(run, uninterrupted)


def test_damaged_pointers_and_logs_are_named(uninterrupted, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, 40) == 0
    (run / "checkpoints" / "last.json").write_text('{"step": 40, "di')
    capsys.readouterr()
    assert main(["evaluate", "run", str(run), "--checkpoint", "last"]) == 1
    assert "last.json: not valid JSON" in capsys.readouterr().err
    assert train(run, 100, "--resume") == 0  # resuming does not trust the pointers
    same_run(run, uninterrupted)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[3] = lines[3][:10]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    from vlmt.errors import DataError
    from vlmt.reports.report import read_metrics

    with pytest.raises(DataError, match=r"metrics.jsonl: record line 4: not JSON"):
        read_metrics(run)


def test_no_intact_checkpoint_is_said_and_stops(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, 40) == 0
    for d in (run / "checkpoints").glob("step_*"):
        (d / "model.safetensors").write_bytes(b"")
    capsys.readouterr()
    assert train(run, 100, "--resume") == 1
    err = capsys.readouterr().err
    assert "no intact checkpoint to resume from" in err and "step_00000040/model.safetensors" in err


KILL_DURING_CHECKPOINT = """
import os, signal, sys
import vlmt.training.checkpoint as ck
original, calls = ck.save_model, [0]
def dying(modules, path, metadata=None):
    calls[0] += 1
    original(modules, path, metadata=metadata)
    if calls[0] == 3:  # the third checkpoint (step 60): half its weights written, then killed
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
ck.save_model = dying
from vlmt.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_training_killed_while_writing_a_checkpoint_resumes(uninterrupted, tmp_path):
    run = tmp_path / "run"
    args = ["train", str(SANITY), "--out", str(run), *SET, "--set", "train.max_iters=100"]
    proc = subprocess.run([sys.executable, "-c", KILL_DURING_CHECKPOINT, *args], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert [p.name for p in (run / "checkpoints").glob(".step_00000060.*")]  # the half-written folder
    assert ckpt.checkpoint_dir(run, "last").name == "step_00000040"  # the pointers never saw it
    assert main(["train", str(SANITY), "--out", str(run), *SET, "--set", "train.max_iters=100", "--resume"]) == 0
    assert not list((run / "checkpoints").glob(".step_*"))
    same_run(run, uninterrupted)


def test_a_busy_run_folder_is_refused_and_a_stale_lock_taken_over(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    with RunLock(run):
        capsys.readouterr()
        assert train(run, 20) == 1
        err = capsys.readouterr().err
        assert f"{run}: busy: a training (process {os.getpid()} on" in err
    assert not (run / "checkpoints").exists()
    (run / ".lock").write_text(json.dumps({"pid": 999999, "host": "elsewhere", "since": "yesterday"}))
    assert train(run, 20) == 0  # nobody holds it: a process that died left it
    assert "took over the lock left by process 999999 on elsewhere" in capsys.readouterr().err
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from vlmt.training.run_folder import RunLock\n"
                               f"with RunLock({str(tmp_path / 'other')!r}):\n    print('held', flush=True)\n"
                               "    time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        (tmp_path / "other").mkdir(exist_ok=True)
        assert holder.stdout.readline().strip() == "held"
        assert train(tmp_path / "other", 20) == 1
        assert f"busy: a training (process {holder.pid} on" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert train(tmp_path / "other", 20) == 0  # the kernel released the dead holder's lock


def test_a_full_disk_ends_clearly_and_leaves_the_previous_checkpoint_and_logs(uninterrupted, tmp_path, capsys,
                                                                            monkeypatch):
    run = tmp_path / "run"
    original, calls = torch.save, [0]

    def full_disk(obj, f, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(getattr(f, "name", f)))
        return original(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    capsys.readouterr()
    assert train(run, 100) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "cannot write checkpoint step_00000040 (No space left on device)" in err
    assert "the checkpoint before it (step_00000020) is intact" in err and "--resume" in err
    assert ckpt.checkpoint_dir(run, "last").name == "step_00000020" and ckpt.damage(run / "checkpoints"
                                                                                     / "step_00000020") is None
    assert not list((run / "checkpoints").glob(".step_*")) and records(run)
    monkeypatch.setattr(ckpt.torch, "save", original)
    assert train(run, 100, "--resume") == 0  # space freed: the run goes on to the same end
    same_run(run, uninterrupted)


class ReadOnlyFile:
    """A file object on a folder that became read-only: every write fails as the OS says."""

    def write(self, text: str) -> int:
        raise OSError(errno.EROFS, "Read-only file system")

    def flush(self) -> None: ...

    def close(self) -> None: ...


def test_a_read_only_metrics_log_is_one_clear_line(tmp_path, capsys, monkeypatch):
    from vlmt.training import trainer

    original = trainer.MetricsWriter.__init__

    def opened_read_only(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.file.close()
        self.file = ReadOnlyFile()

    monkeypatch.setattr(trainer.MetricsWriter, "__init__", opened_read_only)
    capsys.readouterr()
    assert train(tmp_path / "run", 40) == 1
    err = capsys.readouterr().err
    assert "metrics.jsonl: cannot write the metrics log (Read-only file system)" in err
    assert "Traceback" not in err


def test_a_metrics_line_cut_short_by_a_kill_is_dropped_on_resume(uninterrupted, tmp_path):
    run = tmp_path / "run"
    assert train(run, 60) == 0
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 61, "split": "tra')  # what a kill in the middle of a write leaves
    assert train(run, 100, "--resume") == 0
    same_run(run, uninterrupted)
