"""Recall lost and time saved by shortlist-then-rerank retrieval, against exhaustive scoring.

Evaluates one trained run (its retrieval task must have a shortlist head: `shortlist_dim > 0`)
on a split three ways: every image x caption pair scored by the full model; the shortlist head's
cosine similarity alone; and two-stage scoring for each k of `--ks`. Prints, per mode, R@1/5/10
both ways, the fraction of pairs the full model scored, the seconds, and the recall lost against
exhaustive scoring. Without `--run`, trains the shipped `hierarchical_world` config on retrieval
alone with a 64-wide shortlist head first (about 3 minutes of one CPU core).

    PYTHONPATH=src python benchmarks/retrieval_rerank.py [--run RUN | --keep DIR] [--ks 1,2,5,10,20] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from vlmt import cli
from vlmt.config import bundled_config
from vlmt.metrics.retrieval import retrieval_metrics
from vlmt.training.build import rebuild

KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")


def _flat(m) -> dict[str, float]:
    return {"i2t_r1": m.i2t.r1, "i2t_r5": m.i2t.r5, "i2t_r10": m.i2t.r10,
            "t2i_r1": m.t2i.r1, "t2i_r5": m.t2i.r5, "t2i_r10": m.t2i.r10, "rsum": m.rsum}


def measure(run: Path, ks: list[int], split: str, *, threads: int) -> dict:
    device = torch.device("cpu")
    _, parts = rebuild(run, "best", device=device)
    torch.set_num_threads(threads)  # rebuild applies the run's train.threads
    model = parts.model
    name, task = next((n, t) for n, t in parts.tasks.items() if getattr(t, "kind", "") == "retrieval")
    model.eval()
    c = task.per_image
    out: dict = {"run": run.name, "task": name, "split": split}

    started = time.perf_counter()
    scores = task.score_matrix(model, split, device=device)
    exhaustive = _flat(retrieval_metrics(scores, c))
    out["images"], out["captions"] = scores.shape
    out["exhaustive"] = {**exhaustive, "pairs_scored": 1.0, "seconds": time.perf_counter() - started}

    started = time.perf_counter()
    similarity = task.similarity_matrix(model, split, device=device)
    out["shortlist_only"] = {**_flat(retrieval_metrics(similarity, c)), "pairs_scored": 0.0,
                             "seconds": time.perf_counter() - started}
    out["rerank"] = []
    for k in ks:
        started = time.perf_counter()
        matrix, scored = task.reranked_matrix(model, split, k=k, device=device)
        m = _flat(retrieval_metrics(matrix, c))
        out["rerank"].append({"k": k, **m, "pairs_scored": scored / matrix.size,
                              "seconds": time.perf_counter() - started,
                              "recall_lost": {key: exhaustive[key] - m[key] for key in KEYS}})
    return out


def train_default(out: Path, *, attached: bool = False, seed: int = 0) -> Path:
    run = out / "retrieval_shortlist"
    code = cli.main(["train", str(bundled_config("hierarchical_world.yaml")), "--out", str(run),
                     "--set", "schedule.order=[retrieval]", "--set", "tasks.retrieval.shortlist_dim=64",
                     "--set", "train.best_metric=retrieval/rsum", "--set", "train.progress=false",
                     "--set", f"tasks.retrieval.shortlist_detach={str(not attached).lower()}",
                     "--set", f"train.seed={seed}"])
    if code != 0:
        raise SystemExit(f"training failed with exit status {code}")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a run folder with a shortlist head")
    parser.add_argument("--ks", default="1,2,5,10,20", help="shortlist sizes (comma-separated)")
    parser.add_argument("--attached", action="store_true",
                        help="when training: let the shortlist loss train the shared encoder (shortlist_detach=false)")
    parser.add_argument("--seed", type=int, default=0, help="when training: train.seed")
    parser.add_argument("--keep", type=Path, default=None, help="train into this folder and keep the run")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ks = [int(k) for k in args.ks.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run if args.run is not None else train_default(args.keep or Path(tmp), attached=args.attached,
                                                                  seed=args.seed)
        result = measure(run, ks, args.split, threads=args.threads)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['images']} images x {result['captions']} captions ({result['split']})", file=sys.stderr)
    header = f"{'mode':>14} {'pairs':>7} {'s':>6} " + " ".join(f"{k:>8}" for k in KEYS)
    print(header)
    rows = [("exhaustive", result["exhaustive"]), ("shortlist", result["shortlist_only"])]
    rows += [(f"rerank k={r['k']}", r) for r in result["rerank"]]
    for label, r in rows:
        print(f"{label:>14} {r['pairs_scored']:7.4f} {r['seconds']:6.2f} " + " ".join(f"{r[k]:8.1f}" for k in KEYS))


if __name__ == "__main__":
    main()
