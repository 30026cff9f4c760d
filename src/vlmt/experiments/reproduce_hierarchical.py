"""`vlmt reproduce hierarchical`: Table 1 of the hierarchical paper (Sec. 5.3) on the synthetic
world - every combination of the three tasks (3 single tasks, 3 pairs, all three), each trained
with the paper's schedule and evaluated on the **test** split with the official metrics, over N
seeds; mean and spread per cell, the paper's own numbers beside ours for orientation.

Every (combination, seed) is a run folder under `OUT/runs/<tasks>/seed<k>` trained from the
CPU-sized config of the chosen world (`configs/tiny.yaml` or `configs/hierarchical_world.yaml`)
with the other tasks dropped. Finished runs are reused, interrupted ones resumed, and the test
metrics of each run are cached beside it (`test_metrics.json`), so running the command again
continues an interrupted grid. After every run the report is rewritten atomically:

    OUT/report.md     the table (ours vs the paper), the gain of joint training over single-task
                      training, every metric, timing and host load
    OUT/report.json   the same numbers for scripts (the object `run_grid` returns)
    OUT/table1.png    a bar chart of the headline metrics (written when the grid is complete)
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from vlmt import config as C
from vlmt.errors import ConfigError
from vlmt.experiments import grid_runs as G
from vlmt.io import atomic_write, write_json
from vlmt.pictures import new_figure, save_figure
from vlmt.training import checkpoint as ckpt
from vlmt.training.build import load_experiment, rebuild
from vlmt.training.evaluate import evaluate_tasks

TASKS = ("vqa", "retrieval", "grounding")
LABELS = {"vqa": "VQA", "retrieval": "ICR", "grounding": "VG"}
# Table 1's rows, in the paper's order
COMBINATIONS: tuple[tuple[str, ...], ...] = (
    ("vqa",), ("retrieval",), ("grounding",),
    ("vqa", "retrieval"), ("vqa", "grounding"), ("retrieval", "grounding"),
    ("vqa", "retrieval", "grounding"),
)
CONFIGS = {"tiny": "tiny.yaml", "default": "hierarchical_world.yaml"}
# the paper's columns: (metric key, column title)
HEADLINE = (
    ("vqa/accuracy", "VQA Acc"),
    ("retrieval/i2t_r1", "ICR R@1 image→text"),
    ("retrieval/t2i_r1", "ICR R@1 text→image"),
    ("grounding/r1", "VG R@1"),
)
# Table 1 of the paper (percent). Its ICR cells hold two numbers: image annotation (image ->
# caption, our i2t) above image retrieval (caption -> image, our t2i).
PAPER_TABLE1: dict[tuple[str, ...], dict[str, float]] = {
    ("vqa",): {"vqa/accuracy": 65.50},
    ("retrieval",): {"retrieval/i2t_r1": 69.05, "retrieval/t2i_r1": 56.47},
    ("grounding",): {"grounding/r1": 58.09},
    ("vqa", "retrieval"): {"vqa/accuracy": 66.24, "retrieval/i2t_r1": 69.52, "retrieval/t2i_r1": 56.74},
    ("vqa", "grounding"): {"vqa/accuracy": 65.85, "grounding/r1": 58.07},
    ("retrieval", "grounding"): {"retrieval/i2t_r1": 69.23, "retrieval/t2i_r1": 57.40, "grounding/r1": 58.28},
    ("vqa", "retrieval", "grounding"): {"vqa/accuracy": 66.35, "retrieval/i2t_r1": 70.43,
                                        "retrieval/t2i_r1": 57.50, "grounding/r1": 58.26},
}
PAPER_SETTING = ("Paper: Table 1 of Nguyen & Okatani (CVPR 2019), Sec. 5.3, all numbers on the **val** "
                 "splits of real data: VQA 2.0 accuracy; image-caption retrieval on MS-COCO (1,000 val "
                 "images), R@1 for image annotation (image→text) and image retrieval (text→image); "
                 "grounding on Flickr30k Entities, R@1 at IoU ≥ 0.5; bottom-up region features, d = 1024. "
                 "They orient, they are not targets: our world, features and model size differ.")
ROWS = ("all", "table1", "procedures")
CHECKPOINT = "last"  # every combination is evaluated at the end of its schedule (see the docs)
# The training procedure of the all-three row: the config's schedule (periodic Algorithm 1 on the
# world) against the paper's curriculum (Sec. 4.1: every task alone, each pair, then all; each task
# its #iter_i in all), each with one Adam state shared by the tasks (the paper) or one per task.
# The curriculum rows halve the cycle C so a single-task stage (a quarter of grounding's #iter on the
# world) still holds whole cycles.
PROCEDURES: dict[str, dict[str, Any]] = {
    "periodic, shared Adam": {},
    "periodic, per-task Adam": {"optim": {"per_task_state": True}},
    "curriculum, shared Adam": {"schedule": {"kind": "curriculum", "curriculum": "subsets", "budget": "shared"},
                                "cycle_factor": 0.5},
    "curriculum, per-task Adam": {"schedule": {"kind": "curriculum", "curriculum": "subsets", "budget": "shared"},
                                  "cycle_factor": 0.5, "optim": {"per_task_state": True}},
}


def combination_name(tasks: Sequence[str]) -> str:
    return "+".join(tasks)


def combination_label(tasks: Sequence[str]) -> str:
    return " + ".join(LABELS[t] for t in tasks)


def run_config(raw: dict, tasks: Sequence[str], seed_offset: int, *, source: str) -> C.ExperimentConfig:
    """The experiment of one cell: only `tasks` of the file, its train seed shifted by `seed_offset`."""
    raw = G.subset_tasks(raw, list(tasks), source=source)
    train = dict(raw.get("train") or {})
    train["seed"] = int(train.get("seed", 0) or 0) + seed_offset
    raw["train"] = train
    return C.from_dict(raw, source=f"{source} ({combination_name(tasks)}, seed offset {seed_offset})")


def procedure_config(raw: dict, procedure: str, seed_offset: int, *, source: str) -> C.ExperimentConfig:
    """All three tasks of the file trained with `procedure` (a key of PROCEDURES)."""
    change = PROCEDURES[procedure]
    raw = {**raw}
    schedule = dict(raw.get("schedule") or {})
    if "schedule" in change:
        schedule.update(change["schedule"])
        schedule.pop("stages", None)
        schedule["order"] = [t for t in (schedule.get("order") or list(raw["tasks"])) if t in TASKS]
    if "cycle_factor" in change:
        schedule["cycle"] = max(1, int(round(int(schedule.get("cycle", 100)) * change["cycle_factor"])))
    raw["schedule"] = schedule
    raw["optim"] = {**(raw.get("optim") or {}), **change.get("optim", {})}
    return run_config(raw, TASKS, seed_offset, source=f"{source} [{procedure}]")


def procedure_name(procedure: str) -> str:
    return procedure.replace(", ", "-").replace(" ", "_")


def evaluate_on_test(run_dir: Path, cfg: C.ExperimentConfig) -> dict[str, Any]:
    """{"step": .., "checkpoint": .., "metrics": {"<task>/<metric>": ..}} on the test split, cached in
    RUN/test_metrics.json for the checkpoint it was computed from."""
    path = run_dir / "test_metrics.json"
    pointer = json.loads((run_dir / ckpt.CHECKPOINTS / f"{CHECKPOINT}.json").read_text(encoding="utf-8"))
    if path.is_file():
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("step") == pointer["step"] and cached.get("checkpoint") == CHECKPOINT:
            return cached
    started = time.perf_counter()
    _, parts = rebuild(run_dir, CHECKPOINT)
    device = next(parts.objective.parameters()).device
    metrics = evaluate_tasks(parts.model, parts.tasks, "test", device, cfg.train.precision)
    result = {"step": pointer["step"], "checkpoint": CHECKPOINT, "split": "test", "metrics": metrics,
              "seconds": round(time.perf_counter() - started, 3)}
    write_json(path, result)
    return result


def bundled_config(size: str) -> Path:
    if size not in CONFIGS:
        raise ConfigError(f"--size: expected one of {', '.join(CONFIGS)}, got {size!r}")
    return C.bundled_config(CONFIGS[size])


def run_grid(out: str | Path, *, seeds: int, size: str, progress: Callable[[str], None] | None = None,
             overrides: Sequence[str] = (), config: str | Path | None = None,
             rows: str = "all") -> dict[str, Any]:
    """Train and test every combination of the three tasks `seeds` times (`rows` all or table1),
    then all three tasks under each training procedure of PROCEDURES (`rows` all or procedures);
    write OUT/report.md and
    OUT/report.json and return the report. `overrides` (`key=value`) apply to the config first
    (e.g. fewer iterations); `config` replaces the size's bundled config."""
    say = progress or (lambda _msg: None)
    if seeds < 1:
        raise ConfigError(f"--seeds: must be >= 1, got {seeds}")
    if rows not in ROWS:
        raise ConfigError(f"--rows: one of {', '.join(ROWS)}, got {rows!r}")
    out = Path(out)
    path = Path(config) if config is not None else bundled_config(size)
    overrides = list(overrides)
    load_experiment(path, overrides)  # the whole file must be valid
    source = str(path) + (f" with --set {' '.join(overrides)}" if overrides else "")
    raw = C.apply_overrides(C.read_yaml(path), overrides)
    missing = [t for t in TASKS if t not in (raw.get("tasks") or {})]
    if missing:
        raise ConfigError(f"{source}: key 'tasks': Table 1 needs the tasks {', '.join(TASKS)}; "
                          f"missing {', '.join(missing)}")
    procedures: list[str] = list(PROCEDURES) if rows != "table1" else []
    header = {"paper": "hierarchical", "table": "Table 1", "size": size, "config": path.name,
              "overrides": overrides, "seeds": seeds, "split": "test", "checkpoint": CHECKPOINT,
              "paper_setting": PAPER_SETTING, "load_start": _load(),
              "combinations": [list(c) for c in COMBINATIONS] if rows != "procedures" else [],
              "procedures": procedures}
    # seed-major: an interrupted grid still has every row for its first seeds; the procedure rows
    # come after Table 1's (whose all-three row is "periodic, shared Adam" for a periodic config)
    reuse = rows == "all" and _config_is_periodic(raw)
    plan: list[tuple[Any, int]] = [(tasks, s) for s in range(seeds) for tasks in COMBINATIONS if rows != "procedures"]
    plan += [(procedure, s) for s in range(seeds) for procedure in procedures
             if not (reuse and procedure == "periodic, shared Adam")]
    results: dict[tuple[Any, int], dict[str, Any]] = {}
    started = time.perf_counter()
    _write_report(out, header, results, started)
    for i, (key, s) in enumerate(plan, 1):
        if isinstance(key, tuple):
            label = f"[{i}/{len(plan)}] {combination_label(key)} seed {s}"
            cfg = run_config(raw, key, s, source=source)
            run_dir = out / "runs" / combination_name(key) / f"seed{s}"
        else:
            label = f"[{i}/{len(plan)}] all three, {key}, seed {s}"
            cfg = procedure_config(raw, key, s, source=source)
            run_dir = out / "runs" / f"procedure-{procedure_name(key)}" / f"seed{s}"
        summary = G.ensure_trained(cfg, run_dir, progress=say, label=label)
        tested = evaluate_on_test(run_dir, cfg)
        results[(key, s)] = {"run": str(run_dir.relative_to(out)), "train_seconds": summary.get("seconds"),
                             "step": tested["step"], "metrics": tested["metrics"],
                             "test_seconds": tested.get("seconds"), "reused": summary.get("reused", False)}
        shown = ", ".join(f"{k} {tested['metrics'][k]:.2f}" for k, _ in HEADLINE if k in tested["metrics"])
        say(f"{label}: test {shown}")
        _write_report(out, header, results, started)
    report = _write_report(out, header, results, started)
    try:
        if report["rows"]:
            _chart(out / "table1.png", report)
            _write_report(out, header, results, started, chart="table1.png")
    except ImportError:  # matplotlib is a dependency, but the table must not depend on it
        say("matplotlib not available: no chart")
    say(f"report: {out / 'report.md'}")
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


