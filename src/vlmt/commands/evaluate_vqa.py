"""`vlmt evaluate vqa`: official VQA accuracy."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    print("vlmt evaluate vqa: not implemented yet (tracked in issue 5)", file=sys.stderr)
    return 2
