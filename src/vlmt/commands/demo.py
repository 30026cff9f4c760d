"""`vlmt demo [--out DIR] [--size tiny|default|sharp]`: the main job on the synthetic world.

Synthesises (or reuses) the world, trains the hierarchical model and SVLR (joint and zero-shot),
evaluates everything on the test split and writes DIR/report.json, report.md and report.html
with tables, training curves and attention pictures (see `vlmt.experiments.demo`).
"""

from __future__ import annotations

import argparse
import json

EXAMPLES = """\
  vlmt demo                             # the default world: both papers, about 3 minutes on 2 cores
  vlmt demo --size tiny --out runs/demo-tiny
  vlmt demo --size sharp --out runs/demo-sharp   # the same runs on sharper detector regions
  vlmt demo --seed 1 --pictures 0 --json"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    parser.add_argument("--size", default="default", choices=["tiny", "default", "sharp"],
                        help="synthetic world size: default (the demo, a few minutes), tiny (seconds), or "
                             "sharp (default's pictures with sharper detector regions; its first world takes "
                             "about 5 minutes more)")
    parser.add_argument("--seed", type=int, default=0, help="world and training seed (default 0)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: the configs' own setting)")
    parser.add_argument("--workers", type=int, default=None,
                        help="systems trained at once, one process each (default: 2 for --size default and sharp, "
                             "1 for tiny, where starting processes costs more than it saves)")
    parser.add_argument("--pictures", type=int, default=2,
                        help="examples per decoder to draw attention pictures for (default 2; 0: none)")
    parser.add_argument("--json", action="store_true", help="print report.json's object on stdout")


def run(args: argparse.Namespace) -> int:
    from vlmt.errors import ConfigError
    from vlmt.experiments.demo import run_demo

    if args.pictures < 0:
        raise ConfigError(f"--pictures: must be >= 0, got {args.pictures}")
    workers = args.workers if args.workers is not None else (1 if args.size == "tiny" else 2)
    report = run_demo(args.out, size=args.size, seed=args.seed, threads=args.threads, workers=workers,
                      pictures=args.pictures)
    if args.json:
        print(json.dumps(report))
    return 0
