"""Does retrieval on the world fail to generalise, or fail to fit? One retrieval-only run, scored
at several checkpoints on a test-sized subset of its own training pictures, on val and on test.

    PYTHONPATH=src python benchmarks/retrieval_generalisation.py --iterations 3000 --every 500 --seed 0
    PYTHONPATH=src python benchmarks/retrieval_generalisation.py --train-images 1680 --iterations 3000

The run is `vlmt train CONFIG --set schedule.kind=periodic --set schedule.order=[retrieval] --set
tasks.retrieval.iterations=N --set tasks.retrieval.step=N --set tasks.retrieval.val_images=null --set
train.keep_best=false --set train.checkpoint_every=EVERY --set train.keep_checkpoints=all --set train.eval_every=N
--set train.seed=S` (lr constant, so an early checkpoint is not scored before a decay the later ones had; every EVERY-th
checkpoint kept), trained in this process. Each checkpoint is rebuilt
(`vlmt.training.build.rebuild`) and its retrieval task scores every image x caption pair of (a) the
first --subset images of the train split with their first 5 captions
(`RetrievalTask.score_matrix(..., first_images=N)`), (b) val, (c) test, with the official metric
(`vlmt.metrics.retrieval`, ties against the query), as `vlmt evaluate run` scores a split. The
truth oracle (`vlmt.tasks.retrieval_ceiling`, generated reading, expected over tie orders) is
computed on the same three picture sets.

--train-images N generates (once, into the vlmt cache) a world like --size but with N training
pictures, and trains on it: main image ids run train, val, test, so its val and test pictures
are other draws of the same size (the ceiling on them is given too). Where that world is a named
size (`--size default --train-images 2240` is `train2240`), the named world is used, the one
`data.root: world:train2240` reads (cached as `train2240-seed<N>[-detector]`); other counts are
cached as `<size>-train<N>-seed<N>[-detector]`. The detector and region CNN
train on the Genome-like pictures only, which do not change, so the region features come from
the same models; the generation time is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from vlmt.cli import at_least
from vlmt.data.synth import cache
from vlmt.data.synth.world import SIZES, WorldSize, build, generate, world_size
from vlmt.errors import reports_errors
from vlmt.metrics.retrieval import retrieval_metrics
from vlmt.tasks.retrieval import metric_keys
from vlmt.tasks.retrieval_ceiling import caption_claims, expected_recall, oracle_scores
from vlmt.training.build import rebuild
from vlmt.training.trainer import train_experiment

KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")


def make_world(size: str, train_images: int | None, seed: int, proposals: str) -> tuple[Path, dict]:
    """Folder of the world (the cached `size` one, or a larger-train copy of it) and how long it took."""
    if train_images is None:
        t = time.perf_counter()
        folder = cache.ensure_world(size, seed, proposals=proposals)
        return folder, {"generate_s": round(time.perf_counter() - t, 1), "reused": True}
    spec = world_size(size)
    spec = replace(spec, main=(train_images, *spec.main[1:]))
    # a named size (`train2240`) is the world `data.root: world:NAME` reads, in the same cache folder
    named = next((name for name, s in SIZES.items() if s == spec), None)
    folder = cache.world_dir(named or f"{size}-train{train_images}", seed, proposals)
    t = time.perf_counter()
    manifest = generate(named or spec, folder, seed=seed, proposals=proposals,
                        progress=lambda msg: print(f"  world: {msg}", file=sys.stderr))
    return folder, {"generate_s": round(time.perf_counter() - t, 1), "timings_s": manifest.get("timings_s"),
                    "reused": bool(manifest.get("reused"))}


def ceiling(folder: Path, image_ids: list[int], texts: list[str], per_image: int) -> dict[str, float]:
    """The truth oracle (generated reading) on these pictures and their first captions; the
    rebuilt captions must be the scored ones."""
    manifest = json.loads((folder / "world.json").read_text(encoding="utf-8"))
    spec = WorldSize(**{k: tuple(v) if isinstance(v, list) else v for k, v in manifest["spec"].items()})
    w = build(spec, int(manifest["seed"]))
    kept = [c for i in image_ids for c in w.captions[i][:per_image]]
    if [c.text for c in kept] != texts:
        raise SystemExit(f"{folder}: the rebuilt captions are not the scored ones")
    scores = oracle_scores([w.scenes[i] for i in image_ids], [caption_claims(c) for c in kept])
    r = expected_recall(scores, per_image)
    out = {f"{d}_{k}": round(v, 2) for d in ("i2t", "t2i") for k, v in r[d].items()}
    out["rsum"] = round(sum(out.values()), 2)
    return out


def layout(task: Any, split: str, first: int | None) -> tuple[list[int], list[str]]:
    images, _ = task.eval_layout(split, first)
    return [im.image_id for im in images], [c for im in images for c in im.captions[:task.per_image]]


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="hierarchical_world",
                        help="experiment config (default: hierarchical_world)")
    parser.add_argument("--size", default="default", help="world size (default: default)")
    parser.add_argument("--world-seed", type=int, default=0, help="the world's seed (default 0)")
    parser.add_argument("--proposals", default="detector", help="region proposals of the world (default: detector)")
    parser.add_argument("--train-images", type=at_least(1), default=None,
                        help="train on a world of --size with this many training pictures (generated once)")
    parser.add_argument("--iterations", type=at_least(1), default=3000, help="retrieval updates (default 3000)")
    parser.add_argument("--every", type=at_least(1), default=500, help="score every this many updates (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--subset", type=at_least(1), default=120, help="training pictures scored (default 120)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra override")
    parser.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    if args.iterations % args.every:
        parser.error("--iterations must be a multiple of --every")

    folder, world = make_world(args.size, args.train_images, args.world_seed, args.proposals)
    run_dir = Path(args.out or tempfile.mkdtemp(prefix="vlmt-retrieval-gen-")) / f"seed{args.seed}"
    n = args.iterations
    # periodic: a curriculum config (tiny) would otherwise ignore the order and train its stages
    overrides = [f"data.root={folder}", "schedule.kind=periodic", "schedule.order=[retrieval]",
                 f"tasks.retrieval.iterations={n}",
                 f"tasks.retrieval.step={n}", "tasks.retrieval.val_images=null", "train.keep_best=false",
                 f"train.checkpoint_every={args.every}", "train.keep_checkpoints=all",  # each is scored below
                 f"train.eval_every={n}", f"train.seed={args.seed}", *args.set]
    t = time.perf_counter()
    train_experiment(args.config, run_dir, overrides=overrides)
    train_s = time.perf_counter() - t
    losses = {}
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("split") == "train" and "retrieval/loss" in rec:
            losses[int(rec["step"])] = round(float(rec["retrieval/loss"]), 4)

    sets = {"train": ("train", args.subset), "val": ("val", None), "test": ("test", None)}
    rows: list[dict[str, Any]] = []
    ceilings: dict[str, dict[str, float]] = {}
    for step in range(args.every, n + 1, args.every):
        _, parts = rebuild(run_dir, str(step))
        task = parts.tasks["retrieval"]
        device = next(parts.objective.parameters()).device
        row: dict[str, Any] = {"step": step, "train_loss": losses.get(step)}
        for name, (split, first) in sets.items():
            if name not in ceilings:
                ids, texts = layout(task, split, first)
                ceilings[name] = {"images": len(ids), **ceiling(folder, ids, texts, task.per_image)}
            scores = task.score_matrix(parts.model, split, device=device, first_images=first)
            m = metric_keys(retrieval_metrics(scores, task.per_image))
            row[name] = {k: round(float(m[k]), 2) for k in KEYS}
        rows.append(row)
        print(f"step {step}: " + "  ".join(f"{k} {row[k]['i2t_r1']:.1f}/{row[k]['t2i_r1']:.1f}"
                                           for k in sets), file=sys.stderr)
    result = {"config": args.config, "world": str(folder.name), "seed": args.seed, "iterations": n,
              "overrides": overrides[1:], "train_s": round(train_s, 1), "world_info": world,
              "ceiling": ceilings, "checkpoints": rows, "run": str(run_dir)}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.config} on {folder.name}, retrieval only, seed {args.seed}, {n} updates "
          f"({train_s:.0f} s training); R@1 i2t / t2i, rsum")
    print(f"{'step':>6} {'loss':>7}" + "".join(f"{k:>24}" for k in sets))
    for row in rows:
        cells = "".join(f"{row[k]['i2t_r1']:>9.1f} /{row[k]['t2i_r1']:>5.1f} ({row[k]['rsum']:>5.1f})"
                        for k in sets)
        print(f"{row['step']:>6} {row['train_loss'] if row['train_loss'] is not None else '-':>7}{cells}")
    cells = "".join(f"{c['i2t_r1']:>9.1f} /{c['t2i_r1']:>5.1f} ({c['rsum']:>5.1f})" for c in ceilings.values())
    print(f"{'truth':>6} {'':>7}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
