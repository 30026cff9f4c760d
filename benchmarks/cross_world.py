"""Score hierarchical runs trained on different worlds on one and the same held-out split.

Two worlds of one generator (e.g. `world:default` and `world:train2240`) have different test
pictures, so their runs' test figures compare the pictures as well as the training. This scores
each run on each world's split with the run's own vocabulary, answer pool and phrase lexicon
(the ones it was trained with: the other world's text is encoded through them, an unseen word as
<unk>, an answer outside the pool unanswerable), so that every run is judged on the same pictures:

    PYTHONPATH=src python benchmarks/cross_world.py --worlds world:default:0:detector world:train2240:0:detector \\
        --runs RUN_A1 RUN_A2 RUN_B1 RUN_B2 --split test --checkpoint last --json

On a run's own world the figures are those of `vlmt evaluate run RUN --split S --checkpoint C`
(the same rebuild, checked by the `own` flag of each row). The words and answers of the other
world that the run's vocabulary and pool lack are counted (a share of the split's text, so a
reader can judge how far the transfer is handicapped by them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from vlmt.data.text import tokenize
from vlmt.errors import reports_errors
from vlmt.seeding import seed_everything
from vlmt.training import checkpoint as ckpt
from vlmt.training.build import Objective, load_experiment, run_config, task_seeds
from vlmt.training.evaluate import autocast

KEYS = {"retrieval": ("i2t_r1", "t2i_r1", "rsum"), "vqa": ("accuracy",), "grounding": ("r1", "r5")}


def coverage(own: Any, other: Any, split: str) -> dict[str, float]:
    """Share of the other world's `split` words (tokens) and VQA answers (majority) outside the run's
    vocabulary and pool."""
    vocab = own.assets.vocab
    tokens = [t for e in other.vqa_split(split).examples for t in tokenize(e.question, "vqa")] \
        if other.vqa else []
    tokens += [t for im in other.caption_split(split).images for c in im.captions for t in tokenize(c, "caption")] \
        if other.captions else []
    unknown = sum(1 for t in tokens if t not in vocab)
    answers = [e.multiple_choice_answer for e in other.vqa_split(split).examples] if other.vqa else []
    outside = sum(1 for a in answers if a not in own.assets.answers)
    return {"unknown_tokens_pct": round(100.0 * unknown / max(len(tokens), 1), 3),
            "answers_outside_pool_pct": round(100.0 * outside / max(len(answers), 1), 3)}


def world_label(vl: Any) -> str:
    """A world by its training pictures (a copy of a world in another folder gets the same label)."""
    return f"{len(vl.caption_split('train').images)} training pictures"


def score(run_dir: Path, world: str, split: str, which: str) -> dict[str, Any]:
    """The run's `which` checkpoint on `world`'s `split`, read through the run's own text assets."""
    cfg = run_config(run_dir)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    own_data = cfg.data.build(seed=cfg.train.seed)
    own_vl = own_data.family("vl")
    other_cfg = load_experiment(run_dir / "config.yaml", [f"data.root={world}"])
    data = other_cfg.data.build(seed=cfg.train.seed)
    vl = data.family("vl")
    same = Path(vl.root).resolve() == Path(own_vl.root).resolve()
    cover = coverage(own_vl, vl, split)
    vl.assets = own_vl.assets  # the run's vocabulary, answer pool and phrase lexicon
    vl.word_vectors = own_vl.word_vectors
    seed_everything(cfg.train.seed)
    model = cfg.model.build(data=data)
    seeds = task_seeds(cfg)
    tasks = {name: t.build(name=name, data=data, model=model, seed=seeds[name]) for name, t in cfg.tasks.items()}
    objective = Objective(model, tasks)
    ckpt.load_weights(ckpt.find_checkpoint(run_dir, which), objective)
    objective.eval()
    device = torch.device("cpu")
    out: dict[str, Any] = {"run": str(run_dir), "trained_on": world_label(own_vl), "scored_on": world_label(vl),
                           "trained_folder": Path(own_vl.root).name, "scored_folder": Path(vl.root).name,
                           "own": same, **cover}
    with torch.no_grad(), autocast(device, cfg.train.precision):
        for name, task in tasks.items():
            for key, value in task.evaluate(model, split, device=device).items():
                out[f"{name}/{key}"] = round(float(value), 3)
    return out


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation per (trained on, scored on) pair."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["trained_on"], r["scored_on"]), []).append(r)
    out = []
    for (a, b), rs in groups.items():
        cell: dict[str, Any] = {"trained_on": a, "scored_on": b, "runs": len(rs)}
        for key in rs[0]:
            vals = [r[key] for r in rs if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
            if len(vals) == len(rs) and "/" in key:
                cell[key] = {"mean": round(statistics.fmean(vals), 2),
                             "sd": round(statistics.stdev(vals), 2) if len(vals) > 1 else 0.0, "values": vals}
        out.append(cell)
    return out


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="hierarchical run folders (vlmt train)")
    parser.add_argument("--worlds", nargs="+", required=True, help="data roots to score each run on")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--checkpoint", default="last", help="best, last or a step (default last)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    rows = []
    for run in args.runs:
        for world in args.worlds:
            row = score(Path(run), world, args.split, args.checkpoint)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    result = {"split": args.split, "checkpoint": args.checkpoint, "rows": rows, "summary": summarise(rows)}
    if args.json:
        print(json.dumps(result))
        return 0
    for cell in result["summary"]:
        figures = "  ".join(f"{k} {v['mean']:.1f} ± {v['sd']:.1f}" for k, v in cell.items() if isinstance(v, dict)
                            and k.split("/")[-1] in sum(KEYS.values(), ()))
        print(f"trained on {cell['trained_on']}, scored on {cell['scored_on']} ({cell['runs']} runs): {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
