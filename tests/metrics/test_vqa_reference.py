"""The fast VQA accuracy against the straightforward implementation it replaced, kept below as the
reference (copied as it was: the leave-one-out loop over records, normalisation per call, a
regular-expression pass per answer). Random and adversarial answers (punctuation, digits,
articles, contractions, whitespace, official records with and without ids), both
normalisations and both roundings: overall, per-type and per-question values must be equal
bit for bit (float `==` and equal `repr`)."""

from __future__ import annotations

import random
import re
from typing import Any, Callable, Literal, Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmt.data.answers import (
    ARTICLES,
    CONTRACTIONS,
    NUMBER_WORDS,
    PUNCTUATION,
    clean_whitespace,
    normalize_answer,
    process_digit_article,
    process_punctuation,
)
from vlmt.metrics.rounding import round_half_away, round_half_even
from vlmt.metrics.vqa import VQAScores, evaluate_vqa, question_accuracy

# ---------------------------------------------------------------------------------------------
# Reference: vlmt.data.answers and vlmt.metrics.vqa as they were before the fast path.

_REF_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
_REF_OFFICIAL_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_REF_INTENDED_PERIOD = re.compile(r"(?<!\d)\.|\.(?!\d)")
_REF_OFFICIAL_PERIOD_COUNT = int(re.UNICODE)
_REF_LOWER_CONTRACTIONS: Mapping[str, str] = {k.lower(): v for k, v in CONTRACTIONS.items()}


