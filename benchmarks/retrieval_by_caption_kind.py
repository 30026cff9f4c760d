"""Which world captions does a trained model fail to find the picture for? Caption -> image
Recall@K of a run on a world split, by what each caption asks of a picture, beside the truth
oracle's on the same captions.

The world's captions come in three kinds (`vlmt.tasks.retrieval_ceiling.caption_kind`): a
relation ("A heart is to the right of a hexagon."), a count ("There are four shapes on a gray
background.") or a list of objects ("A heart, a square and an oval."). The truth oracle (generated
reading, expected over tie orders) says how far each kind can be told apart by what is in the
picture, and the objects-only oracle (the same captions with their counts and relations ignored)
how far by which objects are there alone; the model's R@K per kind (official metric) says where
it falls short:

    PYTHONPATH=src python benchmarks/retrieval_by_caption_kind.py --run RUN [--run RUN2 ...] \\
        [--split test] [--checkpoint last] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmt.data.synth.world import WorldSize, build
from vlmt.errors import DataError, reports_errors
from vlmt.tasks.retrieval_ceiling import CAPTION_KINDS, caption_claims, caption_hits, caption_kind, oracle_scores
from vlmt.training.build import rebuild

KS = (1, 5, 10)


def world_of(folder: Path) -> Any:
    """The world a generated folder holds, rebuilt from its size and seed."""
    path = folder / "world.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        spec = WorldSize(**{k: tuple(v) if isinstance(v, list) else v for k, v in manifest["spec"].items()})
        return build(spec, int(manifest["seed"]))
    except OSError as e:
        raise DataError(path, f"cannot be read ({e.strerror or e}); is the run trained on a synthetic world?") from None
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(path, f"is not a world manifest ({e})", field="spec / seed") from None


def by_kind(run: Path, split: str, which: str) -> dict[str, Any]:
    """Per caption kind: captions, the model's and the oracle's t2i R@1 / 5 / 10 (percent)."""
    _, parts = rebuild(run, which)
    task = parts.tasks.get("retrieval")
    if task is None:
        raise DataError(run / "config.yaml", "has no retrieval task", field="tasks")
    folder = Path(task.data.root)
    images, _ = task.eval_layout(split)
    world = world_of(folder)
    kept = [c for im in images for c in world.captions[im.image_id][:task.per_image]]
    texts = [c for im in images for c in im.captions[:task.per_image]]
    if [c.text for c in kept] != texts:
        raise DataError(folder / "world.json", "its size and seed do not rebuild the captions the run scores")
    claims = [caption_claims(c) for c in kept]
    kinds = np.array([caption_kind(c) for c in claims])
    scenes = [world.scenes[im.image_id] for im in images]
    truth = oracle_scores(scenes, claims)
    # a scorer that sees which objects are there but neither counts nor places them
    blind = oracle_scores(scenes, [replace(c, counts=(), relations=()) for c in claims])
    device = next(parts.objective.parameters()).device
    with torch.no_grad():
        scores = task.score_matrix(parts.model, split, device=device)
    hits = {f"{who}_r{k}": caption_hits(matrix, task.per_image, k, expected=who != "model")
            for k in KS for who, matrix in (("model", scores), ("oracle", truth), ("objects_oracle", blind))}
    out: dict[str, Any] = {"run": str(run), "split": split, "checkpoint": which, "images": len(images),
                           "kinds": {}}
    for kind in (*CAPTION_KINDS, "all"):
        sel = np.ones(len(kinds), dtype=bool) if kind == "all" else kinds == kind
        row: dict[str, Any] = {"captions": int(sel.sum())}
        row.update({key: round(100 * float(h[sel].mean()), 2) for key, h in sorted(hits.items())})
        out["kinds"][kind] = row
    return out


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, help="a run folder trained on a synthetic world")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--checkpoint", default="last", help="last, best, or a step (default: last)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    rows = [by_kind(Path(run), args.split, args.checkpoint) for run in args.run]
    mean: dict[str, dict[str, float]] = {}
    for kind in rows[0]["kinds"]:
        keys = rows[0]["kinds"][kind]
        mean[kind] = {key: round(statistics.mean(r["kinds"][kind][key] for r in rows), 2) for key in keys}
    if args.json:
        print(json.dumps({"runs": rows, "mean": mean}))
        return 0
    print(f"caption -> image R@1 / R@5 / R@10 by caption kind, {args.split} split, mean of {len(rows)} run(s)")
    print(f"{'kind':<10} {'captions':>8} {'model':>20} {'truth oracle':>20} {'objects-only oracle':>20} "
          f"{'model / oracle R@1':>19}")
    for kind, r in mean.items():
        cells = [" / ".join(f"{r[f'{who}_r{k}']:.1f}" for k in KS) for who in ("model", "oracle", "objects_oracle")]
        share = f"{100 * r['model_r1'] / r['oracle_r1']:.0f} %" if r["oracle_r1"] else "-"
        print(f"{kind:<10} {r['captions']:>8.0f} {cells[0]:>20} {cells[1]:>20} {cells[2]:>20} {share:>19}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
