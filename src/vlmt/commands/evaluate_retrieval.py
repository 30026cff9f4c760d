"""`vlmt evaluate retrieval`: Recall@K, medr and meanr (VSE++ definitions) from a score matrix."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from vlmt.errors import DataError
from vlmt.metrics.retrieval import fold_metrics

EXAMPLES = """\
  vlmt evaluate retrieval --scores scores.npy --captions-per-image 5
  vlmt evaluate retrieval --scores coco5k.npy --folds 5 --json      # COCO 1K: the mean of 5 folds"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scores", required=True, metavar="S.npy",
                        help="images x captions score matrix (.npy); caption j belongs to image "
                             "j // captions-per-image; higher = more relevant")
    parser.add_argument("--captions-per-image", type=int, default=5, metavar="C")
    parser.add_argument("--folds", type=int, default=1, metavar="K",
                        help="average every metric over K consecutive folds (COCO 1K: 5 on the 5K matrix)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _load(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (ValueError, OSError) as e:
        raise DataError(path, f"not a readable .npy array ({e})") from None


def run(args: argparse.Namespace) -> int:
    path = Path(args.scores)
    scores = _load(path)
    try:
        metrics = fold_metrics(np.asarray(scores), args.captions_per_image, args.folds)
    except ValueError as e:
        raise DataError(path, str(e)) from None
    out = metrics.to_json()
    if args.json:
        print(json.dumps(out))
        return 0
    fold_text = f", mean of {args.folds} folds" if args.folds > 1 else ""
    print(f"{scores.shape[0]} images x {scores.shape[1]} captions{fold_text}", file=sys.stderr)
    for side, name in (("i2t", "Image to text"), ("t2i", "Text to image")):
        m = out[side]
        print(f"{name}: R@1 {m['r1']:.1f}  R@5 {m['r5']:.1f}  R@10 {m['r10']:.1f}  "
              f"medr {m['medr']:.1f}  meanr {m['meanr']:.1f}", file=sys.stderr)
    print(f"rsum: {out['rsum']:.1f}", file=sys.stderr)
    return 0
