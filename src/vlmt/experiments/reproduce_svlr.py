"""`vlmt reproduce svlr`: the SVLR paper's experiments on the synthetic world, as one report.

For each seed it trains six runs with the shared trainer (configs/svlr_world.yaml, or
svlr_tiny.yaml, changed per row as below), each selected on its validation metric and evaluated on the test split:

| run               | tasks trained (loss weights)                  | used for                       |
|-------------------|-----------------------------------------------|--------------------------------|
| vqa_only          | VQA (1)                                       | Table 1 "VQA Only"; Table 2    |
| joint_multitask   | VQA (1) + recognition (0.1), per-class h_y    | Table 1 "Joint Multitask"; Table 2 |
| joint_svlr        | VQA (1) + recognition (0.1), shared g         | Table 1 "Joint SVLR", Tables 2, 4, Fig. 4 |
| genome_only       | recognition (1); zero-shot evaluated          | Table 1 "Zero-Shot VQA"; Fig. 5 baseline |
| genome_then_joint | as joint_svlr, from genome_only's final model | Sec. 5.2 pre-training; Table 2 |
| vqa_to_vr         | VQA (0.1) + recognition (1), shared g         | Fig. 5 (transfer VQA -> VR)    |

and writes into `out`: report.md, report.json, fig5_transfer_objects.png, fig4_*.png,
fig7_attention_agreement.png and the run folders (`runs/<row>/seed<k>`; a finished run is reused
when the grid is run again). Table 2 and Fig. 7 (agreement of VQA attention with the true boxes of
the objects a question asks about) come from the VQA runs' test questions
(`vlmt.experiments.svlr_attention`).
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vlmt import config as C
from vlmt.errors import ConfigError
from vlmt.experiments import svlr_attention
from vlmt.experiments.grid_runs import format_spread, spread, welch
from vlmt.io import atomic_write, write_json
from vlmt.metrics.attention_agreement import GRID, agreement_by_threshold
from vlmt.metrics.recognition import frequency_grid
from vlmt.metrics.vqa import metric_key
from vlmt.reports.svlr_figures import draw_attention_agreement, draw_transfer_heatmap
from vlmt.tasks.svlr_pictures import draw_interpretable_inference, pick_examples
from vlmt.training.build import Parts, rebuild, run_config
from vlmt.training.evaluate import evaluate_tasks
from vlmt.training.trainer import train

ROWS = ("vqa_only", "joint_multitask", "joint_svlr", "genome_only", "genome_then_joint", "vqa_to_vr")
# Table 2 / Fig. 7: the runs with a multiple-choice VQA model, and their labels
ATTENTION_ROWS = (("VQA Only", "vqa_only"), ("Joint Multitask", "joint_multitask"), ("Joint SVLR", "joint_svlr"),
                  ("Genome, then Joint SVLR", "genome_then_joint"))
TABLE1 = (("VQA Only", "vqa_only", "vqa"), ("Joint Multitask", "joint_multitask", "vqa"),
          ("Joint SVLR", "joint_svlr", "vqa"), ("Zero-Shot VQA", "genome_only", "zero_shot"))
CHANCE = 100.0 / 18


def base_config(size: str) -> dict:
    """The joint SVLR experiment as plain data: the shipped configs/svlr_world.yaml (tiny:
    svlr_tiny.yaml, with the joint weights of svlr_world), run quietly on the CPU."""
    name = "svlr_tiny.yaml" if size == "tiny" else "svlr_world.yaml"
    raw = C.read_yaml(C.bundled_config(name))
    raw["data"]["root"] = f"world:{size}"
    raw["tasks"]["recognition"]["loss_weight"] = 0.1  # a_obj = a_atr = 0.1 against a_ans = 1 (svlr_world)
    raw["schedule"]["order"] = ["vqa", "recognition"]
    raw["train"].update(device="cpu", threads=1, tensorboard=False, progress=False, log_every=50)
    return raw


def row_config(row: str, size: str, seed: int, max_iters: int | None = None, *, init_from: str | None = None
               ) -> dict:
    """The config of one run of the grid; `init_from` is the genome_only run of the same seed
    (required for genome_then_joint)."""
    raw = copy.deepcopy(base_config(size))
    tasks, train = raw["tasks"], raw["train"]
    train["seed"] = seed
    if max_iters is not None:
        train.update(max_iters=max_iters, eval_every=max_iters, checkpoint_every=max_iters)
    if row == "vqa_only":
        del tasks["recognition"], tasks["zero_shot"]
        raw["schedule"]["order"] = ["vqa"]
    elif row == "joint_multitask":
        raw["model"]["recognition_vectors"] = "per_class"
        del tasks["zero_shot"]
    elif row == "joint_svlr":
        del tasks["zero_shot"]
    elif row == "genome_then_joint":  # Sec. 5.2: pre-train on Genome, then train jointly
        if init_from is None:
            raise ValueError("genome_then_joint needs init_from (the genome_only run)")
        del tasks["zero_shot"]
        train["init_from"] = init_from
    elif row == "genome_only":
        del tasks["vqa"]
        tasks["recognition"]["loss_weight"] = 1.0
        raw["schedule"]["order"] = ["recognition"]
        train["best_metric"] = "recognition/object_accuracy"
    elif row == "vqa_to_vr":
        del tasks["zero_shot"]
        tasks["vqa"]["loss_weight"] = 0.1
        tasks["recognition"]["loss_weight"] = 1.0
        train["best_metric"] = "recognition/object_accuracy"
    else:
        raise ValueError(f"unknown row {row!r}")
    return raw


def _stats(values: list[float]) -> dict:
    v = [float(x) for x in values]
    mean = sum(v) / len(v)
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return {"mean": round(mean, 2), "std": round(std, 2), "values": v}


def _fmt(s: dict | None, seeds: int) -> str:
    if s is None:
        return "-"
    return f"{s['mean']:.1f}" + (f" ± {s['std']:.1f}" if seeds > 1 else "")


def _train_and_load(raw: dict, run_dir: Path, say: Callable[[str], None]) -> Parts:

    cfg = C.from_dict(raw, source=f"reproduce svlr ({run_dir.parent.name})")
    if not (run_dir / "summary.json").is_file():
        if run_dir.exists():  # an interrupted run: start it again from scratch
            import shutil

            shutil.rmtree(run_dir)
        summary = train(cfg, run_dir)
        say(f"  trained {run_dir.parent.name}/{run_dir.name} in {summary['seconds']:.0f} s")
    else:
        differ = C.diff(run_config(run_dir), cfg)
        if differ:
            raise ConfigError(f"{run_dir}: holds a finished run of another config (differs in {', '.join(differ)}); "
                              f"choose another --out")
        say(f"  reusing {run_dir.parent.name}/{run_dir.name}")
    return rebuild(run_dir, "best", device="cpu")[1]


def _neighbours(vectors: np.ndarray, words: list[str], queries: list[str], k: int) -> dict[str, list[str]]:
    """k nearest words by cosine similarity after mean-centering (as the paper's Table 4)."""
    x = vectors - vectors.mean(axis=0, keepdims=True)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sims = x @ x.T
    out = {}
    for q in queries:
        i = words.index(q)
        order = [j for j in np.argsort(-sims[i]) if j != i][:k]
        out[q] = [words[j] for j in order]
    return out


def _edges(values: list[int], bins: int = 3) -> list[float]:
    """Bin edges at quantiles of the classes' frequencies (distinct, last edge above the max)."""
    qs = np.quantile(np.asarray(values, dtype=float), np.linspace(0, 1, bins + 1)[:-1])
    edges = sorted({float(math.floor(q)) for q in qs})
    return edges + [float(max(values)) + 1]


def run_grid(out: str | Path, *, seeds: int, size: str, progress: Callable[[str], None] | None = None,
             max_iters: int | None = None) -> dict:
    """Train and evaluate the grid (see the module docstring); returns what report.json holds.
    `max_iters` shortens every run (for quick checks; the report says so)."""

    say = progress or (lambda msg: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    started = time.perf_counter()
    device = torch.device("cpu")
    test: dict[str, list[dict[str, float]]] = {r: [] for r in ROWS}
    per_class: dict[str, list[dict[str, float]]] = {"genome_only": [], "vqa_to_vr": []}
    kept: dict[str, Any] = {}
    human: dict[int, np.ndarray] | None = None
    human_counts: dict[str, int] = {}
    rhos: dict[str, list[dict[int, float]]] = {row: [] for _, row in ATTENTION_ROWS}
    try:
        for seed in range(seeds):
            say(f"seed {seed + 1}/{seeds}")
            for row in ROWS:
                pretrained = str(out / "runs" / "genome_only" / f"seed{seed}") if row == "genome_then_joint" else None
                raw = row_config(row, size, seed, max_iters, init_from=pretrained)
                parts = _train_and_load(raw, out / "runs" / row / f"seed{seed}", say)
                model, tasks = parts.model, parts.tasks
                test[row].append(evaluate_tasks(model, tasks, "test", device))
                if row in per_class:
                    per_class[row].append(tasks["recognition"].per_class_accuracy(model, "test", device=device))
                if row in rhos:
                    if human is None:
                        human, human_counts = svlr_attention.world_human_maps(tasks["vqa"].data, "test")
                    rhos[row].append(svlr_attention.model_correlations(model, tasks["vqa"], "test", human,
                                                                       device=device))
                if seed == 0 and row == "joint_svlr":
                    kept["model"], kept["vqa"] = model, tasks["vqa"]
    finally:
        torch.set_num_threads(threads)
    vqa = kept["vqa"]
    data = vqa.data
    model = kept["model"]

    # ---- Table 1: accuracy per question type (test split), mean and spread over seeds
    counts: dict[str, int] = {}
    for q in data.vqa["test"]:
        counts[q.question_type] = counts.get(q.question_type, 0) + 1
    qtypes = sorted(counts, key=lambda t: (-counts[t], t))
    table1: dict[str, dict] = {}
    for label, row, task in TABLE1:
        runs = test[row]
        cells = {"overall": _stats([m[f"{task}/accuracy"] for m in runs])}
        for t in qtypes:
            key = f"{task}/qtype/{metric_key(t)}"
            if all(key in m for m in runs):
                cells[t] = _stats([m[key] for m in runs])
        for at in ("yes/no", "number", "other"):
            key = f"{task}/atype/{metric_key(at)}"
            if all(key in m for m in runs):
                cells[f"answer type: {at}"] = _stats([m[key] for m in runs])
        table1[label] = cells

    # ---- recognition, both directions (Sec. 5.3)
    recognition = {}
    for label, row in (("Genome only", "genome_only"), ("Joint SVLR (VQA -> VR weights)", "vqa_to_vr"),
                       ("Joint SVLR (VR -> VQA weights)", "joint_svlr"), ("Joint Multitask", "joint_multitask")):
        recognition[label] = {k: _stats([m[f"recognition/{k}"] for m in test[row]])
                              for k in ("object_accuracy", "attribute_accuracy")}

    # ---- Fig. 5: per-class change, binned by frequency in Genome train and VQA train
    classes = data.object_labels
    base = {c: float(np.mean([pc[c] for pc in per_class["genome_only"] if c in pc]))
            for c in classes if all(c in pc for pc in per_class["genome_only"])}
    joint = {c: float(np.mean([pc[c] for pc in per_class["vqa_to_vr"]])) for c in base}
    vqa_freq, _ = data.vqa_label_frequency("train")
    genome_freq = {c: data.object_frequency.get(c, 0) for c in classes}
    idx = {c: i for i, c in enumerate(base)}
    grid = frequency_grid({idx[c]: v for c, v in base.items()}, {idx[c]: v for c, v in joint.items()},
                          {idx[c]: vqa_freq[c] for c in base}, {idx[c]: genome_freq[c] for c in base},
                          _edges([vqa_freq[c] for c in base]), _edges([genome_freq[c] for c in base]))
    fig5 = out / "fig5_transfer_objects.png"
    draw_transfer_heatmap(grid, fig5, title=f"Change in per-class object accuracy, Genome only -> joint "
                                            f"(VQA -> VR weights), test split, {seeds} seed(s)")
    test_regions = {c: 0 for c in classes}
    for r in data.genome["test"]:
        for o in r.objects:
            test_regions[classes[o]] += 1
    per_class_rows = sorted(({"class": c, "genome_train_regions": genome_freq[c], "vqa_train_mentions": vqa_freq[c],
                              "genome_test_regions": test_regions[c],
                              "genome_only": round(base[c], 2), "joint": round(joint[c], 2),
                              "change": round(joint[c] - base[c], 2)} for c in base),
                            key=lambda r: r["genome_train_regions"])

    # ---- Table 2 and Fig. 7: attention agreement with the true boxes of the question's objects
    assert human is not None
    qids = sorted(human)
    centre = svlr_attention.centre_correlations(human)
    centre_rhos = [centre[qid] for qid in qids]
    table2 = {"Centre baseline": [float(np.mean(centre_rhos))]}
    curves: dict[str, list[float | None]] = {}
    counts7: list[int] = []
    for label, row in ATTENTION_ROWS:
        table2[label] = [float(np.mean([r[qid] for qid in qids])) for r in rhos[row]]
        per_seed = []
        for r in rhos[row]:
            means, counts7 = agreement_by_threshold([r[qid] for qid in qids], centre_rhos, svlr_attention.THRESHOLDS)
            per_seed.append(means)  # the subsets (counts7) are the same for every seed and model
        curves[label] = [None if point[0] is None else float(np.mean(point)) for point in zip(*per_seed)]
    curves["Centre baseline"] = agreement_by_threshold(centre_rhos, centre_rhos, svlr_attention.THRESHOLDS)[0]
    table2_cells = {label: {"mean": round(float(np.mean(v)), 3),  # correlations: 3 decimals
                            "std": round(float(np.std(v, ddof=1)), 3) if len(v) > 1 else 0.0,
                            "values": [round(x, 4) for x in v]} for label, v in table2.items()}
    fig7 = out / "fig7_attention_agreement.png"
    draw_attention_agreement(curves, list(svlr_attention.THRESHOLDS), counts7, fig7,
                             title=f"Agreement with the true boxes of the question's objects, test split, "
                                   f"mean over {seeds} seed(s)")

    # ---- Sec. 5.2: pre-training on Genome first, then joint training, against joint from scratch
    scratch = spread(m["vqa/accuracy"] for m in test["joint_svlr"])
    pretrain = spread(m["vqa/accuracy"] for m in test["genome_then_joint"])
    pretraining = {"joint_from_scratch": scratch, "genome_then_joint": pretrain, **welch(pretrain, scratch)}

    # ---- Table 4: nearest neighbours, input vectors vs learned g (joint SVLR, seed 0)
    vocab = sorted(set(data.object_labels) | set(data.attribute_labels)
                   | ({w for n in data.hypernyms.words() for w in [n, *data.hypernyms.hypernyms(n)]}
                      if data.hypernyms else set()))
    inputs = data.words.matrix(vocab)
    with torch.no_grad():
        model.eval()
        learned = model.embed_words(torch.from_numpy(inputs)).numpy()
    queries = [w for w in (*data.object_labels[:2], *data.object_labels[-2:], *data.attribute_labels[:2],
                           *data.attribute_labels[-2:]) if w in vocab]
    queries = list(dict.fromkeys(queries))
    table4 = {"input": _neighbours(inputs, vocab, queries, 4), "svlr_g": _neighbours(learned, vocab, queries, 4),
              "input_vectors": data.words.source}

    # ---- Fig. 4: interpretable inference of joint SVLR (seed 0) on test questions
    fig4 = []
    for k, q in enumerate(pick_examples(model, vqa, "test", 2, device=device)):
        path = out / f"fig4_inference_{k + 1}.png"
        info = draw_interpretable_inference(model, vqa, q, path, device=device)
        fig4.append({"png": path.name, **{key: info[key] for key in ("question", "answer", "correct_answer",
                                                                       "is_correct", "top_objects", "top_attributes")}})

    report = {
        "paper": "svlr", "size": size, "seeds": seeds,
        "max_iters": max_iters or base_config(size)["train"]["max_iters"],
        "shortened": max_iters is not None, "split": "test", "chance_accuracy": round(CHANCE, 2),
        "question_type_counts": {t: counts[t] for t in qtypes},
        "table1": table1, "recognition": recognition,
        "fig5": {"png": fig5.name, "classes": per_class_rows, "row_edges_vqa": list(grid.row_edges),
                 "col_edges_genome": list(grid.col_edges),
                 "mean_change": np.nan_to_num(grid.mean_change, nan=0).tolist(),
                 "counts": grid.counts.tolist()},
        "table4": table4, "fig4": fig4,
        "table2": {"models": table2_cells, "questions": human_counts, "grid": GRID, "split": "test"},
        "fig7": {"png": fig7.name, "thresholds": list(svlr_attention.THRESHOLDS), "counts": counts7,
                 "curves": curves},
        "pretraining": pretraining, "data": data.summary,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(out / "report.json", report)
    with atomic_write(out / "report.md", "w", encoding="utf-8") as f:
        f.write(_markdown(report, qtypes))
    say(f"wrote {out / 'report.md'}")
    return report


def _markdown(r: dict, qtypes: list[str]) -> str:
    seeds = r["seeds"]
    lines = [f"# SVLR on the synthetic world ({r['size']}, {seeds} seed(s))", "",
             f"Runs of {r['max_iters']} iterations{' (shortened)' if r['shortened'] else ''}, model selected on "
             f"val, scored on test with the official multiple-choice metric (percent; chance "
             f"{r['chance_accuracy']} with 18 choices). Cells: mean ± sample standard deviation over seeds.", "",
             "## Table 1: transfer from recognition to VQA", ""]
    cols = ["overall", *qtypes, "answer type: yes/no", "answer type: number", "answer type: other"]
    lines.append("| model | " + " | ".join(f"{c} (n={r['question_type_counts'][c]})" if c in r["question_type_counts"]
                                             else c for c in cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    for label, cells in r["table1"].items():
        lines.append(f"| {label} | " + " | ".join(_fmt(cells.get(c), seeds) for c in cols) + " |")
    lines += ["", "## Recognition (Genome-like test regions)", "",
              "| model | object accuracy | attribute accuracy |", "|---|---|---|"]
    for label, cells in r["recognition"].items():
        objects, attributes = _fmt(cells["object_accuracy"], seeds), _fmt(cells["attribute_accuracy"], seeds)
        lines.append(f"| {label} | {objects} | {attributes} |")
    pre = r["pretraining"]
    lines += ["", "## Pre-training on Genome first (Sec. 5.2)", "",
              "Joint SVLR initialised from the final weights of the Genome-only run of the same seed "
              "(`train.init_from`; task heads new), against Joint SVLR from scratch; test accuracy.", "",
              "| model | VQA accuracy | seeds |", "|---|---|---|",
              f"| Joint SVLR from scratch | {format_spread(pre['joint_from_scratch'], 1)} | "
              f"{' / '.join(f'{v:.1f}' for v in pre['joint_from_scratch']['values'])} |",
              f"| Genome, then Joint SVLR | {format_spread(pre['genome_then_joint'], 1)} | "
              f"{' / '.join(f'{v:.1f}' for v in pre['genome_then_joint']['values'])} |", "",
              "Difference (pre-trained minus scratch): " + (f"{pre['diff']:+.1f} points, Welch's t = {pre['t']:+.2f}"
                                                           if pre["t"] is not None else
                                                           (f"{pre['diff']:+.1f} points" if pre["diff"] is not None
                                                            else "-")) + " (paper: 63.7 vs 65.3).", ""]
    t2 = r["table2"]
    lines += ["## Table 2: agreement with human attention", "",
              f"Spearman's rho between the model's attention map (a(R) of the chosen answer spread over its "
              f"regions' boxes) and the map of the true boxes of the objects the question asks about, both "
              f"{t2['grid']} x {t2['grid']}; mean over {t2['questions']['kept']} of {t2['questions']['questions']} "
              f"test questions ({t2['questions']['no_object']} name no existing object, "
              f"{t2['questions']['constant_map']} have a constant map). Paper (VQA-HAT): SVLR 0.48, centre 0.53.", "",
              "| model | rho |", "|---|---|"]
    for label, cell in t2["models"].items():
        lines.append(f"| {label} | {cell['mean']:.3f}" + (f" ± {cell['std']:.3f}" if len(cell["values"]) > 1 else "")
                     + " |")
    f7 = r["fig7"]
    lines += ["", "## Fig. 7: agreement on questions away from the centre", "", f"![Fig. 7]({f7['png']})", "",
              "| t | questions | " + " | ".join(f7["curves"]) + " |", "|---" * (len(f7["curves"]) + 2) + "|"]
    for k, t in enumerate(f7["thresholds"]):
        if f7["counts"][k]:
            lines.append(f"| {t:.1f} | {f7['counts'][k]} | "
                         + " | ".join(f"{v[k]:.3f}" for v in f7["curves"].values()) + " |")
    lines += ["", "## Fig. 5: transfer from VQA to recognition", "", f"![Fig. 5]({r['fig5']['png']})", "",
              "| class | Genome train regions | VQA train mentions | Genome test regions | Genome only | joint "
              "| change |",
              "|---|---|---|---|---|---|---|"]
    for c in r["fig5"]["classes"]:
        lines.append(f"| {c['class']} | {c['genome_train_regions']} | {c['vqa_train_mentions']} | "
                     f"{c['genome_test_regions']} | "
                     f"{c['genome_only']:.1f} | {c['joint']:.1f} | {c['change']:+.1f} |")
    lines += ["", "## Table 4: nearest neighbours (cosine after mean-centering)", "",
              f"Input vectors: {r['table4']['input_vectors']}.", "",
              "| word | input vectors | learned g (Joint SVLR, seed 0) |", "|---|---|---|"]
    for w, nn_in in r["table4"]["input"].items():
        lines.append(f"| {w} | {', '.join(nn_in)} | {', '.join(r['table4']['svlr_g'][w])} |")
    lines += ["", "## Fig. 4: interpretable inference (Joint SVLR, seed 0)", ""]
    for ex in r["fig4"]:
        lines += [f"![{ex['question']}]({ex['png']})", "",
                  f"Q: {ex['question']} A: {ex['answer']} ({'correct' if ex['is_correct'] else 'wrong'}); "
                  f"most relevant region: {', '.join(n for n, _ in ex['top_objects'])} / "
                  f"{', '.join(n for n, _ in ex['top_attributes'])}", ""]
    lines += ["## Data", "", "```", *(f"{k}: {v}" for k, v in r["data"].items()), "```", "",
              f"Total time: {r['seconds']} s.", ""]
    return "\n".join(lines)
