"""`vlmt data validate`: check every dataset file and feature store under a folder."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    print("vlmt data validate: not implemented yet (tracked in issue 3)", file=sys.stderr)
    return 2
