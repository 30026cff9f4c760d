"""`vlmt data synth`: write the synthetic world in the official formats."""

from __future__ import annotations

import argparse
import json
import sys
import time

EXAMPLES = """\
  vlmt data synth --size tiny --out worlds/tiny
  vlmt data synth --size default --seed 1 --out worlds/default-1 --json
  vlmt data synth --size default-test1000 --out worlds/default-test1000
  vlmt data synth --size default --proposals oracle --out worlds/default-oracle"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", default="default",
                        help="tiny: for tests (seconds); default: for the demo (about a minute); "
                             "train2240: default with 4x its training pictures; "
                             "captions20: default with 20 captions per training picture; "
                             "detector1200: default with its detector trained 3x longer (tighter boxes); "
                             "sharp: default with its detector trained 6x longer and square region crops; "
                             "<size>-test<N>: that size with N test images (e.g. default-test1000)")
    parser.add_argument("--out", required=True, help="output folder (empty, or a partial world to resume)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files")
    parser.add_argument("--proposals", choices=("detector", "oracle"), default=None,
                        help="how the feature store's regions are found: detector (boxes a detector trained on "
                             "the Genome-like split finds in the pixels) or oracle (true boxes, jittered copies "
                             "and random boxes; an ablation only). Default: detector")
    parser.add_argument("--json", action="store_true", help="print the manifest as one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    from vlmt.data.synth.world import generate

    start = time.perf_counter()
    manifest = generate(args.size, args.out, seed=args.seed, proposals=args.proposals,
                        progress=lambda msg: print(f"[{time.perf_counter() - start:6.1f}s] {msg}", file=sys.stderr))
    if args.json:
        print(json.dumps(manifest))
    print(f"synthetic world ({args.size}, seed {args.seed}) written to {args.out} in "
          f"{time.perf_counter() - start:.1f}s", file=sys.stderr)
    return 0
