"""`vlmt reproduce composed`: do the two papers' ideas help each other on one encoder?

On the synthetic world, for each seed and with `optim.per_task_state` off and on, it trains
(configs/composed_world.yaml, or composed_tiny.yaml, changed per row):

| row            | tasks trained                                           | asks                                   |
|----------------|---------------------------------------------------------|----------------------------------------|
| hierarchical   | retrieval, VQA, grounding                               | the baseline                           |
| rec_layer0     | + SVLR recognition on I_0 (the region encoder)          | does recognition help the H tasks?     |
| rec_layerL     | + SVLR recognition on I_L (a co-attention layer)        | ... and does its depth matter?         |
| zero_shot      | retrieval, grounding, recognition on I_0 (no VQA at all) | zero-shot VQA (Eq. 9) of the encoder  |

and SVLR's own zero-shot model (configs/svlr_zero_shot_world.yaml: recognition only, Eq. 9) for
the same seeds. Every run is evaluated on the **test** split at its last checkpoint. The report
gives mean ± std per cell and Welch's t of each comparison:

    OUT/report.md, OUT/report.json, OUT/runs/<row>[-pts]/seed<k>

Runs are reused when the grid is run again (finished ones as they are, interrupted ones resumed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from vlmt import config as C
from vlmt.errors import ConfigError, VlmtError
from vlmt.experiments import grid_runs as G
from vlmt.io import atomic_write, write_json

CONFIGS = {"tiny": "composed_tiny.yaml", "default": "composed_world.yaml"}
REC_LAYER = {"tiny": 2, "default": 3}  # the co-attention layer of row rec_layerL (the retrieval decoder's, mid-depth)
ROWS = ("hierarchical", "rec_layer0", "rec_layerL", "zero_shot")
CHECKPOINT = "last"
COLUMNS = (("vqa/accuracy", "VQA"), ("retrieval/i2t_r1", "ICR R@1 i→t"), ("retrieval/t2i_r1", "ICR R@1 t→i"),
           ("retrieval/rsum", "ICR rsum"), ("grounding/r1", "VG R@1"),
           ("recognition/object_accuracy", "objects"), ("recognition/attribute_accuracy", "attributes"),
           ("zero_shot/accuracy", "Eq. 9 MC"))


def row_config(raw: dict, row: str, *, size: str, seed: int, per_task_state: bool, source: str) -> dict:
    """The experiment of one cell, as plain data."""
    layer = REC_LAYER[size]
    keep = {"hierarchical": ["retrieval", "vqa", "grounding"],
            "rec_layer0": ["retrieval", "vqa", "grounding", "recognition", "zero_shot"],
            "rec_layerL": ["retrieval", "vqa", "grounding", "recognition", "zero_shot"],
            "zero_shot": ["retrieval", "grounding", "recognition", "zero_shot"]}[row]
    out = G.subset_tasks(raw, keep, source=source)
    if row == "rec_layerL":
        out["tasks"]["recognition"]["layer"] = layer
        out["tasks"]["zero_shot"]["layer"] = layer
    if row == "zero_shot":
        out["train"]["best_metric"] = "recognition/object_accuracy"
    schedule = out.setdefault("schedule", {})
    if schedule.get("order"):
        schedule["order"] = [t for t in schedule["order"] if t in keep]
    out.setdefault("optim", {})["per_task_state"] = per_task_state
    out["train"].update(seed=int(raw.get("train", {}).get("seed", 0)) + seed, device="cpu", threads=1,
                        progress=False, tensorboard=False)
    return out


def svlr_zero_shot_config(size: str, seed: int) -> dict:
    """SVLR's own zero-shot model (recognition only) on the same world and seed."""
    raw = C.read_yaml(C.bundled_config("svlr_zero_shot_world.yaml"))
    raw["data"]["root"] = f"world:{size}"
    raw["train"].update(seed=int(raw["train"].get("seed", 0)) + seed, device="cpu", threads=1, progress=False,
                        tensorboard=False)
    return raw


@dataclass(frozen=True)
class Cell:
    """One run of the grid (picklable: it goes to a worker process)."""

    name: str  # row name, "-pts" when per_task_state is on, or "svlr_zero_shot"
    seed: int
    raw: dict
    run_dir: str

    @property
    def label(self) -> str:
        return f"{self.name} seed {self.seed}"


