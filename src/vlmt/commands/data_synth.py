"""`vlmt data synth`: write the synthetic world in the official formats."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    print("vlmt data synth: not implemented yet (tracked in issue 4)", file=sys.stderr)
    return 2
