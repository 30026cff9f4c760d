"""`vlmt train CONFIG --out RUN [--set key=value ...] [--resume] [--print-config]`: train one
experiment. CONFIG is a YAML file or the name of a shipped config (`vlmt configs list`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXAMPLES = """\
  vlmt train tiny                                   # the shipped configs/tiny.yaml into runs/tiny
  vlmt train configs/hierarchical_world.yaml --out runs/h0 --set train.seed=0
  vlmt train runs/h0/config.yaml --out runs/h0 --resume --set train.max_iters=2000
  vlmt train svlr_world --print-config              # the resolved config, nothing trained
  torchrun --nproc_per_node 2 -m vlmt train hierarchical_world --out runs/ddp"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML, or a shipped config's name (e.g. tiny)")
    parser.add_argument("--out", default=None,
                        help="run folder (default: runs/<config name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set train.seed=3 (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    parser.add_argument("--json", action="store_true", help="print the run summary as one JSON object")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (file, overrides, defaults) as YAML and exit")


def run(args: argparse.Namespace) -> int:
    from vlmt.training.trainer import train_experiment

    if args.print_config:
        from vlmt.config import dump_yaml
        from vlmt.training.build import load_experiment

        print(dump_yaml(load_experiment(args.config, args.overrides)), end="")
        return 0
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    summary = train_experiment(args.config, out, overrides=args.overrides, resume=args.resume, show_plan=True)
    if summary.get("rank", 0) != 0:
        return 0  # under torchrun only the first process reports
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"run folder: {out}  (step {summary['step']}, best {summary['best']})", file=sys.stderr)
    return 0
