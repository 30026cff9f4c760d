"""`vlmt visualize RUN [--split val] [--count N] --out DIR`: attention pictures of a run.

Hierarchical runs: Fig. 2-like pictures (grounding top-1 region per noun phrase; retrieval and VQA
decoders' attention over regions on the image and over words as coloured text). SVLR runs: the
Fig. 4 picture. PNG files plus DIR/index.html (see `vlmt.reports.visualize`).
"""

from __future__ import annotations

import argparse
import json
import sys

EXAMPLES = """\
  vlmt visualize runs/tiny --out pictures/tiny
  vlmt visualize runs/svlr --split test --count 8 --out pictures/svlr"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run folder written by `vlmt train` (or `vlmt demo`'s runs/<name>)")
    parser.add_argument("--split", default="val", choices=["train", "val", "test"],
                        help="split to draw examples from (default val)")
    parser.add_argument("--count", type=int, default=3, help="examples per kind of picture (default 3)")
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"],
                        help="which checkpoint to draw (default best; a run without one uses last)")
    parser.add_argument("--out", required=True, help="folder for the PNG files and index.html")
    parser.add_argument("--json", action="store_true", help="print {\"pictures\": [{path, caption}]} on stdout")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vlmt.errors import ConfigError
    from vlmt.reports.visualize import visualize_run

    if not (Path(args.run) / "checkpoints").is_dir():
        raise ConfigError(f"{args.run}: not a run folder (no checkpoints/); train one with `vlmt train`")
    pictures = visualize_run(args.run, args.out, split=args.split, count=args.count, checkpoint=args.checkpoint,
                             say=lambda msg: print(msg.strip(), file=sys.stderr))
    if args.json:
        print(json.dumps({"pictures": [{"path": str(p.path), "caption": p.caption} for p in pictures],
                          "index": str(Path(args.out) / "index.html")}))
    else:
        print(f"{len(pictures)} pictures: {Path(args.out) / 'index.html'}", file=sys.stderr)
    return 0