def run_cell(cell: Cell) -> dict[str, Any]:
    """Train (or reuse / resume) one cell and return its test metrics at the last checkpoint
    ({"error": message} for a user-facing error, which does not always survive pickling)."""
    from vlmt.experiments.reproduce_hierarchical import evaluate_on_test
    from vlmt.training.build import load_plugins

    load_plugins()
    try:
        cfg = C.from_dict(cell.raw, source=f"reproduce composed ({cell.label})")
        summary = G.ensure_trained(cfg, cell.run_dir, label=cell.label)
        result = evaluate_on_test(Path(cell.run_dir), cfg)
    except VlmtError as e:
        return {"error": f"{cell.label}: {e}"}
    return {"metrics": result["metrics"], "seconds": summary.get("seconds"), "reused": summary.get("reused", False)}


def plan(out: Path, *, seeds: int, size: str, overrides: Sequence[str] = ()) -> list[Cell]:
    """Every cell of the grid, seed-major (an interrupted grid has whole rows for its first seeds)."""
    path = C.bundled_config(CONFIGS[size])
    source = str(path) + (f" with --set {' '.join(overrides)}" if overrides else "")
    raw = C.apply_overrides(C.read_yaml(path), list(overrides))
    cells = []
    for seed in range(seeds):
        for pts in (False, True):
            for row in ROWS:
                name = row + ("-pts" if pts else "")
                cells.append(Cell(name, seed, row_config(raw, row, size=size, seed=seed, per_task_state=pts,
                                                         source=source), str(out / "runs" / name / f"seed{seed}")))
        svlr = svlr_zero_shot_config(size, seed)
        if overrides:  # the shared keys (e.g. train.max_iters) shorten SVLR's run too
            svlr = C.apply_overrides(svlr, [o for o in overrides if o.startswith("train.")])
        cells.append(Cell("svlr_zero_shot", seed, svlr, str(out / "runs" / "svlr_zero_shot" / f"seed{seed}")))
    return cells


def run_cells(cells: list[Cell], *, workers: int, say: Callable[[str], None],
              done: Callable[[Cell, dict[str, Any]], None]) -> None:
    """Run the cells, `workers` processes at a time (in this process when 1)."""
    if workers <= 1:
        for i, cell in enumerate(cells, 1):
            say(f"[{i}/{len(cells)}] {cell.label}")
            done(cell, run_cell(cell))
        return
    import concurrent.futures as cf
    import multiprocessing

    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_cell, cell): cell for cell in cells}
        for i, future in enumerate(cf.as_completed(futures), 1):
            cell = futures[future]
            say(f"[{i}/{len(cells)}] {cell.label} done")
            done(cell, future.result())


def run_grid(out: str | Path, *, seeds: int, size: str, progress: Callable[[str], None] | None = None,
             overrides: Sequence[str] = (), workers: int = 2) -> dict[str, Any]:
    """Train and test the grid (see the module docstring); write OUT/report.md and report.json and
    return the report."""
    say = progress or (lambda _msg: None)
    if size not in CONFIGS:
        raise ConfigError(f"--size: expected one of {', '.join(CONFIGS)}, got {size!r}")
    if seeds < 1:
        raise ConfigError(f"--seeds: must be >= 1, got {seeds}")
    out = Path(out)
    cells = plan(out, seeds=seeds, size=size, overrides=overrides)
    for cell in cells:  # every config valid before the first minute of training
        C.from_dict(cell.raw, source=f"reproduce composed ({cell.label})")
    header = {"experiment": "composed", "size": size, "config": CONFIGS[size], "overrides": list(overrides),
              "seeds": seeds, "split": "test", "checkpoint": CHECKPOINT, "recognition_layer_L": REC_LAYER[size]}
    results: dict[tuple[str, int], dict[str, Any]] = {}
    started = time.perf_counter()

    def done(cell: Cell, result: dict[str, Any]) -> None:
        if "error" in result:
            raise VlmtError(result["error"])
        results[(cell.name, cell.seed)] = result
        write_report(out, header, results, seeds, started)

    write_report(out, header, results, seeds, started)
    run_cells(cells, workers=workers, say=say, done=done)
    return write_report(out, header, results, seeds, started)


# -- the report -------------------------------------------------------------------------------------


