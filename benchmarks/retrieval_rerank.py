"""Recall lost and time saved by shortlist-then-rerank retrieval, against exhaustive scoring.

Evaluates one trained run (its retrieval task must have a shortlist head: `shortlist_dim > 0`)
on a split three ways: every image x caption pair scored by the full model; the shortlist head's
cosine similarity alone; and two-stage scoring for each k of `--ks`. Prints, per mode, R@1/5/10
both ways, the fraction of pairs the full model scored, the seconds, and the recall lost against
exhaustive scoring; per k also the queries lost and gained at R@1 (right exhaustively and wrong
in two stages, or the reverse: the net recall lost can hide losses offset by gains) and how
often the true item was re-scored at all. Without `--run`, trains the shipped `hierarchical_world` config on retrieval
alone with a 64-wide shortlist head first (about 3 minutes of one CPU core).

`--test-images N` (when training) trains on the world `default-test<N>` instead of `default`:
the same train, val and Genome-like images (so the same training data, vocabulary and region
CNN) and a test split of N images x 5 captions, the default world's 120 first. Only the test
split grows because only it is measured, and COCO's 1K protocol fixes the test size, not the
training set's; N = 1,000 gives COCO 1K's 1,000 x 5,000 = 5M pairs (exhaustive scoring then
takes 10-20 minutes of one core).

    PYTHONPATH=src python benchmarks/retrieval_rerank.py [--run RUN | --keep DIR] [--ks 1,2,5,10,20]
        [--test-images N] [--attached] [--seed S] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vlmt import cli
from vlmt.config import bundled_config
from vlmt.metrics.retrieval import i2t_ranks, retrieval_metrics, t2i_ranks
from vlmt.tasks.rerank import shortlist_mask
from vlmt.training.build import rebuild

KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")


def _flat(m) -> dict[str, float]:
    return {"i2t_r1": m.i2t.r1, "i2t_r5": m.i2t.r5, "i2t_r10": m.i2t.r10,
            "t2i_r1": m.t2i.r1, "t2i_r5": m.t2i.r5, "t2i_r10": m.t2i.r10, "rsum": m.rsum}


def _top1(scores, c: int) -> dict[str, np.ndarray]:
    """Per query, whether its true item ranks first: "i2t" (images), "t2i" (captions)."""
    return {"i2t": i2t_ranks(scores, c) == 0, "t2i": t2i_ranks(scores, c) == 0}


def _paired(exhaustive: dict[str, np.ndarray], two_stage: dict[str, np.ndarray], similarity: np.ndarray,
            k: int, c: int, k_t2i: int | None = None) -> dict:
    """What the net recall lost hides: queries right at R@1 exhaustively and wrong in two stages
    (lost) or the reverse (gained), and the percentage of queries whose true item the full model
    re-scored at all (a shortlist miss is the only way to lose a query)."""
    mask = shortlist_mask(similarity, k, k_t2i)
    n_img = mask.shape[0]
    own = np.repeat(np.arange(n_img), c)  # caption j's image
    covered = {"i2t": mask.reshape(n_img, n_img, c)[np.arange(n_img), np.arange(n_img)].any(axis=1),
               "t2i": mask[own, np.arange(n_img * c)]}
    lost = {d: int((exhaustive[d] & ~two_stage[d]).sum()) for d in ("i2t", "t2i")}
    correct = {d: int(exhaustive[d].sum()) for d in ("i2t", "t2i")}
    return {"r1_queries": {d: {"lost": lost[d], "gained": int((~exhaustive[d] & two_stage[d]).sum()),
                               "of": int(exhaustive[d].size), "correct_exhaustively": correct[d],
                               # the share of the exhaustive model's correct queries that two stages lose
                               "lost_share": 100.0 * lost[d] / correct[d] if correct[d] else 0.0}
                           for d in ("i2t", "t2i")},
            "true_item_rescored": {d: 100.0 * float(covered[d].mean()) for d in ("i2t", "t2i")}}


def measure(run: Path, ks: list[tuple[int, int]], split: str, *, threads: int) -> dict:
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
    exhaustive_top = _top1(scores, c)
    out["images"], out["captions"] = scores.shape
    out["exhaustive"] = {**exhaustive, "pairs_scored": 1.0, "seconds": time.perf_counter() - started}

    started = time.perf_counter()
    similarity = task.similarity_matrix(model, split, device=device)
    out["shortlist_only"] = {**_flat(retrieval_metrics(similarity, c)), "pairs_scored": 0.0,
                             "seconds": time.perf_counter() - started}
    out["rerank"] = []
    for k, k_t2i in ks:
        started = time.perf_counter()
        matrix, scored = task.reranked_matrix(model, split, k=k, k_t2i=k_t2i, device=device)
        m = _flat(retrieval_metrics(matrix, c))
        seconds = time.perf_counter() - started
        out["rerank"].append({"k": k if k == k_t2i else f"{k}/{k_t2i}", **m, "pairs_scored": scored / matrix.size,
                              "seconds": seconds, "recall_lost": {key: exhaustive[key] - m[key] for key in KEYS},
                              **_paired(exhaustive_top, _top1(matrix, c), similarity, k, c, k_t2i)})
    return out


def train_default(out: Path, *, attached: bool = False, seed: int = 0, test_images: int | None = None) -> Path:
    run = out / "retrieval_shortlist"
    world = ["--set", f"data.root=world:default-test{test_images}"] if test_images is not None else []
    code = cli.main(["train", str(bundled_config("hierarchical_world.yaml")), "--out", str(run), *world,
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
    parser.add_argument("--ks", default="1,2,5,10,20",
                        help="shortlist sizes (comma-separated); K_I2T/K_T2I gives each direction its own, e.g. 50/20")
    parser.add_argument("--attached", action="store_true",
                        help="when training: let the shortlist loss train the shared encoder (shortlist_detach=false)")
    parser.add_argument("--seed", type=int, default=0, help="when training: train.seed")
    parser.add_argument("--keep", type=Path, default=None, help="train into this folder and keep the run")
    parser.add_argument("--test-images", type=int, default=None,
                        help="when training: a world with N test images, 5 captions each (train/val as default)")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.test_images is not None and (args.run is not None or args.test_images < 1):
        parser.error("--test-images must be >= 1 and applies when training (a --run is measured on its own world)")
    torch.set_num_threads(args.threads)
    try:
        ks = [(int(a), int(b or a)) for a, _, b in (k.partition("/") for k in args.ks.split(","))]
    except ValueError:
        parser.error(f"--ks: comma-separated K or K_I2T/K_T2I, got {args.ks!r}")
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run if args.run is not None else train_default(args.keep or Path(tmp), attached=args.attached,
                                                                  seed=args.seed, test_images=args.test_images)
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
    for r in result["rerank"]:
        q, hit = r["r1_queries"], r["true_item_rescored"]
        print(f"k={r['k']}: R@1 queries lost / gained: " + ", ".join(
            f"{d} {q[d]['lost']} / {q[d]['gained']} of {q[d]['of']} ({q[d]['lost_share']:.1f} % of the "
            f"{q[d]['correct_exhaustively']} right exhaustively lost)" for d in q)
            + "; true item re-scored: " + ", ".join(f"{d} {hit[d]:.1f} %" for d in hit))


if __name__ == "__main__":
    main()