# the order a reader expects the metrics in; others follow alphabetically
METRIC_ORDER = ("accuracy", "atype/yes_no", "atype/number", "atype/other", "i2t_r1", "i2t_r5",
                "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum", "i2t_medr", "t2i_medr", "r1", "r5", "r10")


def _metric_order(key: str) -> tuple[int, str]:
    name = key.split("/", 1)[-1]
    return (METRIC_ORDER.index(name) if name in METRIC_ORDER else len(METRIC_ORDER), name)


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _config_is_periodic(raw: dict) -> bool:
    """Whether the config's own schedule is periodic: then the all-three row of Table 1 already is
    the "periodic, shared Adam" procedure and is not trained twice."""
    return (raw.get("schedule") or {}).get("kind", "periodic") == "periodic" and \
        not (raw.get("optim") or {}).get("per_task_state", False)


def _procedure_rows(results: dict[tuple[Any, int], dict[str, Any]], seeds: int,
                    procedures: Sequence[str]) -> list[dict[str, Any]]:
    """One row per training procedure of all three tasks; "periodic, shared Adam" is Table 1's
    all-three row when the config's schedule is periodic."""
    rows = []
    for procedure in procedures:
        done = [results[(procedure, s)] for s in range(seeds) if (procedure, s) in results]
        if not done and procedure == "periodic, shared Adam":
            done = [results[(TASKS, s)] for s in range(seeds) if (TASKS, s) in results]
        keys = list(dict.fromkeys(k for r in done for k in r["metrics"]))
        rows.append({"procedure": procedure, "runs": [r["run"] for r in done], "finished": len(done),
                     "metrics": {k: G.spread(r["metrics"].get(k) for r in done) for k in keys},
                     "train_seconds": G.spread(r["train_seconds"] for r in done if r["train_seconds"] is not None),
                     "steps": [r["step"] for r in done]})
    return rows


