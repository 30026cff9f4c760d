"""`vlmt evaluate grounding`: phrase grounding Recall@1/5/10 (Flickr30k Entities protocol) from
ranked boxes per phrase. The predictions format is described in `vlmt.metrics.grounding`
and docs/metrics.md."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vlmt.data.examples import GroundedSentence
from vlmt.errors import DataError
from vlmt.metrics.grounding import grounding_recall, read_grounding_predictions


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


def _image_list(path: Path) -> list[int]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    ids = []
    for i, line in enumerate(lines):
        if line.strip():
            try:
                ids.append(int(line.strip()))
            except ValueError:
                raise DataError(path, f"{line.strip()!r} is not an image id", record=f"line {i + 1}") from None
    return ids


def read_sentences(root: Path, image_ids: list[int]) -> list[GroundedSentence]:
    """The Flickr30k Entities sentences (with their phrases and boxes) of `image_ids`."""
    from vlmt.data.readers.flickr30k_entities import read_image

    sentences: list[GroundedSentence] = []
    for image_id in image_ids:
        sentences.extend(read_image(root, image_id))
    return sentences


def run(args: argparse.Namespace) -> int:
    root = Path(args.annotations)
    if not (root / "Sentences").is_dir() or not (root / "Annotations").is_dir():
        raise DataError(root, "not a Flickr30k Entities folder (needs Sentences/ and Annotations/)")
    predictions = read_grounding_predictions(args.predictions)
    predicted_images = sorted({k[0] for k in predictions})
    if args.images or args.split:
        if args.split:
            from vlmt.data.readers.flickr30k_entities import read_split

            image_ids = read_split(root, args.split)
        else:
            image_ids = _image_list(Path(args.images))
        missing = [i for i in image_ids if i not in set(predicted_images)]
        if missing:
            raise DataError(args.predictions, f"no predictions for {len(missing)} listed image(s), "
                            f"first {missing[0]}", record=f"image {missing[0]}")
    else:
        image_ids = predicted_images
    sentences = read_sentences(root, image_ids)
    known = {(s.image_id, s.sentence_index) for s in sentences}
    for key in predictions:
        if key[0] in set(image_ids) and (key[0], key[1]) not in known:
            raise DataError(args.predictions, "no such sentence in the annotations",
                            record=f"image {key[0]} sentence {key[1]}")
    metrics = grounding_recall(sentences, predictions, any_box=args.any_box,
                               pixel_offset=1.0 if args.inclusive_pixels else 0.0,
                               predictions_path=args.predictions)
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
