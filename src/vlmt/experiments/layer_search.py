"""The single-task grid search of the hierarchical paper (Sec. 4.2): which encoder layer a task's
decoder should read, together with its batch size, `#step` (learning-rate halving period) and
`#iter` (its training length, later its share alpha_i of the switching cycle).

Every cell of the grid trains the task alone (the experiment file's other tasks are dropped) and
is ranked by its **validation** metric - the test split is never touched, so the chosen layers can
later be tested without bias. Cells are run folders under `OUT/runs/`; a finished cell is reused
and an interrupted one resumed (see vlmt.experiments.grid_runs), so a killed search continues where
it stopped. After every cell the table is rewritten atomically:

    OUT/layer_search.md     Markdown table, best setting marked
    OUT/layer_search.json   the same numbers (mean, std and values over seeds) for scripts
    OUT/runs/<cell>/        each run folder (config.yaml, metrics.jsonl, checkpoints, summary.json)
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from vlmt import config as C
from vlmt.errors import ConfigError
from vlmt.experiments import grid_runs as G
from vlmt.io import atomic_write, write_json
from vlmt.training import checkpoint as ckpt
from vlmt.training.build import build_parts, load_experiment

TABLE_MD = "layer_search.md"
TABLE_JSON = "layer_search.json"
DEFAULT_LAYERS = 5  # the paper's encoder depth, used when the model config does not say


@dataclass(frozen=True)
class SearchCell:
    """One training run of the grid."""

    layer: int | None
    batch_size: int
    step: int
    iterations: int
    seed: int

    @property
    def setting(self) -> tuple[int | None, int, int, int]:
        """The hyper-parameters without the seed: the row of the table this run belongs to."""
        return (self.layer, self.batch_size, self.step, self.iterations)

    @property
    def name(self) -> str:
        return (f"layer{self.layer if self.layer is not None else '-'}_bs{self.batch_size}_step{self.step}"
                f"_iter{self.iterations}_seed{self.seed}")


def parse_int_list(text: str | None, *, option: str, minimum: int = 1) -> list[int] | None:
    """`"1,2,3"` -> [1, 2, 3]; every value must be an integer >= `minimum` (ConfigError otherwise)."""
    if text is None:
        return None
    values = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = int(part)
        except ValueError:
            raise ConfigError(f"{option}: expected comma-separated integers >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise ConfigError(f"{option}: values must be >= {minimum}, got {value}")
        values.append(value)
    if not values or len(set(values)) != len(values):
        raise ConfigError(f"{option}: expected distinct values, got {text!r}")
    return values


def plan(raw: dict, task: str, *, layers: Sequence[int] | None, batch_sizes: Sequence[int] | None,
         steps: Sequence[int] | None, iterations: Sequence[int] | None, seeds: int,
         source: str) -> list[SearchCell]:
    """The cells of the grid, layer-major; unspecified dimensions keep the file's value."""
    if seeds < 1:
        raise ConfigError(f"--seeds: must be >= 1, got {seeds}")
    cfg = C.from_dict(G.subset_tasks(raw, [task], source=source), source=source)
    tcfg = cfg.tasks[task]
    if layers is None:
        depth = getattr(cfg.model, "num_layers", None)
        layers = list(range(1, (depth if isinstance(depth, int) else DEFAULT_LAYERS) + 1))
    base_seed = cfg.train.seed
    return [SearchCell(layer=lay, batch_size=bs, step=st, iterations=it, seed=base_seed + s)
            for lay, bs, st, it, s in itertools.product(
                layers, batch_sizes or [tcfg.batch_size], steps or [tcfg.step],
                iterations or [tcfg.iterations], range(seeds))]


def cell_config(raw: dict, task: str, cell: SearchCell, *, source: str) -> C.ExperimentConfig:
    """The experiment of one cell: only `task`, with the cell's layer, batch size, step, iterations
    and seed."""
    raw = G.subset_tasks(raw, [task], source=source)
    spec = dict(raw["tasks"][task] or {})
    spec.update(batch_size=cell.batch_size, step=cell.step, iterations=cell.iterations)
    if cell.layer is not None:
        spec["layer"] = cell.layer
    raw["tasks"][task] = spec
    raw.setdefault("train", {})
    raw["train"] = {**(raw["train"] or {}), "seed": cell.seed}
    return C.from_dict(raw, source=f"{source} (search cell {cell.name})")