def _procedure_tests(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Welch's t of each procedure against "periodic, shared Adam" on the headline metrics."""
    base = next((r for r in rows if r["procedure"] == "periodic, shared Adam"), None)
    tests: list[dict[str, Any]] = []
    if base is None:
        return tests
    for r in rows:
        if r is base:
            continue
        for key, _ in HEADLINE + (("retrieval/rsum", "ICR rsum"),):
            a, b = r["metrics"].get(key), base["metrics"].get(key)
            if a and b:
                tests.append({"procedure": r["procedure"], "metric": key, **G.welch(a, b)})
    return tests


def _rows(results: dict[tuple[Any, int], dict[str, Any]], seeds: int,
          combinations: Sequence[Sequence[str]] = COMBINATIONS) -> list[dict[str, Any]]:
    rows = []
    for tasks in map(tuple, combinations):
        done = [results[(tasks, s)] for s in range(seeds) if (tasks, s) in results]
        keys = list(dict.fromkeys(k for r in done for k in r["metrics"]))
        rows.append({
            "tasks": list(tasks), "label": combination_label(tasks),
            "runs": [r["run"] for r in done], "finished": len(done),
            "metrics": {k: G.spread(r["metrics"].get(k) for r in done) for k in keys},
            "paper": PAPER_TABLE1[tasks],
            "train_seconds": G.spread(r["train_seconds"] for r in done if r["train_seconds"] is not None),
            "steps": [r["step"] for r in done],
        })
    return rows


def _gains(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per headline metric: each combination's mean minus the single-task mean, with both spreads."""
    single = {tuple(r["tasks"]): r for r in rows if len(r["tasks"]) == 1}
    gains: dict[str, dict[str, dict[str, Any]]] = {}
    for key, _ in HEADLINE:
        task = key.split("/")[0]
        if (task,) not in single:
            continue
        base = single[(task,)]["metrics"].get(key)
        if not base or base["mean"] is None:
            continue
        for r in rows:
            if len(r["tasks"]) > 1 and task in r["tasks"]:
                cell = r["metrics"].get(key)
                if cell and cell["mean"] is not None:
                    delta = cell["mean"] - base["mean"]
                    se = math.sqrt(cell["std"] ** 2 / cell["n"] + base["std"] ** 2 / base["n"])
                    gains.setdefault(key, {})[r["label"]] = {
                        "delta": delta, "std_joint": cell["std"], "std_single": base["std"],
                        "n_joint": cell["n"], "n_single": base["n"],
                        # Welch's t statistic of the difference; None with one seed on a side
                        "t": (delta / se if se > 0 else None) if min(cell["n"], base["n"]) > 1 else None,
                        "paper_delta": (r["paper"][key] - single[(task,)]["paper"][key])}
    return gains


def _write_report(out: Path, header: dict[str, Any], results: dict, started: float,
                  chart: str | None = None) -> dict[str, Any]:
    rows = _rows(results, header["seeds"], header.get("combinations", COMBINATIONS))
    procedure_rows = _procedure_rows(results, header["seeds"], header.get("procedures", []))
    complete = all(r["finished"] == header["seeds"] for r in rows + procedure_rows)
    report = {**header, "rows": rows, "gains": _gains(rows), "procedure_rows": procedure_rows,
              "procedure_tests": _procedure_tests(procedure_rows), "complete": complete,
              "seconds": round(time.perf_counter() - started, 1), "load_now": _load()}
    if chart:
        report["chart"] = chart
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report)
    with atomic_write(out / "report.md", "w", encoding="utf-8") as f:
        f.write(_markdown(report))
    return report


def _markdown(report: dict[str, Any]) -> str:
    seeds = report["seeds"]
    lines = [f"# Reproducing Table 1 of the hierarchical multi-task paper on the {report['size']} synthetic world", "",
             (f"Every combination of the three tasks trained with `{report['config']}`" if report["rows"] else
              f"All three tasks trained with `{report['config']}` under {len(report['procedure_rows'])} procedures")
             + (f" and `--set {' '.join(report['overrides'])}`" if report["overrides"] else "")
             + (", the other tasks dropped" if report["rows"] else "")
             + f"; {seeds} seed{'s' if seeds > 1 else ''} per row; metrics on the "
             f"**test** split with the official metrics, at the {report['checkpoint']} checkpoint of each run, in "
             f"percent. Cells: mean ± sample standard deviation over seeds; *(paper)* columns: the paper's "
             f"Table 1.", "", report["paper_setting"], ""]
    if not report["rows"]:  # --rows procedures: only the procedure table
        lines += _procedure_markdown(report)
        lines += [f"Wall time of this invocation: {report['seconds']} s. Host load average (1, 5, 15 min) at "
                  f"start: {report['load_start']}, now: {report['load_now']}.", ""]
        if not report["complete"]:
            lines += ["The grid is incomplete; run the same command again to continue it.", ""]
        return "\n".join(lines)
    headers = ["tasks"]
    for _, title in HEADLINE:
        headers += [title, "(paper)"]
    headers.append("runs")
    table = []
    for r in report["rows"]:
        cells = [r["label"]]
        for key, _ in HEADLINE:
            task = key.split("/")[0]
            trained = task in r["tasks"]
            cells.append(G.format_spread(r["metrics"].get(key)) if trained else "—")
            cells.append(f"{r['paper'][key]:.2f}" if key in r["paper"] else "—")
        cells.append(f"{r['finished']}/{seeds}")
        table.append(cells)
    lines += [G.markdown_table(headers, table), ""]
    if report["gains"]:
        lines += ["## Joint training minus single-task training", "",
                  "Difference of the means (points) against the row that trains the task alone, the seeds' "
                  "standard deviations of each side, and Welch's t = Δ / sqrt(s_joint²/n + s_single²/n) "
                  "(|t| below about 2 is within seed noise; needs 2+ seeds). *paper Δ*: the same difference "
                  "in the paper's Table 1.", ""]
        grows = []
        for key, title in HEADLINE:
            for label, g in report["gains"].get(key, {}).items():
                spreads = (f"{g['std_joint']:.2f} / {g['std_single']:.2f}"
                           if min(g["n_joint"], g["n_single"]) > 1 else "— (1 seed)")
                grows.append([title, label, f"{g['delta']:+.2f}", spreads,
                              "—" if g["t"] is None else f"{g['t']:+.1f}", f"{g['paper_delta']:+.2f}"])
        lines += [G.markdown_table(["metric", "trained on", "Δ (ours)", "std joint / single", "t", "paper Δ"],
                                   grows), ""]
    if report.get("procedure_rows"):
        lines += _procedure_markdown(report)
    lines += ["## Every test metric", ""]
    for task in TASKS:
        rows = [r for r in report["rows"] if task in r["tasks"]]
        keys = sorted({k for r in rows for k in r["metrics"]  # per question type is in report.json only
                       if k.startswith(f"{task}/") and not k.endswith("/seconds") and "/qtype/" not in k},
                      key=_metric_order)
        if not keys:
            continue
        lines += [f"**{LABELS[task]}** (`{task}`)", "",
                  G.markdown_table(["trained on", *[k.split("/", 1)[1] for k in keys]],
                                   [[r["label"], *[G.format_spread(r["metrics"].get(k)) for k in keys]] for r in rows]),
                  ""]
    lines += ["## Time", "",
              G.markdown_table(["tasks", "iterations", "train s / run"],
                               [[r["label"], ", ".join(map(str, r["steps"])) or "—",
                                 G.format_spread(r["train_seconds"], 1)] for r in report["rows"]]), "",
              f"Wall time of this invocation: {report['seconds']} s (finished runs reused are not retrained). "
              f"Host load average (1, 5, 15 min) at start: {report['load_start']}, now: {report['load_now']}.", ""]
    if report.get("chart"):
        lines += [f"![headline metrics per task combination]({report['chart']})", ""]
    if not report["complete"]:
        lines += ["The grid is incomplete; run the same command again to continue it.", ""]
    return "\n".join(lines)


def _procedure_markdown(report: dict[str, Any]) -> list[str]:
    seeds = report["seeds"]
    keys = [*HEADLINE, ("retrieval/rsum", "ICR rsum")]
    table = [[r["procedure"], *[G.format_spread(r["metrics"].get(k)) for k, _ in keys],
              ", ".join(map(str, r["steps"])) or "—", f"{r['finished']}/{seeds}"] for r in report["procedure_rows"]]
    lines = ["## All three tasks by training procedure", "",
             "The paper trains with a curriculum (Sec. 4.1: every task alone, then each pair, then all three, "
             "each stage periodic; here each task gets its `#iter_i` in all, `schedule.budget: shared`) and one "
             "Adam state for all tasks. Rows: that procedure and the config's periodic switching, each with one "
             "Adam state shared by the tasks or one per task (`optim.per_task_state`); the curriculum rows use "
             "half the cycle C so a single-task stage holds whole cycles. Same metrics, split and checkpoint as "
             "above.", "",
             G.markdown_table(["procedure", *[title for _, title in keys], "iterations", "runs"], table), ""]
    if report.get("procedure_tests"):
        titles = dict(keys)
        lines += ["Each procedure minus periodic switching with a shared Adam state: difference of the means "
                  "(points) and Welch's t.", "",
                  G.markdown_table(["procedure", "metric", "Δ", "t"],
                                   [[x["procedure"], titles[x["metric"]],
                                     "—" if x["diff"] is None else f"{x['diff']:+.2f}",
                                     "—" if x["t"] is None else f"{x['t']:+.1f}"] for x in report["procedure_tests"]]),
                  ""]
    return lines


def _chart(path: Path, report: dict[str, Any]) -> None:
    """Grouped bars: one panel per headline metric, one bar per combination that trains its task."""
    fig, axes = new_figure(1, len(HEADLINE), figsize=(3.2 * len(HEADLINE), 3.4), squeeze=False)
    for ax, (key, title) in zip(axes[0], HEADLINE):
        task = key.split("/")[0]
        rows = [r for r in report["rows"] if task in r["tasks"] and r["metrics"].get(key, {}).get("mean") is not None]
        means = [r["metrics"][key]["mean"] for r in rows]
        stds = [r["metrics"][key]["std"] for r in rows]
        ax.bar(range(len(rows)), means, yerr=stds, capsize=3,
               color=["#9bb7d4" if len(r["tasks"]) == 1 else "#e08a4b" for r in rows])
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([r["label"].replace(" + ", "+") for r in rows], rotation=35, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        top = min(100.0, max([m + sd for m, sd in zip(means, stds)], default=1.0) * 1.18 + 1.0)
        for x, (m, sd) in enumerate(zip(means, stds)):  # the value above its error bar
            ax.text(x, m + sd + 0.02 * top, f"{m:.1f}", ha="center", va="bottom", fontsize=7)
        ax.set_ylim(0.0, top)
    seeds = f"{report['seeds']} seed{'s' if report['seeds'] > 1 else ''}"
    fig.suptitle(f"Table 1 on the {report['size']} world (test, mean ± std over {seeds}); blue: single task",
                 fontsize=9)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.27, top=0.84, wspace=0.3)
    save_figure(fig, path, dpi=110)
