"""`vlmt configs show NAME [--resolved]`: print one shipped experiment config.

Without `--resolved` it is the file as shipped, comments included (a starting point for your own);
with it, the validated config with every default filled in.
"""

from __future__ import annotations

import argparse

EXAMPLES = """\
  vlmt configs show tiny
  vlmt configs show tiny --resolved
  vlmt configs show tiny > mine.yaml && vlmt train mine.yaml --set train.seed=1"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="a shipped config's name (see `vlmt configs list`), or a file")
    parser.add_argument("--resolved", action="store_true",
                        help="print the validated config with every default filled in, instead of the file")


def run(args: argparse.Namespace) -> int:
    from vlmt.config import config_path, dump_yaml
    from vlmt.training.build import load_experiment

    path = config_path(args.name)
    if args.resolved:
        print(dump_yaml(load_experiment(path)), end="")
    else:
        print(path.read_text(encoding="utf-8"), end="")
    return 0
