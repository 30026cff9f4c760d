"""`vlmt train CONFIG --out RUN [--set key=value ...] [--resume]`: train one experiment."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML (e.g. configs/sanity.yaml)")
    parser.add_argument("--out", default=None,
                        help="run folder (default: runs/<config name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set train.seed=3 (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    parser.add_argument("--json", action="store_true", help="print the run summary as one JSON object")


def run(args: argparse.Namespace) -> int:
    from vlmt.training.trainer import train_experiment

    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    summary = train_experiment(args.config, out, overrides=args.overrides, resume=args.resume)
    if summary.get("rank", 0) != 0:
        return 0  # under torchrun only the first process reports
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"run folder: {out}  (step {summary['step']}, best {summary['best']})", file=sys.stderr)
    return 0