def ref_clean_whitespace(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def ref_process_punctuation(text: str, *, corrected: bool = False) -> str:
    if corrected:
        text = _REF_DIGIT_COMMA_DIGIT.sub(r"\1\3", text)
    out = text
    deletes = not corrected and _REF_DIGIT_COMMA_DIGIT.search(text) is not None
    for mark in PUNCTUATION:
        if deletes or (mark + " " in text) or (" " + mark in text):
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    if corrected:
        return _REF_INTENDED_PERIOD.sub("", out)
    return _REF_OFFICIAL_PERIOD.sub("", out, count=_REF_OFFICIAL_PERIOD_COUNT)


def ref_process_digit_article(text: str, *, corrected: bool = False) -> str:
    table = _REF_LOWER_CONTRACTIONS if corrected else CONTRACTIONS
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(table.get(w, w) for w in words)


def ref_normalize_answer(text: str, *, corrected: bool = False) -> str:
    return ref_process_digit_article(ref_process_punctuation(ref_clean_whitespace(text), corrected=corrected),
                                     corrected=corrected)


def _ref_as_records(answers: Sequence[str | Mapping[str, Any]]) -> list[dict[str, Any]]:
    records = []
    for i, a in enumerate(answers):
        records.append({"answer": a, "answer_id": i + 1} if isinstance(a, str) else dict(a))
    return records


def ref_question_accuracy(result: str, answers: Sequence[str | Mapping[str, Any]], *,
                          corrected: bool = False) -> float:
    if not answers:
        raise ValueError("a question needs at least one ground-truth answer")
    records = _ref_as_records(answers)
    for r in records:
        r["answer"] = ref_clean_whitespace(r["answer"])
    res = ref_clean_whitespace(result)
    if corrected or len({r["answer"] for r in records}) > 1:
        for r in records:
            r["answer"] = ref_normalize_answer(r["answer"], corrected=corrected)
        res = ref_normalize_answer(res, corrected=corrected)
    per_record = []
    for held_out in records:
        matches = sum(1 for r in records if r != held_out and r["answer"] == res)
        per_record.append(min(1.0, matches / 3.0))
    return _ref_plain_sum(per_record) / len(per_record)


def _ref_plain_sum(values: Sequence[float]) -> float:
    total = 0.0
    for v in values:
        total += v
    return total


def _ref_percent(values: Sequence[float], rounder: Callable[[float, int], float], ndigits: int) -> float:
    return rounder(100 * _ref_plain_sum(values) / len(values), ndigits)


def ref_evaluate_vqa(annotations: Sequence[Mapping[str, Any]], results: Mapping[Any, str], *,
                     corrected: bool = False, rounding: Literal["python2", "python3"] = "python2",
                     ndigits: int = 2) -> VQAScores:
    if rounding not in ("python2", "python3"):
        raise ValueError(f"rounding must be 'python2' or 'python3', not {rounding!r}")
    rounder = round_half_away if rounding == "python2" else round_half_even
    if not annotations:
        raise ValueError("no annotations to evaluate")
    accs: list[float] = []
    by_qtype: dict[str, list[float]] = {}
    by_atype: dict[str, list[float]] = {}
    per_question: dict[Any, float] = {}
    for ann in annotations:
        qid = ann["question_id"]
        acc = ref_question_accuracy(results[qid], ann["answers"], corrected=corrected)
        accs.append(acc)
        by_qtype.setdefault(ann["question_type"], []).append(acc)
        by_atype.setdefault(ann["answer_type"], []).append(acc)
        per_question[qid] = rounder(100 * acc, ndigits)
    return VQAScores(
        overall=_ref_percent(accs, rounder, ndigits),
        per_answer_type={k: _ref_percent(v, rounder, ndigits) for k, v in by_atype.items()},
        per_question_type={k: _ref_percent(v, rounder, ndigits) for k, v in by_qtype.items()},
        per_question=per_question,
    )


# ---------------------------------------------------------------------------------------------
# Adversarial answers

# Pieces that hit every rule: each punctuation mark, full stops around digits and letters, digit
# comma digit, number words, articles, contractions (capitalised keys, identity entries, the
# apostrophe-removing one), case, whitespace the cleaning turns into spaces or strips.
PIECES = (
    list(PUNCTUATION) + [".", "..", ". ", " .", "'", ":", ",", " , "]
    + ["1", "2", "10", "2.5", "1,000", "3,4", ".5", "5.", "x" + "." * 40]
    + list(NUMBER_WORDS) + ["Two", "NONE", "eleven"]
    + ["a", "an", "the", "The", "A"]
    + ["dont", "Im", "im", "Ive", "somebody'd", "let's", "ow's'at", "yall'll", "Dont", "cant"]
    + ["yes", "Yes", "no", "red", "dog", "Dog.", "mr", "é", "ß"]
    + [" ", "  ", "\t", "\n", "\r", "\x0b", "\u00a0", "\u3000"]
)


def adversarial_answer(rnd: random.Random) -> str:
    return "".join(rnd.choice(PIECES) + rnd.choice(["", "", " ", "-", "/"]) for _ in range(rnd.randint(0, 4)))


def question_answers(rnd: random.Random) -> list[str]:
    """Ten (sometimes fewer or more) annotator answers with heavy agreement, often unanimous,
    drawn from a small pool of adversarial strings so that normalisation merges some of them."""
    pool = [adversarial_answer(rnd) for _ in range(rnd.randint(1, 4))]
    if rnd.random() < 0.3:       # variants that differ only before normalisation
        base = rnd.choice(pool)
        pool += [base.upper(), base + ".", " " + base + "\n", "the " + base, base.replace(" ", "/")]
    n = 10 if rnd.random() < 0.8 else rnd.randint(1, 13)
    if rnd.random() < 0.25:
        return [pool[0]] * n
    return [rnd.choice(pool) for _ in range(n)]


def result_for(answers: Sequence[str], rnd: random.Random) -> str:
    r = rnd.random()
    if r < 0.5:
        a = rnd.choice(answers)
        return rnd.choice([a, a.upper(), a.title(), a + ".", " " + a + "\t", "a " + a, a.replace(" ", ",")])
    if r < 0.8:
        return adversarial_answer(rnd)
    return rnd.choice(PIECES)


def as_records(answers: Sequence[str], rnd: random.Random) -> list[Any]:
    """Official records (distinct ids), records without ids (identical ones leave each other out),
    records with repeated ids, extra fields, and plain strings mixed in."""
    kind = rnd.randrange(5)
    if kind == 0:
        return [{"answer": a, "answer_confidence": rnd.choice(["yes", "maybe", "no"]), "answer_id": i + 1}
                for i, a in enumerate(answers)]
    if kind == 1:
        return [{"answer": a, "answer_confidence": "yes"} for a in answers]
    if kind == 2:
        return [{"answer": a, "answer_id": rnd.randint(1, 3)} for a in answers]
    if kind == 3:      # a mapping equal to the record a plain string becomes, next to that string
        return [a if i % 2 else {"answer": a, "answer_id": i + 2} for i, a in enumerate(answers)]
    return [{"answer": a, "answer_id": i + 1, "extra": [i % 2]} for i, a in enumerate(answers)]


def make_dataset(seed: int, n: int, *, records: bool) -> tuple[list[dict[str, Any]], dict[int, str]]:
    rnd = random.Random(seed)
    anns, results = [], {}
    for qid in range(n):
        answers: list[Any] = question_answers(rnd)
        results[qid] = result_for(answers, rnd)
        if records:
            answers = as_records(answers, rnd)
        anns.append({"question_id": qid, "question_type": rnd.choice(["what is", "how many", "is the", ""]),
                     "answer_type": rnd.choice(["yes/no", "number", "other"]), "answers": answers})
    return anns, results


def same_float(a: float, b: float) -> bool:
    return a == b and repr(a) == repr(b)


def assert_same_scores(got: VQAScores, want: VQAScores) -> None:
    assert same_float(got.overall, want.overall)
    for mine, theirs in ((got.per_answer_type, want.per_answer_type),
                         (got.per_question_type, want.per_question_type),
                         (got.per_question, want.per_question)):
        assert list(mine) == list(theirs)           # same keys in the same order
        bad = [k for k in theirs if not same_float(mine[k], theirs[k])]
        assert not bad, [(k, mine[k], theirs[k]) for k in bad[:5]]


# ---------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("corrected", [False, True])
def test_normalisation_equals_reference_on_adversarial_answers(corrected):
    rnd = random.Random(1)
    texts = [adversarial_answer(rnd) for _ in range(20000)] + PIECES
    for t in texts:
        want = ref_normalize_answer(t, corrected=corrected)
        assert normalize_answer(t, corrected=corrected) == want, t
        assert normalize_answer(t, corrected=corrected) == want, t      # again, now cached
        assert clean_whitespace(t) == ref_clean_whitespace(t)
        assert process_punctuation(t, corrected=corrected) == ref_process_punctuation(t, corrected=corrected)
        assert process_digit_article(t, corrected=corrected) == ref_process_digit_article(t, corrected=corrected)


@pytest.mark.parametrize("records", [False, True])
@pytest.mark.parametrize("corrected", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_question_accuracy_equals_reference(seed, corrected, records):
    anns, results = make_dataset(seed, 3000, records=records)
    for ann in anns:
        r = results[ann["question_id"]]
        want = ref_question_accuracy(r, ann["answers"], corrected=corrected)
        got = question_accuracy(r, ann["answers"], corrected=corrected)
        assert same_float(got, want), (r, ann["answers"], got, want)


@pytest.mark.parametrize("records", [False, True])
@pytest.mark.parametrize("rounding", ["python2", "python3"])
@pytest.mark.parametrize("corrected", [False, True])
def test_evaluate_vqa_equals_reference(corrected, rounding, records):
    anns, results = make_dataset(7, 4000, records=records)
    for ndigits in (2, 1, 3):
        want = ref_evaluate_vqa(anns, results, corrected=corrected, rounding=rounding, ndigits=ndigits)
        got = evaluate_vqa(anns, results, corrected=corrected, rounding=rounding, ndigits=ndigits)
        assert_same_scores(got, want)


@pytest.mark.parametrize("rounding", ["python2", "python3"])
def test_every_placement_of_matches_sums_as_the_reference(rounding):
    # the only sums whose order could matter: 1-3 matching annotators among n, at every position
    # (and every pattern of 10), for lists of 1 to 13 answers
    anns, results = [], {}
    qid = 0
    for n in range(1, 14):
        for mask in range(1 << n) if n <= 10 else random.Random(n).sample(range(1 << n), 600):
            answers = ["yes" if mask >> i & 1 else "no" for i in range(n)]
            for r in ("yes", "Yes.", "no"):
                anns.append({"question_id": qid, "question_type": str(n), "answer_type": r, "answers": answers})
                results[qid] = r
                qid += 1
    for corrected in (False, True):
        want = ref_evaluate_vqa(anns, results, corrected=corrected, rounding=rounding)
        got = evaluate_vqa(anns, results, corrected=corrected, rounding=rounding)
        assert_same_scores(got, want)


def test_exact_rounding_ties_are_kept():
    # 97 of 800 questions right overall (12.125 %) and per question values on the 1/30 grid:
    # ties in both roundings, the place where a changed float sum would show
    anns = [{"question_id": i, "question_type": "t", "answer_type": "a",
             "answers": ["yes"] * (i % 4) + ["no"] * (10 - i % 4)} for i in range(800)]
    results = {i: ("yes" if i < 97 else "no") for i in range(800)}
    for rounding in ("python2", "python3"):
        for ndigits in (0, 1, 2, 3):
            assert_same_scores(evaluate_vqa(anns, results, rounding=rounding, ndigits=ndigits),
                               ref_evaluate_vqa(anns, results, rounding=rounding, ndigits=ndigits))


def test_errors_equal_reference():
    for bad in ([], [{"answer_confidence": "yes"}]):
        with pytest.raises(Exception) as want:
            ref_question_accuracy("yes", bad)
        with pytest.raises(Exception) as got:
            question_accuracy("yes", bad)
        assert type(got.value) is type(want.value)
    with pytest.raises(ValueError):
        evaluate_vqa([], {})
    with pytest.raises(ValueError):
        evaluate_vqa([{"question_id": 1, "question_type": "t", "answer_type": "a", "answers": ["x"]}],
                     {1: "x"}, rounding="python4")  # type: ignore[arg-type]


answer_piece = st.sampled_from(PIECES)
hyp_answer = st.lists(answer_piece, max_size=4).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(hyp_answer, min_size=1, max_size=12), hyp_answer, st.booleans())
def test_question_accuracy_equals_reference_property(answers, result, corrected):
    assert same_float(question_accuracy(result, answers, corrected=corrected),
                      ref_question_accuracy(result, answers, corrected=corrected))
