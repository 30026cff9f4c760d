"""`vlmt predict MODEL --image PATH --question "..." [--top K] [--json] [--attention OUT.png]`:
answer a question about any picture with a trained model that has a VQA head, a run folder or an
exported model folder; the same path as `vlmt.load(MODEL).answer` (`vlmt.inference.predict`).
`--attention` draws the VQA head's attention over the regions on the picture.

Many at once: `--images FOLDER` (every picture, each `--question`) or `--input REQUESTS.jsonl`
(one `{"image": PATH, "question": ...}` per line) answered in batches into `--out ANSWERS.jsonl`,
with a progress bar. A model trained on precomputed region features takes `--image-id N` (or
`image_id` records) with `--store FEATURE_STORE` or `--tsv BOTTOM_UP.tsv`.
"""

from __future__ import annotations

import argparse
import json
import sys

EXAMPLES = """\
  vlmt predict runs/tiny --image shape.png --question "what color is the square?"
  vlmt predict models/tiny --image shape.png --question "what color is it?" --json --attention att.png
  vlmt predict models/tiny --images pictures/ --question "what color?" --question "how many?" --out answers.jsonl
  vlmt predict models/tiny --input requests.jsonl --out answers.jsonl
  vlmt predict models/bottom_up --image-id 42 --store features/ --question "what is on the table?\""""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="MODEL",
                        help="run folder (`vlmt train`) or model folder (`vlmt export`) with a VQA head")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="picture to ask about (PNG, JPEG, ...)")
    source.add_argument("--image-id", type=int, metavar="N",
                        help="instead of a picture: the image id of precomputed regions in --store or --tsv")
    source.add_argument("--images", metavar="FOLDER",
                        help="every picture of this folder (PNG, JPEG, WebP, BMP, GIF), each --question; needs --out")
    source.add_argument("--input", metavar="REQUESTS.jsonl",
                        help='one JSON object per line: {"image": PATH (relative to the file) or "image_id": N, '
                             '"question": "...", "id": optional}; needs --out')
    parser.add_argument("--question", action="append", default=None,
                        help="the question, in words (repeat it with --images for several)")
    parser.add_argument("--out", metavar="ANSWERS.jsonl", default=None,
                        help="with --images or --input: the answers, one JSON object per line, in the requests' order")
    parser.add_argument("--store", metavar="FOLDER", default=None,
                        help="a feature store (`vlmt data convert`) holding the regions of --image-id / image_id")
    parser.add_argument("--tsv", metavar="FILE", default=None,
                        help="a bottom-up TSV file (image_id, image_w, image_h, num_boxes, boxes, features) holding "
                             "the regions of --image-id / image_id")
    parser.add_argument("--top", type=int, default=5, help="how many answers to list (default 5)")
    parser.add_argument("--batch-size", type=int, default=32, help="(picture, question) pairs per pass (default 32)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--checkpoint", default="best", metavar="best|last|STEP",
                        help="which checkpoint of a run: best (default; a run without validation uses last), "
                             "last, or a kept step number")
    parser.add_argument("--attention", metavar="OUT.png", default=None,
                        help="also draw the VQA decoder's attention over the regions into this PNG")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run(args: argparse.Namespace) -> int:
    from vlmt.errors import ConfigError
    from vlmt.inference import predict

    if args.top < 1 or args.batch_size < 1:
        raise ConfigError("--top and --batch-size: give a whole number >= 1")
    if args.images is not None or args.input is not None:
        if args.out is None:
            raise ConfigError(f"{'--images' if args.images else '--input'} writes its answers to a JSONL file: "
                              f"give --out ANSWERS.jsonl")
        if args.input is not None and args.question:
            raise ConfigError("--input: the questions are in its records; leave --question out")
        if args.images is not None and not args.question:
            raise ConfigError("--images: give the question(s) to ask of every picture with --question")
        requests = (predict.folder_requests(args.images, args.question) if args.images is not None
                    else predict.jsonl_requests(args.input))
        summary = predict.answer_file(args.run_dir, requests, args.out, top=args.top, checkpoint=args.checkpoint,
                                      store=args.store, tsv=args.tsv, batch_size=args.batch_size,
                                      progress=not args.no_progress)
        print(f"{summary['requests']} answers ({summary['pictures']} pictures) -> {summary['out']}", file=sys.stderr)
        return 0
    if not args.question or len(args.question) > 1:
        raise ConfigError("--question: give one question (several: --images FOLDER or --input REQUESTS.jsonl)")
    question = args.question[0]
    result = predict.answer(args.run_dir, args.image, question, top=args.top, checkpoint=args.checkpoint,
                            store=args.store, tsv=args.tsv, image_id=args.image_id)
    if args.attention is not None:
        from vlmt.pictures import attention_figure

        if result["pixels"] is None:
            raise ConfigError("--attention draws on the picture: give --image, not --image-id")
        caption = "A: " + ", ".join(f"{a['answer']} {a['score']:.2f}" for a in result["answers"][:3])
        attention_figure(args.attention, image=result["pixels"], boxes=result["boxes"],
                         region_weights=result["region_weights"], words=result["words"],
                         word_weights=result["word_weights"], title=f"Q: {question}", caption=caption)
        print(f"attention picture: {args.attention}", file=sys.stderr)
        result["attention_png"] = str(args.attention)
    print(f"Q: {result['question']}", file=sys.stderr)
    for a in result["answers"]:
        print(f"  {a['answer']:<16} {a['score']:.3f}", file=sys.stderr)
    for warning in result["warnings"]:
        print(f"(warning: {warning})", file=sys.stderr)
    if args.json:
        arrays = ("pixels", "boxes", "region_weights", "word_weights")
        print(json.dumps({k: v for k, v in result.items() if k not in arrays and v is not None}))
    return 0
