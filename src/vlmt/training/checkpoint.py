"""Checkpoints in a run folder: weights as safetensors, training state loadable without pickle.

Layout (every checkpoint is a folder that appears whole or not at all):

    RUN/checkpoints/step_00001000/model.safetensors   model + task heads (safetensors)
    RUN/checkpoints/step_00001000/state.pt            optimizer, schedules, RNG, data positions,
                                                       config and model constructor arguments
    RUN/checkpoints/last.json                          {"step": .., "dir": "step_00001000"}
    RUN/checkpoints/best.json                          {"step": .., "dir": .., "metric": .., "value": ..}

A folder is written under a temporary name and renamed; the pointer files are replaced atomically
afterwards, so a process killed at any moment leaves the previous pointers valid. `state.pt` holds
only tensors, numbers, strings, lists and dicts, and is loaded with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from vlmt.errors import ConfigError
from vlmt.io import write_json

CHECKPOINTS = "checkpoints"


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


def save_checkpoint(run_dir: str | Path, *, step: int, modules: nn.Module, state: dict[str, Any],
                    last: bool = True, best: dict[str, Any] | None = None) -> Path:
    """Write checkpoint `step` and point `last` (and `best`, when given) at it; prune others."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    final = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        save_model(modules, str(tmp / "model.safetensors"), metadata={"step": str(step)})
        with open(tmp / "state.pt", "wb") as f:
            torch.save({**state, "step": step}, f)
            f.flush()
            os.fsync(f.fileno())
        if final.exists():  # re-written after a resume: same step, replace it whole
            trash = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=root))
            os.replace(final, trash / name)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if last:
        write_json(root / "last.json", {"step": step, "dir": name})
    if best is not None:
        write_json(root / "best.json", {"step": step, "dir": name, **best})
    _prune(root)
    return final


def _pointer(root: Path, which: str) -> dict | None:
    path = root / f"{which}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _prune(root: Path) -> None:
    keep = {p["dir"] for p in (_pointer(root, "last"), _pointer(root, "best")) if p}
    for child in root.iterdir():
        if child.is_dir() and child.name not in keep:
            shutil.rmtree(child, ignore_errors=True)


def checkpoint_dir(run_dir: str | Path, which: str = "last") -> Path | None:
    """Folder of the `last` or `best` checkpoint of a run, or None when there is none."""
    root = Path(run_dir) / CHECKPOINTS
    pointer = _pointer(root, which)
    return None if pointer is None else root / pointer["dir"]


def find_checkpoint(run_dir: str | Path, which: str = "best") -> Path:
    """The checkpoint folder `which` names: `best` (else `last`, for runs without validation),
    `last`, or a step number (only kept checkpoints exist). ConfigError when there is none."""
    root = Path(run_dir) / CHECKPOINTS
    if which in ("best", "last"):
        directory = checkpoint_dir(run_dir, which) or (checkpoint_dir(run_dir, "last") if which == "best" else None)
        if directory is None:
            raise ConfigError(f"{root}: no {which} checkpoint yet; train the run first")
        return directory
    try:
        step = int(which)
    except ValueError:
        raise ConfigError(f"checkpoint: best, last or a step number, got {which!r}") from None
    directory = root / f"step_{step:08d}"
    if not (directory / "model.safetensors").is_file():
        kept = sorted(p.name for p in root.glob("step_*") if p.is_dir()) if root.is_dir() else []
        raise ConfigError(f"{directory}: no checkpoint of step {step} (kept: {', '.join(kept) or 'none'})")
    return directory


def best_info(run_dir: str | Path) -> dict | None:
    return _pointer(Path(run_dir) / CHECKPOINTS, "best")


def load_state(directory: Path) -> dict[str, Any]:
    """The training state of one checkpoint folder (no unpickling of arbitrary objects)."""
    return torch.load(directory / "state.pt", map_location="cpu", weights_only=True)


def load_weights(directory: Path, modules: nn.Module) -> None:
    missing, unexpected = load_model(modules, str(directory / "model.safetensors"), strict=False)
    if missing or unexpected:
        raise ConfigError(f"{directory / 'model.safetensors'}: weights do not fit the model built from the "
                          f"config (missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