def cell_spread(results: dict[tuple[str, int], dict[str, Any]], name: str, key: str, seeds: int) -> dict[str, Any]:
    return G.spread(results[(name, s)]["metrics"].get(key) for s in range(seeds) if (name, s) in results)


def write_report(out: Path, header: dict[str, Any], results: dict[tuple[str, int], dict[str, Any]], seeds: int,
                 started: float) -> dict[str, Any]:
    names = [r + suffix for suffix in ("", "-pts") for r in ROWS] + ["svlr_zero_shot"]
    cells = {name: {key: cell_spread(results, name, key, seeds) for key, _ in COLUMNS} for name in names}
    comparisons = []
    for suffix in ("", "-pts"):
        base = "hierarchical" + suffix
        for row in ("rec_layer0", "rec_layerL"):
            for key, title in COLUMNS[:5]:
                comparisons.append({"what": f"{row}{suffix} − {base}", "metric": key, "title": title,
                                    **G.welch(cells[row + suffix][key], cells[base][key])})
        comparisons.append({"what": f"rec_layerL{suffix} − rec_layer0{suffix}", "metric": "recognition/object_accuracy",
                            "title": "objects", **G.welch(cells["rec_layerL" + suffix]["recognition/object_accuracy"],
                                                          cells["rec_layer0" + suffix]["recognition/object_accuracy"])})
        comparisons.append({"what": f"zero_shot{suffix} − svlr_zero_shot", "metric": "zero_shot/accuracy",
                            "title": "Eq. 9 MC", **G.welch(cells["zero_shot" + suffix]["zero_shot/accuracy"],
                                                           cells["svlr_zero_shot"]["zero_shot/accuracy"])})
    for row in ROWS:
        for key, title in COLUMNS:
            if cells[row][key]["n"] and cells[row + "-pts"][key]["n"]:
                comparisons.append({"what": f"{row}-pts − {row}", "metric": key, "title": title,
                                    **G.welch(cells[row + "-pts"][key], cells[row][key])})
    report = {**header, "complete": len(results) == len(names) * seeds, "runs_done": len(results),
              "seconds": round(time.perf_counter() - started, 1),
              "cells": cells, "comparisons": comparisons,
              "runs": {f"{n}/seed{s}": r for (n, s), r in sorted(results.items())}}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report)
    with atomic_write(out / "report.md") as f:
        f.write(markdown(report))
    return report


def markdown(report: dict[str, Any]) -> str:
    cells = report["cells"]
    head = ["run", "per-task Adam state"] + [title for _, title in COLUMNS]
    rows = []
    for name in [r + s for s in ("", "-pts") for r in ROWS] + ["svlr_zero_shot"]:
        rows.append([name.removesuffix("-pts"), "on" if name.endswith("-pts") else ("off" if name != "svlr_zero_shot"
                                                                                      else "-")]
                    + [G.format_spread(cells[name][key], 1) for key, _ in COLUMNS])
    comp_rows = [[c["what"], c["title"], f"{c['diff']:+.2f}" if c["diff"] is not None else "—",
                  f"{c['t']:+.2f}" if c["t"] is not None else "—"] for c in report["comparisons"]]
    lines = [f"# Both papers on one encoder: `vlmt reproduce composed` ({report['size']} world)", "",
             f"{report['seeds']} seed(s) per cell, test split, last checkpoint; config `{report['config']}`"
             + (f" with --set {' '.join(report['overrides'])}" if report["overrides"] else "")
             + f"; recognition layer L = {report['recognition_layer_L']}. "
             f"{report['runs_done']} runs done{'' if report['complete'] else ' (incomplete)'}; "
             f"{report['seconds']:.0f} s.", "",
             "Mean ± sample std over seeds. `Eq. 9 MC` is SVLR's zero-shot multiple-choice score: zero-shot only "
             "in the rows that never train VQA (`zero_shot`, `svlr_zero_shot`); in the others the encoder trained "
             "open-ended VQA.", "",
             G.markdown_table(head, rows), "",
             "## Comparisons", "",
             "Difference of the means and Welch's t = Δ / sqrt(s₁²/n₁ + s₂²/n₂) (|t| above about 4.3 is the two-sided "
             "5 % level for 3 + 3 seeds).", "",
             G.markdown_table(["comparison", "metric", "Δ", "t"], comp_rows), ""]
    return "\n".join(lines)
