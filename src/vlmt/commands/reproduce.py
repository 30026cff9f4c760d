"""`vlmt reproduce hierarchical|svlr|composed [--seeds N] [--size S] --out DIR`: a paper's experiment
grid on the synthetic world (or `composed`: both papers on one encoder), written as a report with
mean and spread per cell."""

from __future__ import annotations

import argparse
import importlib

# paper -> module under vlmt.experiments with `run_grid(out, *, seeds, size, progress) -> dict`
GRIDS = {
    "hierarchical": "vlmt.experiments.reproduce_hierarchical",
    "svlr": "vlmt.experiments.reproduce_svlr",
    "composed": "vlmt.experiments.reproduce_composed",
}

EXAMPLES = """\
  vlmt reproduce hierarchical --size tiny --seeds 1 --out reports/h-tiny
  vlmt reproduce hierarchical --rows procedures --out reports/h-curriculum   # the paper's curriculum
  vlmt reproduce svlr --seeds 3 --out reports/svlr      # Table 1 on the default world
  vlmt reproduce composed --seeds 3 --workers 2 --out reports/composed"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paper", choices=sorted(GRIDS), help="which paper's experiments to run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per cell (default 3)")
    parser.add_argument("--size", default="default", choices=["tiny", "default"],
                        help="synthetic world size (default: default)")
    parser.add_argument("--out", required=True, help="output folder for runs and the report")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one value of the grid's config in every run, e.g. "
                             "--set train.max_iters=50 (repeatable)")
    parser.add_argument("--workers", type=int, default=None,
                        help="runs trained at once, one process each (composed only; default 2)")
    parser.add_argument("--rows", default=None, choices=["all", "table1", "procedures"],
                        help="hierarchical only: Table 1's combinations, the all-three rows by training "
                             "procedure (periodic / curriculum x shared / per-task Adam), or both (default)")
    parser.add_argument("--json", action="store_true", help="print the result table as one JSON object")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from vlmt.errors import ConfigError

    if args.seeds < 1:
        raise ConfigError(f"--seeds: must be >= 1, got {args.seeds}")
    module = importlib.import_module(GRIDS[args.paper])
    extra: dict = {"overrides": args.overrides} if args.overrides else {}  # only grids that take them
    if args.workers is not None:
        if args.paper != "composed" or args.workers < 1:
            raise ConfigError("--workers: a positive number, for `reproduce composed` only")
        extra["workers"] = args.workers
    if args.rows is not None:
        if args.paper != "hierarchical":
            raise ConfigError("--rows: for `reproduce hierarchical` only")
        extra["rows"] = args.rows
    result = module.run_grid(args.out, seeds=args.seeds, size=args.size,
                             progress=lambda msg: print(msg, file=sys.stderr), **extra)
    if args.json:
        print(json.dumps(result))
    return 0
