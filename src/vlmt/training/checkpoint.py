"""Checkpoints in a run folder: weights as safetensors, training state loadable without pickle.

Layout (every checkpoint is a folder that appears whole or not at all):

    RUN/checkpoints/step_00001000/model.safetensors   model + task heads (safetensors)
    RUN/checkpoints/step_00001000/state.pt            optimizer, schedules, RNG, data positions,
                                                       config and model constructor arguments
    RUN/checkpoints/step_00001000/checksums.json      SHA-256 of both files, checked when read
    RUN/checkpoints/last.json                          {"step": .., "dir": "step_00001000"}
    RUN/checkpoints/best.json                          {"step": .., "dir": .., "metric": .., "value": ..}
    RUN/checkpoints/task_best.json                     {task: {"step": .., "dir": .., "metric": .., "value": ..}}
                                                       (train.keep_best: per_task: each task's own best)

A folder is written under a temporary name (every file fsynced) and renamed; the pointer files are
replaced atomically afterwards, so a process killed at any moment leaves the previous pointers
valid. Besides `last`, `best` and each task's own best the checkpoint before `last` is kept, so a damaged newest
checkpoint (a disk that filled up, a copy cut short) leaves an intact one to resume from
(`resume_checkpoint`); `train.keep_checkpoints` keeps more of the newest ones, or every one.
Every file read back is checked: a damaged one is a `DataError` naming it.
`state.pt` holds only tensors, numbers, strings, lists and dicts, and is loaded with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_model
from torch import nn

from vlmt.errors import ConfigError, DataError, TrainingError
from vlmt.io import load_json, write_json

CHECKPOINTS = "checkpoints"
TASK_BEST = "task_best.json"  # train.keep_best: per_task: each task's own best checkpoint


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) generator states, as weights_only-safe data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    assert isinstance(keys, np.ndarray)  # the legacy tuple: (name, key array, position, has_gauss, cached)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


WEIGHTS, STATE, CHECKSUMS = "model.safetensors", "state.pt", "checksums.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(run_dir: str | Path, *, step: int, modules: nn.Module, state: dict[str, Any],
                    last: bool = True, best: dict[str, Any] | None = None,
                    task_best: dict[str, dict[str, Any]] | None = None, keep_last: int | None = 2) -> Path:
    """Write checkpoint `step` and point `last` (and `best`, when given; and each task of
    `task_best`, {task: {"metric", "value"}}, in task_best.json) at it; prune others, keeping the
    `keep_last` newest up to `last` (None: every one) besides the bests (`_prune`). An entry
    {"judged_at": "best"|"last", "why": ..} of `task_best` is written as it is (a task that keeps
    no best of its own). A write that
    fails (a full disk, a read-only folder) is a TrainingError; the checkpoints and pointers
    written before are left as they were."""
    root = Path(run_dir) / CHECKPOINTS
    name = f"step_{step:08d}"
    final = root / name
    tmp: Path | None = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
        save_model(modules, str(tmp / WEIGHTS), metadata={"step": str(step)})
        _fsync(tmp / WEIGHTS)
        with open(tmp / STATE, "wb") as f:
            torch.save({**state, "step": step}, f)
            f.flush()
            os.fsync(f.fileno())
        write_json(tmp / CHECKSUMS, {WEIGHTS: sha256(tmp / WEIGHTS), STATE: sha256(tmp / STATE)})
        if final.exists():  # re-written after a resume: same step, replace it whole
            trash = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=root))
            os.replace(final, trash / name)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        if last:
            write_json(root / "last.json", {"step": step, "dir": name})
        if best is not None:
            write_json(root / "best.json", {"step": step, "dir": name, **best})
        if task_best:
            pointers = _safe_task_pointers(root)
            pointers.update({task: rule if "judged_at" in rule else {"step": step, "dir": name, **rule}
                             for task, rule in task_best.items()})
            write_json(root / TASK_BEST, pointers)
    except OSError as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        before = _safe_pointer(root, "last")
        kept = f"the checkpoint before it ({before['dir']}) is intact" if before else "no checkpoint was written before"
        raise TrainingError(f"{e.filename or root}: cannot write checkpoint {name} ({e.strerror or e}); {kept}; "
                            f"free some space (or make the folder writable) and continue with --resume") from None
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(root, keep_last)
    return final


def _pointer(root: Path, which: str) -> dict | None:
    """The `which` pointer (last.json / best.json), checked; None when there is none."""
    path = root / f"{which}.json"
    if not path.is_file():
        return None
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("dir"), str) or not isinstance(data.get("step"), int):
        raise DataError(path, 'damaged: expected {"step": int, "dir": "step_..."}')
    if not (root / data["dir"]).is_dir():
        raise DataError(path, f"points at {data['dir']}, which is not in {root}", field="dir")
    return data


def _task_pointers(root: Path) -> dict[str, dict]:
    """{task: pointer} of task_best.json (train.keep_best: per_task), checked; {} when there is none."""
    path = root / TASK_BEST
    if not path.is_file():
        return {}
    data = load_json(path)
    if not isinstance(data, dict):
        raise DataError(path, 'damaged: expected {task: {"step": int, "dir": "step_..."}}')
    for task, pointer in data.items():
        if isinstance(pointer, dict) and pointer.get("judged_at") in ("best", "last"):
            continue  # a task that keeps no best of its own
        if not isinstance(pointer, dict) or not isinstance(pointer.get("dir"), str) \
                or not isinstance(pointer.get("step"), int):
            raise DataError(path, 'damaged: expected {"step": int, "dir": "step_..."}', field=str(task))
        if not (root / pointer["dir"]).is_dir():
            raise DataError(path, f"points at {pointer['dir']}, which is not in {root}", field=str(task))
    return data


def _safe_task_pointers(root: Path) -> dict[str, dict]:
    try:
        return _task_pointers(root)
    except DataError:
        return {}


def _safe_pointer(root: Path, which: str) -> dict | None:
    try:
        return _pointer(root, which)
    except DataError:
        return None


def _steps(root: Path) -> list[Path]:
    """The complete checkpoint folders, newest first (temporary `.step_*` folders are not)."""
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step_*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]), reverse=True)


def _prune(root: Path, keep_last: int | None = 2) -> None:
    """Keep the folders of `last`, `best` and each task's best, and the `keep_last` newest
    checkpoints up to `last` (`last` and the one before it by default; None: every one up to
    `last`). A folder after `last` (a damaged one a resume skipped) is removed."""
    keep = {p["dir"] for p in (_safe_pointer(root, "last"), _safe_pointer(root, "best")) if p}
    keep.update(p["dir"] for p in _safe_task_pointers(root).values() if "dir" in p)
    last = _safe_pointer(root, "last")
    if last is not None:
        older = [p.name for p in _steps(root) if int(p.name[5:]) < last["step"]]
        keep.update(older if keep_last is None else older[:max(keep_last - 1, 0)])
    for child in root.iterdir():
        if child.is_dir() and child.name not in keep and not child.name.startswith("."):
            shutil.rmtree(child, ignore_errors=True)


def remove_partial(run_dir: str | Path) -> list[str]:
    """Remove the temporary folders a process killed while writing a checkpoint left behind (call
    with the run folder locked); returns their names."""
    root = Path(run_dir) / CHECKPOINTS
    gone = [p for p in root.glob(".step_*") if p.is_dir()] if root.is_dir() else []
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return [p.name for p in gone]


def has_checkpoints(run_dir: str | Path) -> bool:
    """Whether a run folder holds any checkpoint (intact or not)."""
    root = Path(run_dir) / CHECKPOINTS
    return bool(_steps(root)) or (root / "last.json").is_file()


def checkpoint_dir(run_dir: str | Path, which: str = "last") -> Path | None:
    """Folder of the `last` or `best` checkpoint of a run, or None when there is none."""
    root = Path(run_dir) / CHECKPOINTS
    pointer = _pointer(root, which)
    return None if pointer is None else root / pointer["dir"]


def damage(directory: Path) -> tuple[Path, str] | None:
    """(file, what is wrong with it) for a damaged checkpoint folder, None when it is intact: a
    missing file, a checksum that does not match, weights that do not parse."""
    for name in (WEIGHTS, STATE):
        if not (directory / name).is_file():
            return directory / name, "missing"
    if (directory / CHECKSUMS).is_file():
        try:
            sums = load_json(directory / CHECKSUMS)
        except DataError as e:
            return directory / CHECKSUMS, e.reason
        for name in (WEIGHTS, STATE):
            if not isinstance(sums, dict) or sums.get(name) != sha256(directory / name):
                return directory / name, "does not match its checksum (damaged or cut short)"
    try:
        with safe_open(str(directory / WEIGHTS), "pt") as f:
            f.keys()
    except Exception as e:  # safetensors raises its own error types for a damaged header
        return directory / WEIGHTS, f"does not parse ({e})"
    return None


def resume_checkpoint(run_dir: str | Path) -> tuple[Path, list[str]]:
    """The newest intact checkpoint to resume from, and a line for each newer damaged one skipped.
    TrainingError when there is none."""
    root = Path(run_dir) / CHECKPOINTS
    skipped: list[str] = []
    for directory in _steps(root):
        problem = damage(directory)
        if problem is None:
            try:
                load_state(directory)
            except DataError as e:
                problem = (directory / STATE, e.reason)
            else:
                return directory, skipped
        skipped.append(f"{directory.name}/{problem[0].name} {problem[1]}")
    detail = "; ".join(skipped) if skipped else "none was written"
    raise TrainingError(f"{root}: no intact checkpoint to resume from ({detail}); start the run again "
                        f"in a new folder")


def find_checkpoint(run_dir: str | Path, which: str = "best") -> Path:
    """The checkpoint folder `which` names: `best` (else `last`, for runs without validation),
    `last`, `best:TASK` (TASK's own best in a train.keep_best: per_task run) or a step number
    (only kept checkpoints exist). ConfigError when there is none."""
    root = Path(run_dir) / CHECKPOINTS
    if which.startswith("best:"):
        task = which.partition(":")[2]
        pointers = _task_pointers(root)
        if task not in pointers:
            names = ", ".join(f"best:{t}" for t in pointers) or "none (the run was not trained with " \
                                                                  "train.keep_best: per_task)"
            raise ConfigError(f"{root}: no best checkpoint of task {task!r}; per-task bests: {names}")
        if "judged_at" in pointers[task]:  # no best of its own: the checkpoint that judges it
            return find_checkpoint(run_dir, pointers[task]["judged_at"])
        return checked(root / pointers[task]["dir"])
    if which in ("best", "last"):
        directory = checkpoint_dir(run_dir, which) or (checkpoint_dir(run_dir, "last") if which == "best" else None)
        if directory is None:
            raise ConfigError(f"{root}: no {which} checkpoint yet; train the run first")
        return checked(directory)
    try:
        step = int(which)
    except ValueError:
        raise ConfigError(f"checkpoint: best, last, best:TASK or a step number, got {which!r}") from None
    directory = root / f"step_{step:08d}"
    if not (directory / WEIGHTS).is_file():
        kept = sorted(p.name for p in root.glob("step_*") if p.is_dir()) if root.is_dir() else []
        raise ConfigError(f"{directory}: no checkpoint of step {step} (kept: {', '.join(kept) or 'none'})")
    return checked(directory)


def checked(directory: Path) -> Path:
    """`directory`, after checking that it is an intact checkpoint (DataError naming the file)."""
    problem = damage(directory)
    if problem is not None:
        kept = [p.name for p in _steps(directory.parent) if p != directory and damage(p) is None]
        hint = f"; intact checkpoints: {', '.join(kept)} (--checkpoint STEP)" if kept else ""
        raise DataError(problem[0], f"damaged checkpoint: {problem[1]}{hint}")
    return directory


def best_info(run_dir: str | Path) -> dict | None:
    return _safe_pointer(Path(run_dir) / CHECKPOINTS, "best")


def task_best_info(run_dir: str | Path) -> dict[str, dict]:
    """{task: {"step", "dir", "metric", "value"}}: each task's own best checkpoint in a run trained
    with train.keep_best: per_task, or {"judged_at": "best"|"last", "why"} for a task that keeps
    none; {} for other runs. A damaged task_best.json is a DataError."""
    return _task_pointers(Path(run_dir) / CHECKPOINTS)


def load_state(directory: Path) -> dict[str, Any]:
    """The training state of one checkpoint folder (no unpickling of arbitrary objects); a damaged
    file is a DataError naming it."""
    path = directory / STATE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(path, "missing") from None
    except Exception as e:  # zip, pickle and tensor errors of a damaged file all end here
        raise DataError(path, f"damaged training state ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise DataError(path, "damaged training state (not the dictionary vlmt writes)")
    return state


def load_weights(directory: Path, modules: nn.Module) -> None:
    """Load `directory`'s model.safetensors into `modules`; a damaged or mismatching file is an error
    naming it."""
    path = directory / WEIGHTS
    try:
        missing, unexpected = load_model(modules, str(path), strict=False)
    except FileNotFoundError:
        raise DataError(path, "missing") from None
    except Exception as e:  # safetensors' own errors for a damaged header or data
        raise DataError(path, f"damaged weights ({type(e).__name__}: {str(e)[:200]})") from None
    if missing or unexpected:
        raise ConfigError(f"{path}: weights do not fit the model built from the "
                          f"config (missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")


def load_encoder_weights(directory: Path, model: nn.Module, *, source: str) -> int:
    """Load only the model's ("model.*") weights of `directory`'s model.safetensors into `model`,
    leaving task heads as built (`train.init_from`: initialise from another run). Returns the
    number of tensors loaded. Weights of another architecture are a ConfigError naming `source`."""
    path = checked(directory) / WEIGHTS
    holder = nn.Module()
    holder.model = model  # the checkpoint's keys are "model.*" and "tasks.<name>.*"
    try:
        missing, unexpected = load_model(holder, str(path), strict=False)
    except RuntimeError as e:  # shapes that do not fit
        raise ConfigError(f"{source}: {path}: weights do not fit this model ({str(e)[:300]})") from None
    except Exception as e:  # safetensors' own errors for a damaged header or data
        raise DataError(path, f"damaged weights ({type(e).__name__}: {str(e)[:200]})") from None
    wrong = [k for k in unexpected if k.startswith("model.")]
    if missing or wrong:
        raise ConfigError(f"{source}: {path}: weights do not fit this model (missing {sorted(missing)[:5]}, "
                          f"unexpected {sorted(wrong)[:5]})")
    return len(model.state_dict())
