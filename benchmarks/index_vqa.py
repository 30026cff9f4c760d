"""Time and peak memory to index a VQA v2 split of 450k questions (the size of VQA v2 train+val
is 658k; train alone 443,757) generated in the official file format in a temporary folder.

    PYTHONPATH=src python benchmarks/index_vqa.py [--questions 450000]

Indexing runs in a fresh child process; its peak resident memory (ru_maxrss) is reported next to
that of a child that only imports vlmt, so the difference is what indexing costs.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vlmt.cli import at_least
from vlmt.errors import reports_errors

WORDS = "what is the color of man woman dog cat on in table shirt how many people are there doing wearing".split()
ANSWERS = ["yes", "no", "2", "1", "white", "red", "blue", "tennis", "3", "dog", "black", "pizza", "frisbee"]
TYPES = [("what color is the", "other"), ("is the", "yes/no"), ("how many", "number"), ("what is the", "other")]


def generate(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """Write v2_OpenEnded_mscoco_train2014_questions.json and v2_mscoco_train2014_annotations.json
    with `n` questions (about 5.4 per image, ids image_id * 1000 + k as in the release)."""
    rng = random.Random(seed)
    info = {"description": "This is v2.0 of the VQA dataset.", "url": "http://visualqa.org", "version": "2.0",
            "year": 2017, "contributor": "VQA Team", "date_created": "2017-04-26 17:07:13"}
    lic = {"url": "http://creativecommons.org/licenses/by/4.0/",
           "name": "Creative Commons Attribution 4.0 International License"}
    q_path = folder / "v2_OpenEnded_mscoco_train2014_questions.json"
    a_path = folder / "v2_mscoco_train2014_annotations.json"
    with open(q_path, "w") as fq, open(a_path, "w") as fa:
        fq.write(json.dumps({"info": info, "task_type": "Open-Ended", "data_type": "mscoco", "license": lic,
                             "data_subtype": "train2014"})[:-1] + ', "questions": [')
        fa.write(json.dumps({"info": info, "license": lic, "data_type": "mscoco",
                             "data_subtype": "train2014"})[:-1] + ', "annotations": [')
        image_id, k = 9, 0
        for i in range(n):
            if k == 0 or rng.random() < 0.18:
                image_id += rng.randint(1, 7)
                k = 0
            qid = image_id * 1000 + k
            k += 1
            qt, at = rng.choice(TYPES)
            question = qt.capitalize() + " " + " ".join(rng.choices(WORDS, k=rng.randint(2, 6))) + "?"
            best = rng.choice(ANSWERS)
            answers = [{"answer": best if rng.random() < 0.7 else rng.choice(ANSWERS),
                        "answer_confidence": rng.choice(("yes", "maybe", "no")), "answer_id": j + 1} for j in range(10)]
            sep = ", " if i else ""
            fq.write(sep + json.dumps({"image_id": image_id, "question": question, "question_id": qid}))
            fa.write(sep + json.dumps({"question_type": qt, "multiple_choice_answer": best, "answers": answers,
                                       "image_id": image_id, "answer_type": at, "question_id": qid}))
        fq.write("]}")
        fa.write("]}")
    return q_path, a_path


CHILD = """
import sys, time, resource
from vlmt.data.readers.vqa import VQAIndex
if sys.argv[1] == "index":
    t = time.perf_counter()
    index = VQAIndex(sys.argv[2], sys.argv[3])
    dt = time.perf_counter() - t
    e = index[int(index.question_ids[len(index) // 2])]
    assert len(e.answers) == 10
    print(len(index), dt)
else:
    print(0, 0.0)
"""



@reports_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=at_least(1), default=450_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        q, a = generate(Path(tmp), args.questions)
        gen = time.perf_counter() - t
        sizes = q.stat().st_size / 2**20, a.stat().st_size / 2**20
        base = subprocess.run([sys.executable, "-c", CHILD, "baseline"], check=True, capture_output=True)
        base_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        out = subprocess.run([sys.executable, "-c", CHILD, "index", str(q), str(a)], check=True,
                             capture_output=True, text=True).stdout.split()
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # max over children, KiB on Linux
        del base
    n, seconds = int(out[0]), float(out[1])
    print(f"generated {args.questions} questions in {gen:.1f}s: questions {sizes[0]:.0f} MiB, "
          f"annotations {sizes[1]:.0f} MiB")
    print(f"indexed {n} questions with annotations in {seconds:.1f}s ({n / seconds:,.0f} questions/s)")
    print(f"peak RSS of the indexing process {peak / 1024:.0f} MiB (a process that only imports vlmt: "
          f"{base_rss / 1024:.0f} MiB; files on disk {sum(sizes):.0f} MiB)")


if __name__ == "__main__":
    sys.exit(main())
