"""The questions an easy-VQA run still gets wrong on a split: each with its image, the true and
predicted answers and the image's foreground box (the shape's size), grouped by question template
and by image, so one can see whether the errors are a kind of question or a kind of picture.

    PYTHONPATH=src python benchmarks/easy_vqa_errors.py RUN [--split test] [--pictures DIR]

`--pictures DIR` also writes each failing image enlarged with its question, for looking at.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

import torch

from vlmt.errors import reports_errors

WORDS = ("circle", "rectangle", "triangle", "green", "red", "gray", "teal", "black", "yellow", "brown", "blue")


def template(question: str) -> str:
    """The question with its shape and colour words replaced by X."""
    return re.sub(r"\b(" + "|".join(WORDS) + r")\b", "X", question.lower())


@reports_errors
def main(argv: list[str] | None = None) -> None:
    from vlmt.data.features.proposals import foreground_box, load_image
    from vlmt.training.build import rebuild

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--pictures", default=None)
    args = parser.parse_args(argv)
    _, parts = rebuild(args.run_dir, "best", device="cpu")
    torch.set_num_threads(1)
    task = next(t for t in parts.tasks.values() if getattr(t, "kind", "") == "vqa")
    predictions = task.predict(parts.model, args.split, device=torch.device("cpu"))
    examples = task.data.vqa_split(args.split).examples
    failures = []
    for e in examples:
        if predictions[e.question_id] != e.answers[0]:
            path = task.data.image_path(e.image_id, "vqa")
            image = load_image(path)
            x1, y1, x2, y2 = foreground_box(image)
            failures.append({"question_id": e.question_id, "image_id": e.image_id, "question": e.question,
                             "answer": e.answers[0], "predicted": predictions[e.question_id],
                             "foreground_box": [x1, y1, x2, y2], "foreground_side": max(x2 - x1, y2 - y1),
                             "image": str(path)})
    all_templates = Counter(template(e.question) for e in examples)
    failed_templates = Counter(template(f["question"]) for f in failures)
    if args.pictures:
        from PIL import Image, ImageDraw

        out = Path(args.pictures)
        out.mkdir(parents=True, exist_ok=True)
        for f in failures:
            with Image.open(f["image"]) as im:
                big = im.convert("RGB").resize((256, 256), Image.NEAREST)
            canvas = Image.new("RGB", (256, 290), "white")
            canvas.paste(big, (0, 0))
            draw = ImageDraw.Draw(canvas)
            draw.text((4, 260), f"{f['question']}", fill="black")
            draw.text((4, 274), f"true {f['answer']}  predicted {f['predicted']}", fill="black")
            canvas.save(out / f"q{f['question_id']}.png")
    print(json.dumps({
        "split": args.split, "questions": len(examples), "wrong": len(failures),
        "accuracy": round(100 * (1 - len(failures) / max(1, len(examples))), 2),
        "wrong_by_template": {t: f"{n}/{all_templates[t]}" for t, n in failed_templates.most_common()},
        "images_with_errors": len({f["image_id"] for f in failures}),
        "wrong_by_true_answer": dict(Counter(f["answer"] for f in failures).most_common()),
        "failures": failures,
    }, indent=1))


if __name__ == "__main__":
    sys.exit(main())
