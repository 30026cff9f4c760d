"""Recall lost and time saved by shortlist-then-rerank retrieval, against exhaustive scoring.

Evaluates one trained run (its retrieval task must have a shortlist head: `shortlist_dim > 0`)
on a split three ways: every image x caption pair scored by the full model; the shortlist head's
cosine similarity alone; and two-stage scoring for each k of `--ks`. Prints, per mode, R@1/5/10
both ways, the fraction of pairs the full model scored, the seconds, and the recall lost against
exhaustive scoring; per k also the queries lost and gained at R@1 (right exhaustively and wrong
in two stages, or the reverse: the net recall lost can hide losses offset by gains) and how
often the true item was re-scored at all. Without `--run`, trains the shipped `hierarchical_world` config on
retrieval alone with a 64-wide shortlist head first (1,200 updates of batch 32, about 4 minutes of one CPU
core; the figures in docs/hierarchical.md before issue 28's k chosen on val used batch 16: `--set
tasks.retrieval.batch_size=16`).

`--choose-k` chooses the shortlist sizes on the val split instead of reading them off the test
split they are reported on: per direction, the smallest k of `--grid` (default `--ks`) whose two-stage ranking on val
loses at most `--max-r1-lost` R@1 points (0.5) and at most `--max-lost-share` percent (5) of the
queries the full model gets right at R@1; the pair of sizes must also score at most
`--max-pairs` percent (5) of the pairs. The val split may be smaller than the test split (120
images against 1,000 at `--test-images 1000`), so each k is read as a share of its direction's
candidates: on val it becomes ceil(k x val candidates / test candidates). The test split is then
scored at the chosen sizes, and the goals checked there too (`choice` in the JSON).

`--size S` (when training) names the world size to train on (default `default`; e.g. `sharp` for
its detector regions). `--test-images N` (when training) trains on the world `<S>-test<N>` instead of `<S>`:
the same train, val and Genome-like images (so the same training data, vocabulary and region
CNN) and a test split of N images x 5 captions, the default world's 120 first. Only the test
split grows because only it is measured, and COCO's 1K protocol fixes the test size, not the
training set's; N = 1,000 gives COCO 1K's 1,000 x 5,000 = 5M pairs (exhaustive scoring then
takes 10-20 minutes of one core).

    PYTHONPATH=src python benchmarks/retrieval_rerank.py [--run RUN | --keep DIR] [--ks 1,2,5,10,20]
        [--choose-k [--grid K,...]] [--size S] [--test-images N] [--attached] [--seed S] [--set KEY=VALUE ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from vlmt import cli
from vlmt.cli import at_least
from vlmt.config import bundled_config
from vlmt.errors import reports_errors
from vlmt.metrics.retrieval import i2t_ranks, retrieval_metrics, t2i_ranks
from vlmt.tasks.rerank import reranked_scores, shortlist_mask
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


@dataclass(frozen=True)
class Goal:
    """What two stages may cost against exhaustive scoring, per direction: R@1 points, the share
    (percent) of the exhaustively right R@1 queries lost, and the percent of all pairs scored."""

    r1_lost: float = 0.5
    lost_share: float = 5.0
    pairs: float = 5.0


def offline_rerank(scores: np.ndarray, similarity: np.ndarray, c: int, k: int, k_t2i: int) -> tuple[np.ndarray, float]:
    """The two-stage matrix built from an exhaustive score matrix (the cross scores of the
    shortlisted pairs are its entries, as `score_pair_list` computes them) and the fraction of
    pairs scored: a grid of k costs no encoder pass."""
    mask = shortlist_mask(similarity, k, k_t2i)
    return reranked_scores(similarity, mask, scores[mask]), float(mask.mean())


def _losses(exhaustive: np.ndarray, two_stage: np.ndarray, similarity: np.ndarray, c: int,
            k: int, k_t2i: int, pairs: float) -> dict:
    """Per direction: R@1 points lost, queries lost (and as a share of the exhaustively right
    ones), and the fraction of pairs scored."""
    e, t = _flat(retrieval_metrics(exhaustive, c)), _flat(retrieval_metrics(two_stage, c))
    q = _paired(_top1(exhaustive, c), _top1(two_stage, c), similarity, k, c, k_t2i)["r1_queries"]
    return {"k": [k, k_t2i], "pairs_scored": pairs,
            **{d: {"r1_lost": e[f"{d}_r1"] - t[f"{d}_r1"], "lost": q[d]["lost"],
                   "correct_exhaustively": q[d]["correct_exhaustively"], "lost_share": q[d]["lost_share"]}
               for d in ("i2t", "t2i")}}


def _meets(row: dict, direction: str, goal: Goal) -> bool:
    d = row[direction]
    return d["r1_lost"] <= goal.r1_lost + 1e-9 and d["lost_share"] <= goal.lost_share + 1e-9


def _scaled(k: int, n: int, n_ref: int) -> int:
    """k of n_ref candidates as a share, on n candidates (at least 1)."""
    return max(1, math.ceil(k * n / n_ref))


def choose_k(scores: np.ndarray, similarity: np.ndarray, c: int, grid: list[int], goal: Goal, *,
             reference: tuple[int, int] | None = None) -> dict:
    """The smallest shortlist size per direction whose two stages meet `goal` on this split.

    grid: the candidate sizes on the reference split of `reference` = (images, captions) (default:
    this split's own shape); on this split each becomes the same share of its direction's
    candidates (captions per image scale with the captions, images per caption with the images).
    Each direction is judged with both sizes equal (the pair set is shared); the chosen pair is
    then measured as one. Returns the per-size rows, the chosen sizes on the reference split
    (None for a direction no size satisfies) and whether the pair meets every goal here."""
    n_img, n_cap = scores.shape
    ref_img, ref_cap = reference or (n_img, n_cap)
    rows, chosen = [], {"i2t": None, "t2i": None}
    for k in sorted(set(grid)):
        k_cap, k_img = _scaled(k, n_cap, ref_cap), _scaled(k, n_img, ref_img)
        matrix, pairs = offline_rerank(scores, similarity, c, k_cap, k_img)
        row = {"k_reference": k, **_losses(scores, matrix, similarity, c, k_cap, k_img, pairs)}
        rows.append(row)
        for d in ("i2t", "t2i"):
            if chosen[d] is None and _meets(row, d, goal):
                chosen[d] = k
    out: dict = {"grid": rows, "chosen": chosen, "goal": vars(goal), "reference": [ref_img, ref_cap]}
    if chosen["i2t"] is not None and chosen["t2i"] is not None:
        k_cap, k_img = _scaled(chosen["i2t"], n_cap, ref_cap), _scaled(chosen["t2i"], n_img, ref_img)
        matrix, pairs = offline_rerank(scores, similarity, c, k_cap, k_img)
        pair = _losses(scores, matrix, similarity, c, k_cap, k_img, pairs)
        pair["meets_goal"] = (_meets(pair, "i2t", goal) and _meets(pair, "t2i", goal)
                              and 100.0 * pairs <= goal.pairs + 1e-9)
        out["pair"] = pair
    return out


def _model_task(run: Path, threads: int):
    device = torch.device("cpu")
    _, parts = rebuild(run, "best", device=device)
    torch.set_num_threads(threads)  # rebuild applies the run's train.threads
    model = parts.model
    name, task = next((n, t) for n, t in parts.tasks.items() if getattr(t, "kind", "") == "retrieval")
    model.eval()
    return model, name, task


def choose_on_val(model, task, grid: list[int], goal: Goal, test_shape: tuple[int, int]) -> dict:
    """`choose_k` on the whole val split (not the periodic validation's `val_images` subset), its
    sizes read as shares of the test split's candidates."""
    device = torch.device("cpu")
    task.config = replace(task.config, val_images=None)
    started = time.perf_counter()
    scores = task.score_matrix(model, "val", device=device)
    similarity = task.similarity_matrix(model, "val", device=device)
    out = choose_k(scores, similarity, task.per_image, grid, goal, reference=test_shape)
    out["split"], out["images"], out["captions"] = "val", *scores.shape
    out["exhaustive"] = _flat(retrieval_metrics(scores, task.per_image))
    out["seconds"] = time.perf_counter() - started
    return out


def measure(run: Path, ks: list[tuple[int, int]], split: str, *, threads: int, goal: Goal | None = None,
            grid: list[int] | None = None) -> dict:
    """Exhaustive, shortlist-only and two-stage scoring of `split` for each k of `ks`; with `goal`,
    each direction's k is first chosen on val among `grid` (`choose_on_val`) and measured too
    (`choice`)."""
    device = torch.device("cpu")
    model, name, task = _model_task(run, threads)
    c = task.per_image
    out: dict = {"run": run.name, "task": name, "split": split}
    if goal is not None:
        test_shape = task.similarity_matrix(model, split, device=device).shape
        choice = choose_on_val(model, task, grid or sorted({k for pair in ks for k in pair}), goal, test_shape)
        out["choice"] = choice
        chosen = choice["chosen"]
        if chosen["i2t"] is not None and chosen["t2i"] is not None and (chosen["i2t"], chosen["t2i"]) not in ks:
            ks = [*ks, (chosen["i2t"], chosen["t2i"])]

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


def world_root(size: str = "default", test_images: int | None = None) -> str:
    """The `data.root` a training run of this benchmark reads: `world:<size>` or, with test_images,
    `world:<size>-test<N>`; an unknown size is a ConfigError naming the choices."""
    from vlmt.data.synth.world import world_size

    name = size if test_images is None else f"{size}-test{test_images}"
    world_size(name)
    return f"world:{name}"


def train_default(out: Path, *, attached: bool = False, seed: int = 0, test_images: int | None = None,
                  overrides: tuple[str, ...] = (), size: str = "default") -> Path:
    run = out / "retrieval_shortlist"
    world = ["--set", f"data.root={world_root(size, test_images)}"]
    code = cli.main(["train", str(bundled_config("hierarchical_world.yaml")), "--out", str(run), *world,
                     "--set", "schedule.order=[retrieval]", "--set", "tasks.retrieval.shortlist_dim=64",
                     "--set", "train.best_metric=retrieval/rsum", "--set", "train.progress=false",
                     "--set", f"tasks.retrieval.shortlist_detach={str(not attached).lower()}",
                     "--set", f"train.seed={seed}", *(x for kv in overrides for x in ("--set", kv))])
    if code != 0:
        raise SystemExit(f"training failed with exit status {code}")
    return run


@reports_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a run folder with a shortlist head")
    parser.add_argument("--ks", default="1,2,5,10,20",
                        help="shortlist sizes (comma-separated); K_I2T/K_T2I gives each direction its own, e.g. 50/20")
    parser.add_argument("--attached", action="store_true",
                        help="when training: let the shortlist loss train the shared encoder (shortlist_detach=false)")
    parser.add_argument("--seed", type=int, default=0, help="when training: train.seed")
    parser.add_argument("--keep", type=Path, default=None, help="train into this folder and keep the run")
    parser.add_argument("--size", default="default",
                        help="when training: the world size to train on (default: default; e.g. sharp)")
    parser.add_argument("--test-images", type=int, default=None,
                        help="when training: a world with N test images, 5 captions each (train/val as --size)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="when training: an extra config override (repeatable)")
    parser.add_argument("--choose-k", action="store_true",
                        help="choose each direction's shortlist size among --ks on the val split (see above)")
    parser.add_argument("--grid", default=None,
                        help="--choose-k: the sizes to choose among (comma-separated; default: those of --ks); "
                             "the test split is scored at --ks and at the chosen pair")
    parser.add_argument("--max-r1-lost", type=float, default=0.5, help="--choose-k: R@1 points lost at most")
    parser.add_argument("--max-lost-share", type=float, default=5.0,
                        help="--choose-k: percent of the exhaustively right R@1 queries lost at most")
    parser.add_argument("--max-pairs", type=float, default=5.0, help="--choose-k: percent of pairs scored at most")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--threads", type=at_least(1), default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.test_images is not None and (args.run is not None or args.test_images < 1):
        parser.error("--test-images must be >= 1 and applies when training (a --run is measured on its own world)")
    if args.set and args.run is not None:
        parser.error("--set applies when training (a --run is measured as it was trained)")
    if args.size != "default" and args.run is not None:
        parser.error("--size applies when training (a --run is measured on its own world)")
    if args.choose_k and args.split != "test":
        parser.error("--choose-k chooses on val and reports on test: leave --split at test")
    torch.set_num_threads(args.threads)
    try:
        ks = [(int(a), int(b or a)) for a, _, b in (k.partition("/") for k in args.ks.split(","))]
    except ValueError:
        parser.error(f"--ks: comma-separated K or K_I2T/K_T2I, got {args.ks!r}")
    try:
        grid = [int(k) for k in args.grid.split(",")] if args.grid else None
    except ValueError:
        parser.error(f"--grid: comma-separated sizes, got {args.grid!r}")
    if grid is not None and (not args.choose_k or min(grid) < 1):
        parser.error("--grid applies with --choose-k and takes sizes >= 1")
    goal = Goal(args.max_r1_lost, args.max_lost_share, args.max_pairs)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run if args.run is not None else train_default(args.keep or Path(tmp), attached=args.attached,
                                                                  seed=args.seed, test_images=args.test_images,
                                                                  overrides=tuple(args.set), size=args.size)
        result = measure(run, ks, args.split, threads=args.threads, goal=goal if args.choose_k else None,
                         grid=grid)
    if "choice" in result:
        result["choice"] = _report_choice(result["choice"], result, goal)
    if args.json:
        print(json.dumps(result))
        return
    if "choice" in result:
        ch = result["choice"]
        print(f"chosen on val ({ch['val_images']} images): k i2t {ch['chosen']['i2t']}, t2i {ch['chosen']['t2i']}; "
              f"on test: {ch.get('test')}", file=sys.stderr)
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


def _report_choice(choice: dict, result: dict, goal: Goal) -> dict:
    """The val choice and, when both directions found a size, the test row at it with the goal checked."""
    out = {"chosen": choice["chosen"], "goal": vars(goal), "val_images": choice["images"],
           "val_captions": choice["captions"], "val_exhaustive": choice["exhaustive"],
           "val_grid": choice["grid"], "val_pair": choice.get("pair")}
    chosen = choice["chosen"]
    if chosen["i2t"] is None or chosen["t2i"] is None:
        out["test"] = None  # no size of the grid meets the goal on val in some direction
        return out
    label = chosen["i2t"] if chosen["i2t"] == chosen["t2i"] else f"{chosen['i2t']}/{chosen['t2i']}"
    row = next(r for r in result["rerank"] if r["k"] == label)
    q = row["r1_queries"]
    test = {"k": label, "pairs_scored": row["pairs_scored"],
            **{d: {"r1_lost": row["recall_lost"][f"{d}_r1"], "lost": q[d]["lost"],
                   "correct_exhaustively": q[d]["correct_exhaustively"], "lost_share": q[d]["lost_share"]}
               for d in ("i2t", "t2i")}}
    test["meets_goal"] = (_meets(test, "i2t", goal) and _meets(test, "t2i", goal)
                          and 100.0 * row["pairs_scored"] <= goal.pairs + 1e-9)
    out["test"] = test
    return out


if __name__ == "__main__":
    sys.exit(main())
