"""`vlmt visualize`: attention pictures of a run."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    print("vlmt visualize: not implemented yet (tracked in issue 8)", file=sys.stderr)
    return 2
