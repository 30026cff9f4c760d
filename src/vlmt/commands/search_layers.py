"""`vlmt search-layers CONFIG --task TASK --out DIR`: the single-task grid search of the
hierarchical paper (Sec. 4.2) over the decoder layer (and batch size, #step, #iter), ranked by the
validation metric. Running the same command again reuses finished cells and resumes interrupted
ones; the table is OUT/layer_search.md (+ .json)."""

from __future__ import annotations

import argparse
import json
import sys

EXAMPLES = """\
  vlmt search-layers tiny --task vqa --out search/vqa
  vlmt search-layers hierarchical_world --task grounding --layers 1,2,3 --seeds 2 --out search/vg"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML (e.g. configs/tiny.yaml); only TASK is kept")
    parser.add_argument("--task", required=True, help="name of the task (a key of the config's tasks section)")
    parser.add_argument("--out", required=True, help="output folder: table + runs/ (reused when run again)")
    parser.add_argument("--layers", default=None, metavar="L1,L2,..",
                        help="decoder layers to try, 0 being the input encoders "
                             "(default: every co-attention layer 1..L)")
    parser.add_argument("--batch-sizes", default=None, metavar="B1,B2,..",
                        help="batch sizes to try (default: the config's)")
    parser.add_argument("--steps", default=None, metavar="S1,S2,..",
                        help="#step values (learning-rate halving period) to try (default: the config's)")
    parser.add_argument("--iterations", default=None, metavar="N1,N2,..",
                        help="#iter values (training length) to try (default: the config's)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per setting (default 1)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value before the grid is applied (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the result table as one JSON object")


def run(args: argparse.Namespace) -> int:
    import os

    from vlmt.experiments.layer_search import TABLE_MD, parse_int_list, search_layers

    # under torchrun every process runs the grid together; only the first one reports
    first = os.environ.get("RANK", "0") == "0"

    def say(msg: str) -> None:
        if first:
            print(msg, file=sys.stderr)

    table = search_layers(
        args.config, task=args.task, out=args.out,
        layers=parse_int_list(args.layers, option="--layers", minimum=0),
        batch_sizes=parse_int_list(args.batch_sizes, option="--batch-sizes"),
        steps=parse_int_list(args.steps, option="--steps"),
        iterations=parse_int_list(args.iterations, option="--iterations"),
        seeds=args.seeds, overrides=args.overrides,
        progress=say)
    if args.json and first:
        print(json.dumps(table))
    else:
        say(f"table: {args.out}/{TABLE_MD}")
    return 0
