"""Grids of training runs that survive interruption: derive each run's config from one experiment
file, train it into its own folder, and reuse whatever a previous attempt already finished.

Used by the decoder-layer search (`vlmt search-layers`, hierarchical paper Sec. 4.2) and by the
paper-table reproductions (`vlmt reproduce`). A grid cell is one run folder:

    summary.json present      finished: reused as it is (after checking its config is the same)
    checkpoint, no summary    interrupted: resumed from its last checkpoint (bit-identical on CPU)
    neither                   (re)started from scratch

A folder holding a finished or checkpointed run of a *different* config is never overwritten: that
is a `ConfigError` naming the folder and the differing keys, so an edited grid cannot silently
mix results of two experiments.
"""

from __future__ import annotations

import copy
import difflib
import math
import statistics
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from vlmt import config as C
from vlmt.errors import ConfigError, DataError
from vlmt.io import load_json
from vlmt.training import checkpoint as ckpt
from vlmt.training.build import load_experiment
from vlmt.training.trainer import train

# keys that do not change a run's trajectory or results; they may differ when a run is reused
IGNORED_ON_REUSE = ("train.progress", "train.tensorboard", "train.num_workers", "train.log_every",
                    "train.threads")

Progress = Callable[[str], None]


def subset_tasks(raw: dict, keep: Sequence[str], *, source: str) -> dict:
    """A copy of a parsed experiment file with only the tasks `keep` (in the file's order).

    The schedule follows: `order` and curriculum `stages` lose the dropped tasks (empty stages and
    a stage equal to the one before it disappear), and a `train.best_metric` naming a dropped task
    falls back to the default (the first kept task's primary metric).
    """
    tasks = raw.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise ConfigError(f"{source}: key 'tasks': expected a mapping of tasks")
    for name in keep:
        if name not in tasks:
            close = difflib.get_close_matches(name, list(tasks), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{source}: key 'tasks': no task {name!r}{hint} (has: {', '.join(tasks)})")
    raw = copy.deepcopy(raw)
    raw["tasks"] = {name: spec for name, spec in raw["tasks"].items() if name in keep}
    schedule = raw.get("schedule") or {}
    if schedule.get("order"):
        schedule["order"] = [n for n in schedule["order"] if n in keep] or None
    if schedule.get("stages"):
        stages: list[list[str]] = []
        for stage in schedule["stages"]:
            kept = [n for n in stage if n in keep]
            if kept and (not stages or kept != stages[-1]):
                stages.append(kept)
        schedule["stages"] = stages or None
    if schedule:
        raw["schedule"] = schedule
    train = raw.get("train") or {}
    metric = train.get("best_metric")
    if isinstance(metric, str) and metric.partition("/")[0] not in keep:
        train["best_metric"] = None
        train["best_mode"] = None
    return raw


def config_changes(run_dir: Path, cfg: C.ExperimentConfig) -> list[str] | None:
    """Dotted keys in which the run folder's saved config differs from `cfg` (ignoring keys that do
    not affect results); None when the folder has no saved config."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return None
    saved = load_experiment(saved_path)
    return [k for k in C.diff(saved, cfg) if k not in IGNORED_ON_REUSE]


def ensure_trained(cfg: C.ExperimentConfig, run_dir: str | Path, *, progress: Progress | None = None,
                   label: str = "") -> dict[str, Any]:
    """Train `cfg` into `run_dir`, or resume it, or reuse it when it has finished. Returns the run's
    summary (see vlmt.training.trainer.train) with "reused": True when nothing had to be trained."""
    run_dir = Path(run_dir)
    say = progress or (lambda _msg: None)
    summary_path = run_dir / "summary.json"
    has_checkpoint = ckpt.has_checkpoints(run_dir)
    if summary_path.is_file() or has_checkpoint:
        changes = config_changes(run_dir, cfg)
        if changes is None:
            raise ConfigError(f"{run_dir}: holds a run without its config.yaml; remove the folder or "
                              f"choose another output folder")
        if changes:
            raise ConfigError(f"{run_dir}: holds a run of a different config ({', '.join(changes)}); "
                              f"remove the folder or choose another output folder")
    if summary_path.is_file():
        say(f"{label}: finished before, reused ({run_dir})")
        summary = load_json(summary_path)
        if not isinstance(summary, dict):
            raise DataError(summary_path, "damaged run summary (not a JSON object); remove the file to train the "
                                          "run again")
        return {**summary, "reused": True}
    if has_checkpoint:
        say(f"{label}: resuming the interrupted run in {run_dir}")
        summary = train(cfg, run_dir, resume=True)
    else:
        say(f"{label}: training into {run_dir}")
        summary = train(cfg, run_dir)
    return {**summary, "reused": False}


def validation_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's validation records from metrics.jsonl, in step order."""
    from vlmt.training.run_folder import read_records

    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return sorted((r for _, r in read_records(path) if r.get("split") == "val"), key=lambda r: r["step"])


def validation_at(run_dir: str | Path, step: int | None = None) -> dict[str, Any]:
    """The validation record at `step` (the last one when None or absent); {} when there is none."""
    records = validation_records(run_dir)
    if not records:
        return {}
    if step is not None:
        for record in records:
            if record["step"] == step:
                return record
    return records[-1]


def spread(values: Iterable[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (0 for one value) and the values themselves."""
    values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not values:
        return {"mean": None, "std": None, "n": 0, "values": []}
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values), "values": values}


def welch(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Difference of the means of two `spread` cells and Welch's t = diff / sqrt(s_a²/n_a + s_b²/n_b)
    (None where a side is empty, or where both spreads are 0 with a difference)."""
    if not a.get("n") or not b.get("n"):
        return {"diff": None, "t": None}
    diff = a["mean"] - b["mean"]
    se = math.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"])
    return {"diff": diff, "t": diff / se if se > 0 else (0.0 if diff == 0 else None)}


def format_spread(cell: dict[str, Any] | None, digits: int = 2) -> str:
    """`mean ± std` (just `mean` for one value); an em dash when empty."""
    if not cell or cell.get("mean") is None:
        return "—"
    if cell["n"] > 1:
        return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"
    return f"{cell['mean']:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table of already formatted cells."""
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
