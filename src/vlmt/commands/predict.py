"""`vlmt predict MODEL --image PATH --question "..." [--top K] [--json] [--attention OUT.png]`:
answer a question about any picture with a trained model that has a VQA head, a run folder or an
exported model folder; the same path as `vlmt.load(MODEL).answer` (`vlmt.inference.predict`).
`--attention` draws the VQA head's attention over the regions on the picture.
"""

from __future__ import annotations

import argparse
import json
import sys

EXAMPLES = """\
  vlmt predict runs/tiny --image shape.png --question "what color is the square?"
  vlmt predict models/tiny --image shape.png --question "what color is it?" --json --attention att.png"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="MODEL",
                        help="run folder (`vlmt train`) or model folder (`vlmt export`) with a VQA head")
    parser.add_argument("--image", required=True, help="picture to ask about (PNG, JPEG, ...)")
    parser.add_argument("--question", required=True, help="the question, in words")
    parser.add_argument("--top", type=int, default=5, help="how many answers to list (default 5)")
    parser.add_argument("--checkpoint", default="best", metavar="best|last|STEP",
                        help="which checkpoint of a run: best (default; a run without validation uses last), "
                             "last, or a kept step number")
    parser.add_argument("--attention", metavar="OUT.png", default=None,
                        help="also draw the VQA decoder's attention over the regions into this PNG")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run(args: argparse.Namespace) -> int:
    from vlmt.inference.predict import answer

    result = answer(args.run_dir, args.image, args.question, top=args.top, checkpoint=args.checkpoint)
    if args.attention is not None:
        from vlmt.pictures import attention_figure

        caption = "A: " + ", ".join(f"{a['answer']} {a['score']:.2f}" for a in result["answers"][:3])
        attention_figure(args.attention, image=result["pixels"], boxes=result["boxes"],
                         region_weights=result["region_weights"], words=result["words"],
                         word_weights=result["word_weights"], title=f"Q: {args.question}", caption=caption)
        print(f"attention picture: {args.attention}", file=sys.stderr)
        result["attention_png"] = str(args.attention)
    print(f"Q: {result['question']}", file=sys.stderr)
    for a in result["answers"]:
        print(f"  {a['answer']:<16} {a['score']:.3f}", file=sys.stderr)
    if result["unknown_words"]:
        print(f"(words the model never saw in training: {', '.join(result['unknown_words'])})", file=sys.stderr)
    if args.json:
        arrays = ("pixels", "boxes", "region_weights", "word_weights")
        print(json.dumps({k: v for k, v in result.items() if k not in arrays}))
    return 0