def metric_rule(cfg: C.ExperimentConfig, task: str) -> tuple[str, str]:
    """("<task>/<metric>", "max"|"min"): the config's best_metric/best_mode when both are given,
    else the task's primary metric and direction (read from the built task)."""
    if cfg.train.best_metric and cfg.train.best_mode:
        return cfg.train.best_metric, cfg.train.best_mode
    built = build_parts(cfg, torch.device("cpu")).tasks[task]
    metric = cfg.train.best_metric or f"{task}/{built.primary_metric}"
    if cfg.train.best_mode:
        return metric, cfg.train.best_mode
    if metric != f"{task}/{built.primary_metric}":
        raise ConfigError(f"train.best_mode: needed (min or max) for best_metric {metric!r}, which is not "
                          f"the task's primary metric")
    return metric, "max" if built.higher_is_better else "min"


def search_layers(config: str | Path, *, task: str, out: str | Path, layers: Sequence[int] | None = None,
                  batch_sizes: Sequence[int] | None = None, steps: Sequence[int] | None = None,
                  iterations: Sequence[int] | None = None, seeds: int = 1, overrides: Sequence[str] = (),
                  progress: G.Progress | None = None) -> dict[str, Any]:
    """Run (or continue) the grid search and return the table written to OUT/layer_search.json."""
    say = progress or (lambda _msg: None)
    out = Path(out)
    overrides = list(overrides)
    load_experiment(config, overrides)  # the whole file (with its other tasks) must be valid
    source = f"{config}" + (f" with --set {' '.join(overrides)}" if overrides else "")
    raw = C.apply_overrides(C.read_yaml(C.config_path(config)), overrides)
    cells = plan(raw, task, layers=layers, batch_sizes=batch_sizes, steps=steps, iterations=iterations,
                 seeds=seeds, source=source)
    configs = {cell: cell_config(raw, task, cell, source=source) for cell in cells}
    rule = _cached_rule(out, configs[cells[0]], task, source)
    header = {"task": task, "config": str(config), "overrides": overrides, "split": "val",
              "metric": rule[0], "mode": rule[1],
              "grid": {"layer": _distinct(c.layer for c in cells), "batch_size": _distinct(c.batch_size for c in cells),
                       "step": _distinct(c.step for c in cells), "iterations": _distinct(c.iterations for c in cells),
                       "seeds": _distinct(c.seed for c in cells)}}
    results: dict[SearchCell, dict[str, Any]] = {}
    _write_table(out, header, cells, results)
    for i, cell in enumerate(cells, 1):
        label = f"[{i}/{len(cells)}] {task} {cell.name}"
        summary = G.ensure_trained(configs[cell], out / "runs" / cell.name, progress=say, label=label)
        results[cell] = _cell_result(out / "runs" / cell.name, summary, rule[0])
        value = results[cell]["val"].get(rule[0])
        say(f"{label}: val {rule[0]} = {value if value is None else round(value, 4)} "
            f"(step {results[cell]['step']})")
        _write_table(out, header, cells, results)
    table = _write_table(out, header, cells, results)
    best = table["best"]
    if best is not None:
        say(f"best: layer {best['layer']} (batch size {best['batch_size']}, step {best['step']}, "
            f"iterations {best['iterations']}): {rule[0]} = {best['val'][rule[0]]['mean']:.4f}; "
            f"table in {out / TABLE_MD}")
    return table


def _distinct(values) -> list:
    return list(dict.fromkeys(values))


def _cached_rule(out: Path, cfg: C.ExperimentConfig, task: str, source: str) -> tuple[str, str]:
    """The ranking metric, remembered in the table so a resumed search need not rebuild the task."""
    path = out / TABLE_JSON
    if path.is_file() and not cfg.train.best_metric:
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            saved = {}
        if (saved.get("task") == task and saved.get("metric", "").startswith(f"{task}/")
                and saved.get("mode") in ("max", "min")):
            return saved["metric"], saved["mode"]
    return metric_rule(cfg, task)


