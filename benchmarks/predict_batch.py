"""Batched answers against one call per (picture, question), in one process, on one model.

    PYTHONPATH=src python benchmarks/predict_batch.py [MODEL] [--repeats 5] [--threads 1] [--json OUT]

Without MODEL it trains and exports the shipped `tiny` config first (90 iterations, seed 0). The
pictures are the model's gallery (the tiny world's 128 x 128 test pictures), uploaded as files:
their regions are found from the pixels (pixel proposals and the region CNN), as for any new
picture. Each shape is timed both ways in the same run, alternating, `--repeats` times; the table
gives the medians and their ratio (one call each / batched), so it reads the same on any machine:

- Python: `model.answer(picture, question)` for every pair, against `model.answer(pictures,
  questions)` (every question of every picture) or `model.details_many("answer", pairs)` (a
  JSONL's pairs: `vlmt predict --input`);
- HTTP (in process, no network): one `POST /api/answer` per pair against one request with the
  pictures and questions repeated.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from vlmt.cli import at_least
from vlmt.errors import reports_errors

ROOT = Path(__file__).resolve().parents[1]


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(one: Callable[[], Any], batched: Callable[[], Any], repeats: int) -> dict[str, float]:
    one(), batched()  # warm-up
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(one))
        b.append(timed(batched))
    return {"one_by_one_s": statistics.median(a), "batched_s": statistics.median(b),
            "ratio": statistics.median(a) / statistics.median(b)}


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="a model folder with a VQA head (default: train tiny)")
    parser.add_argument("--repeats", type=at_least(1), default=5)
    parser.add_argument("--threads", type=at_least(1), default=1)
    parser.add_argument("--json", default=None, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    import vlmt
    from vlmt.cli import main as cli
    from vlmt.config import from_dict
    from vlmt.serve.gallery import find_gallery

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="vlmt-predict-batch-"))
    model_dir = Path(args.model) if args.model else tmp / "model"
    if not args.model:
        assert cli(["train", "tiny", "--out", str(tmp / "run"), "--set", "train.max_iters=90",
                    "--set", "train.progress=false"]) == 0
        assert cli(["export", str(tmp / "run"), "--out", str(model_dir), "--metrics", "none"]) == 0
    model = vlmt.load(model_dir)
    pictures = [im.path for im in find_gallery(from_dict(model.info["experiment"]).data, limit=32).images]
    questions = ["what color is the square?", "how many circles are there?", "what shape is left of the circle?",
                 "is there a red shape?", "what color is the triangle?", "how many shapes are there?",
                 "what is above the square?", "is the circle blue?"]
    rows: list[dict[str, Any]] = []

    def python(name: str, pics: list[Path], qs: list[str]) -> None:
        result = compare(lambda: [[model.answer(p, q) for q in qs] for p in pics],
                         lambda: model.answer(pics, qs), args.repeats)
        rows.append({"shape": name, "via": "Python", "answers": len(pics) * len(qs), **result})

    python("1 picture x 8 questions", pictures[:1], questions)
    python("8 pictures x 1 question", pictures[:8], questions[:1])
    python("8 pictures x 4 questions", pictures[:8], questions[:4])
    pairs = [{"image": pictures[i % len(pictures)], "question": questions[i % len(questions)]} for i in range(64)]
    rows.append({"shape": f"64 pairs, {len({str(p['image']) for p in pairs})} pictures (a JSONL)", "via": "Python",
                 "answers": 64, **compare(lambda: [model.answer(**p) for p in pairs],
                                          lambda: model.details_many("answer", pairs), args.repeats)})

    from starlette.testclient import TestClient

    from vlmt.serve.app import create_app
    from vlmt.serve.models import load_models

    client = TestClient(create_app(load_models([model_dir], log=lambda _: None), page=False))
    files = {p: p.read_bytes() for p in pictures[:8]}

    def post(pics: list[Path], qs: list[str]) -> None:
        got = client.post("/api/answer", files=[("image", (p.name, files[p], "image/png")) for p in pics],
                          data={"question": qs})
        assert got.status_code == 200, got.text

    for name, pics, qs in (("1 picture x 8 questions", pictures[:1], questions),
                           ("8 pictures x 4 questions", pictures[:8], questions[:4])):
        result = compare(lambda: [post([p], [q]) for p in pics for q in qs], lambda: post(pics, qs), args.repeats)
        rows.append({"shape": name, "via": "HTTP", "answers": len(pics) * len(qs), **result})

    print(f"{'shape':<40} {'via':<7} {'answers':>7} {'one by one':>11} {'batched':>9} {'ratio':>6}")
    for r in rows:
        print(f"{r['shape']:<40} {r['via']:<7} {r['answers']:>7} {r['one_by_one_s']:>10.3f}s {r['batched_s']:>8.3f}s "
              f"{r['ratio']:>5.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "repeats": args.repeats, "rows": rows},
                                              indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
