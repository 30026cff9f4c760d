"""`vlmt data validate DIR`: check every dataset file and feature store under a folder.

Exit 1 with one line per problem (file, record, field), or 0 with a one-line summary per dataset.
"""

from __future__ import annotations

import argparse
import json
import sys

from vlmt.data.validate import validate_dir

EXAMPLES = """\
  vlmt data validate worlds/tiny
  vlmt data validate data/coco --json"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="folder holding dataset files and/or feature stores (searched recursively)")
    parser.add_argument("--genome-id-offset", type=int, default=0, metavar="N",
                        help="Visual Genome image i has its region features under id i + N in the store "
                             "(data.datasets.genome.id_offset; Genome's ids collide with COCO's without one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with problems and summaries")


def run(args: argparse.Namespace) -> int:
    report = validate_dir(args.dir, genome_id_offset=args.genome_id_offset)
    for line in report.problems:
        print(line, file=sys.stderr)
    if report.ok:
        for line in report.summaries:
            print(line, file=sys.stderr)
        if report.unrecognised:
            print(f"({len(report.unrecognised)} other file(s) not recognised as dataset files, not checked)",
                  file=sys.stderr)
    else:
        print(f"{len(report.problems)} problem(s) found", file=sys.stderr)
    if args.json:
        print(json.dumps({"ok": report.ok, "problems": report.problems, "summaries": report.summaries,
                          "unrecognised": [str(p) for p in report.unrecognised]}))
    return 0 if report.ok else 1
