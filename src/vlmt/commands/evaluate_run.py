"""`vlmt evaluate run`: evaluate a run folder."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    print("vlmt evaluate run: not implemented yet (tracked in issue 6)", file=sys.stderr)
    return 2
