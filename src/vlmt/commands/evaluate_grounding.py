"""`vlmt evaluate grounding`: phrase grounding Recall@1/5/10 (Flickr30k Entities protocol) from
ranked boxes per phrase. The predictions format is described in `vlmt.metrics.grounding`
and docs/metrics.md."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXAMPLES = """\
  vlmt evaluate grounding --predictions ranked.json --annotations flickr30k_entities --split test
  vlmt evaluate grounding --predictions ranked.json --annotations flickr30k_entities --images ids.txt --json"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--predictions", required=True, metavar="P.json",
                        help='ranked boxes per phrase: {"<image_id>": {"<sentence_index>": '
                             '{"<entity_id>": [[x1, y1, x2, y2], ...]}}}')
    parser.add_argument("--annotations", required=True, metavar="DIR",
                        help="Flickr30k Entities folder holding Sentences/ and Annotations/")
    images = parser.add_mutually_exclusive_group()
    images.add_argument("--images", metavar="LIST.txt",
                        help="image ids to evaluate, one per line; every one must be predicted. "
                             "Default: the images in the predictions")
    images.add_argument("--split", choices=["train", "val", "test"],
                        help="evaluate the release split listed in DIR/<split>.txt; every image "
                             "must be predicted")
    parser.add_argument("--any-box", action="store_true",
                        help="count a hit on any one of an entity's boxes instead of their union "
                             "(not the Flickr30k Entities protocol)")
    parser.add_argument("--inclusive-pixels", action="store_true",
                        help="treat box corners as inclusive integer pixels (area (x2-x1+1)(y2-y1+1)) "
                             "instead of continuous coordinates")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    from vlmt.metrics.grounding import evaluate_grounding_files

    image_list = Path(args.images) if args.images else None
    metrics, image_ids = evaluate_grounding_files(args.predictions, args.annotations, image_list=image_list,
                                                  split=args.split, any_box=args.any_box,
                                                  inclusive_pixels=args.inclusive_pixels)
    out = metrics.to_json()
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['phrases']} phrases in {len(image_ids)} images"
          + (" [any-box protocol]" if args.any_box else ""), file=sys.stderr)
    print(f"R@1 {out['r1']:.2f}  R@5 {out['r5']:.2f}  R@10 {out['r10']:.2f}", file=sys.stderr)
    for name, m in out["perPhraseType"].items():
        print(f"  {name:<12} R@1 {m['r1']:.2f}  R@5 {m['r5']:.2f}  R@10 {m['r10']:.2f}  ({m['phrases']})",
              file=sys.stderr)
    return 0
