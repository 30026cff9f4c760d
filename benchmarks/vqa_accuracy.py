"""Time the official VQA accuracy (`evaluate_vqa`, `question_accuracy`) against the implementation
it replaced, kept as the reference in tests/metrics/test_vqa_reference.py, in one run.

Run: PYTHONPATH=src python benchmarks/vqa_accuracy.py [--questions 20000] [--repeats 3] [--seed 0]
Prints microseconds per question for both implementations (best of the repeats, the two run
alternately) and their ratio, on annotations given as plain strings (what the tasks pass) and as
official records (what `vlmt evaluate vqa` reads), and checks that both give the same scores bit
for bit.

The data are synthetic VQA v2-like questions (seeded): 38 % yes/no, 12 % number, 50 % other
questions, ten answers each drawn around a Zipf-distributed answer vocabulary with case,
punctuation, article and whitespace variants, so that annotators often but not always agree.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

from vlmt.cli import at_least
from vlmt.errors import reports_errors
from vlmt.metrics.vqa import VQAScores, evaluate_vqa, question_accuracy

ROOT = Path(__file__).resolve().parent.parent


def load_reference() -> Any:
    """The reference implementation, from the test that compares against it."""
    path = ROOT / "tests" / "metrics" / "test_vqa_reference.py"
    spec = importlib.util.spec_from_file_location("vqa_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WORDS = ["red", "blue", "white", "black", "green", "dog", "cat", "man", "woman", "pizza", "tennis",
         "baseball", "kitchen", "table", "frisbee", "skateboard", "umbrella", "train", "bus", "water",
         "grass", "snow", "wood", "left", "right", "sitting", "standing", "eating", "playing", "phone"]
VARIANTS: list[Callable[[str], str]] = [
    lambda a: a, lambda a: a, lambda a: a, lambda a: a.capitalize(), lambda a: a + ".", lambda a: "the " + a,
    lambda a: a + " ", lambda a: a.upper(), lambda a: a.replace(" ", "-"), lambda a: a + "s",
]


def vocabulary(rnd: random.Random, size: int) -> list[str]:
    out = []
    for _ in range(size):
        k = rnd.choice([1, 1, 1, 2, 2, 3])
        out.append(" ".join(rnd.choice(WORDS) for _ in range(k)))
    return out


def make_questions(n: int, seed: int) -> tuple[list[dict[str, Any]], dict[int, str]]:
    rnd = random.Random(seed)
    other = vocabulary(rnd, 20000)
    numbers = [str(i) for i in range(30)] + ["one", "two", "three", "four", "none", "1,000", "2.5"]
    anns, results = [], {}
    for qid in range(n):
        r = rnd.random()
        atype, pool = ("yes/no", ["yes", "no"]) if r < 0.38 else ("number", numbers) if r < 0.5 else ("other", other)
        # Zipf-like: a question's answers centre on a popular answer, with a few alternatives
        centre = pool[min(int(rnd.paretovariate(1.2)) - 1, len(pool) - 1)]
        alternatives = [rnd.choice(pool) for _ in range(rnd.choice([0, 1, 1, 2, 3]))]
        answers = []
        for _ in range(10):
            a = centre if not alternatives or rnd.random() < 0.7 else rnd.choice(alternatives)
            answers.append(rnd.choice(VARIANTS)(a) if rnd.random() < 0.15 else a)
        results[qid] = centre if rnd.random() < 0.6 else rnd.choice(pool)
        anns.append({"question_id": qid, "question_type": rnd.choice(["what is the", "how many", "is the",
                                                                      "what color is the", "none of the above"]),
                     "answer_type": atype, "answers": answers})
    return anns, results


def as_records(anns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(a, answers=[{"answer": s, "answer_confidence": "yes", "answer_id": i + 1}
                             for i, s in enumerate(a["answers"])]) for a in anns]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def compare(reference: Callable[[], Any], new: Callable[[], Any], repeats: int) -> tuple[float, float, Any, Any]:
    """Best seconds of each over `repeats` alternated runs, and their last outputs."""
    best_ref = best_new = float("inf")
    for _ in range(repeats):
        t, want = timed(reference)
        best_ref = min(best_ref, t)
        t, got = timed(new)
        best_new = min(best_new, t)
    return best_ref, best_new, want, got


def check_same(a: VQAScores, b: VQAScores) -> None:
    if (repr(a.overall), a.per_answer_type, a.per_question_type, a.per_question) != \
            (repr(b.overall), b.per_answer_type, b.per_question_type, b.per_question):
        raise SystemExit("the two implementations disagree")


@reports_errors
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--questions", type=at_least(1), default=20000)
    p.add_argument("--repeats", type=at_least(1), default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    ref = load_reference()
    anns, results = make_questions(args.questions, args.seed)
    n = len(anns)
    distinct = len({s for a in anns for s in a["answers"]} | set(results.values()))
    unanimous = sum(a["answers"].count(a["answers"][0]) == len(a["answers"]) for a in anns)
    print(f"{n} questions, {10 * n} answers, {distinct} distinct answer strings, "
          f"{100 * unanimous / n:.0f} % of questions with ten identical answers")
    for name, data in (("strings", anns), ("records", as_records(anns))):
        for corrected in (False, True):
            t_ref, t_new, want, got = compare(lambda: ref.ref_evaluate_vqa(data, results, corrected=corrected),
                                              lambda: evaluate_vqa(data, results, corrected=corrected), args.repeats)
            check_same(got, want)
            print(f"evaluate_vqa {name:7} corrected={corrected!s:5}: reference {1e6 * t_ref / n:6.1f} us/question, "
                  f"new {1e6 * t_new / n:5.2f} us/question, {t_ref / t_new:5.1f}x (overall {got.overall})")
    # the worst case for the normalisation cache: no answer string shared between questions
    unique = [dict(a, answers=[f"{s} q{a['question_id']}" for s in a["answers"]]) for a in anns]
    unique_results = {qid: f"{r} q{qid}" for qid, r in results.items()}
    t_ref, t_new, want, got = compare(lambda: ref.ref_evaluate_vqa(unique, unique_results),
                                      lambda: evaluate_vqa(unique, unique_results), args.repeats)
    check_same(got, want)
    print(f"evaluate_vqa strings, no string shared between questions: reference {1e6 * t_ref / n:6.1f} "
          f"us/question, new {1e6 * t_new / n:5.2f} us/question, {t_ref / t_new:5.1f}x")
    # one question at a time, as the serve path scores an answer
    sample = anns[: min(n, 20000)]
    t_ref, t_new, want, got = compare(
        lambda: [ref.ref_question_accuracy(results[a["question_id"]], a["answers"]) for a in sample],
        lambda: [question_accuracy(results[a["question_id"]], a["answers"]) for a in sample], args.repeats)
    if [repr(x) for x in want] != [repr(x) for x in got]:
        raise SystemExit("the two implementations disagree")
    print(f"question_accuracy, one call per question: reference {1e6 * t_ref / len(sample):6.1f} us, "
          f"new {1e6 * t_new / len(sample):5.2f} us, {t_ref / t_new:5.1f}x")


if __name__ == "__main__":
    sys.exit(main())