def _cell_result(run_dir: Path, summary: dict[str, Any], metric: str) -> dict[str, Any]:
    """Validation metrics of a run at its best checkpoint (by the ranking metric)."""
    best = summary.get("best") or ckpt.best_info(run_dir)
    step = best.get("step") if best and best.get("metric") == metric else None
    record = G.validation_at(run_dir, step)
    values = {k: float(v) for k, v in record.items() if k not in ("step", "split")}
    return {"step": record.get("step"), "val": values, "seconds": summary.get("seconds")}


def _write_table(out: Path, header: dict[str, Any], cells: list[SearchCell],
                 results: dict[SearchCell, dict[str, Any]]) -> dict[str, Any]:
    metric, mode = header["metric"], header["mode"]
    rows: list[dict[str, Any]] = []
    for setting in _distinct(c.setting for c in cells):
        members = [c for c in cells if c.setting == setting]
        done = [c for c in members if c in results]
        names = list(dict.fromkeys(k for c in done for k in results[c]["val"]))
        rows.append({
            "layer": setting[0], "batch_size": setting[1], "step": setting[2], "iterations": setting[3],
            "runs": [f"runs/{c.name}" for c in members], "finished": len(done),
            "val": {k: G.spread(results[c]["val"].get(k) for c in done) for k in names},
            "best_step": [results[c]["step"] for c in done],
            "seconds": G.spread(results[c]["seconds"] for c in done if results[c]["seconds"] is not None),
            "best": False,
        })
    complete = [r for r in rows if r["finished"] == len(r["runs"]) and r["val"].get(metric, {}).get("mean") is not None]
    best = None
    if complete:
        pick = max if mode == "max" else min
        best = pick(complete, key=lambda r: r["val"][metric]["mean"])
        best["best"] = True
    table = {**header, "rows": rows, "best": best, "complete": len(complete) == len(rows)}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / TABLE_JSON, table)
    with atomic_write(out / TABLE_MD, "w", encoding="utf-8") as f:
        f.write(_markdown(table))
    return table


def _markdown(table: dict[str, Any]) -> str:
    task, metric, mode = table["task"], table["metric"], table["mode"]
    prefix = f"{task}/"
    others = list(dict.fromkeys(k for r in table["rows"] for k in r["val"] if k != metric))
    short = lambda k: k[len(prefix):] if k.startswith(prefix) else k  # noqa: E731
    headers = ["", "layer", "batch size", "step", "iterations", f"**{short(metric)}** (val)",
               *[short(k) for k in others], "best step", "runs", "s / run"]
    rows = []
    for r in table["rows"]:
        rows.append(["**best**" if r["best"] else "", r["layer"] if r["layer"] is not None else "—",
                     r["batch_size"], r["step"], r["iterations"], G.format_spread(r["val"].get(metric)),
                     *[G.format_spread(r["val"].get(k)) for k in others],
                     ", ".join(str(s) for s in r["best_step"]) or "—", f"{r['finished']}/{len(r['runs'])}",
                     G.format_spread(r["seconds"], 1)])
    seeds = len(table["grid"]["seeds"])
    lines = [f"# Decoder layer search: task `{task}`", "",
             f"Single-task training of `{task}` (the other tasks of `{Path(table['config']).name}` dropped)"
             + (f" with `--set {' '.join(table['overrides'])}`" if table["overrides"] else "") + ". "
             f"Ranked by the **validation** metric `{metric}` ({'higher' if mode == 'max' else 'lower'} is better) "
             f"at each run's best checkpoint; the other columns are validation metrics at that same step. "
             f"Mean ± sample standard deviation over {seeds} seed{'s' if seeds > 1 else ''}"
             f" ({', '.join(map(str, table['grid']['seeds']))}).", "",
             G.markdown_table(headers, rows), ""]
    best = table["best"]
    if best is None:
        lines.append("No setting has finished every seed yet.")
    else:
        lines.append(f"Best: layer {best['layer']}, batch size {best['batch_size']}, step {best['step']}, "
                     f"iterations {best['iterations']} ({short(metric)} {G.format_spread(best['val'][metric])}).")
    if not table["complete"]:
        lines.append("")
        lines.append("The search is incomplete; run the same command again to continue it.")
    return "\n".join(lines) + "\n"
