"""Official VQA accuracy: hand-worked questions, the official quirks, rounding, properties."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmt.metrics.rounding import round_half_away, round_half_even
from vlmt.metrics.vqa import evaluate_vqa, question_accuracy

FIXTURES = Path(__file__).parent.parent / "fixtures" / "metrics"


def test_leave_one_out_average_hand_worked():
    # 2 annotators said "3", 8 said "4"; result "3":
    # the 2 "3" records each see 1 match (1/3), the 8 others see 2 matches (2/3) -> 0.6
    assert question_accuracy("3", ["3"] * 2 + ["4"] * 8) == pytest.approx(0.6, abs=1e-15)
    assert question_accuracy("4", ["3"] * 2 + ["4"] * 8) == 1.0
    # 3 of 10 agree: 3 records see 2 (2/3), 7 see 3 (1) -> 0.9
    assert question_accuracy("dog", ["dog"] * 3 + ["puppy"] * 7) == pytest.approx(0.9, abs=1e-15)
    assert question_accuracy("cat", ["dog"] * 3 + ["puppy"] * 7) == 0.0


def test_no_normalisation_when_annotators_agree():
    # all ten say "yes": neither side is normalised, so case and punctuation must match
    assert question_accuracy("yes", ["yes"] * 10) == 1.0
    assert question_accuracy("Yes", ["yes"] * 10) == 0.0
    assert question_accuracy("yes.", ["yes"] * 10) == 0.0
    assert question_accuracy("two", ["2"] * 10) == 0.0
    # ... but whitespace is always cleaned
    assert question_accuracy(" yes\n", ["yes"] * 10) == 1.0
    # one dissenting annotator switches normalisation on for both sides
    assert question_accuracy("Yes.", ["yes"] * 9 + ["no"]) == 1.0
    assert question_accuracy("two", ["2"] * 9 + ["3"]) == 1.0
    # the corrected option normalises always
    assert question_accuracy("Yes", ["yes"] * 10, corrected=True) == 1.0


def test_ground_truth_is_normalised_too_when_annotators_disagree():
    assert question_accuracy("2", ["two"] * 5 + ["3"] * 5) == 1.0
    assert question_accuracy("dog", ["the dog"] * 4 + ["Dog."] * 2 + ["cat"] * 4) == 1.0


def test_identical_records_leave_each_other_out():
    # official records carry distinct answer_ids; records equal in every field are all removed
    # together when one of them is held out
    same = [{"answer": "yes", "answer_confidence": "yes"}] * 10
    assert question_accuracy("yes", same) == 0.0
    distinct = [{"answer": "yes", "answer_confidence": "yes", "answer_id": i} for i in range(10)]
    assert question_accuracy("yes", distinct) == 1.0


def test_python2_rounding_ties_away_from_zero():
    assert round_half_away(0.125, 2) == 0.13
    assert round_half_even(0.125, 2) == 0.12
    assert round_half_away(-0.125, 2) == -0.13
    assert round_half_away(2.675, 2) == 2.67       # 2.675 is stored as 2.67499999...
    assert round_half_away(68.33333333, 2) == 68.33


def test_overall_tie_rounds_away_from_zero():
    # 97 of 800 questions right: 100 * 97 / 800 = 12.125 exactly
    anns = [{"question_id": i, "question_type": "what", "answer_type": "other",
             "answers": ["yes"] * 10} for i in range(800)]
    results = {i: ("yes" if i < 97 else "no") for i in range(800)}
    assert evaluate_vqa(anns, results).overall == 12.13
    assert evaluate_vqa(anns, results, rounding="python3").overall == 12.12


def test_fixture_scores_match_hand_computation():
    anns = json.loads((FIXTURES / "vqa_annotations.json").read_text())["annotations"]
    res = {r["question_id"]: r["answer"] for r in json.loads((FIXTURES / "vqa_results.json").read_text())}
    scores = evaluate_vqa(anns, res)
    # per question: 100, 0 ("Yes" vs unanimous "yes"), 100, 60, 60, 90
    assert scores.per_question == {1: 100.0, 2: 0.0, 3: 100.0, 4: 60.0, 5: 60.0, 6: 90.0}
    assert scores.overall == 68.33
    assert scores.per_answer_type == {"yes/no": 50.0, "number": 80.0, "other": 75.0}
    assert scores.per_question_type == {"is the": 50.0, "how many": 80.0,
                                        "what color is the": 60.0, "what is the": 90.0}


answer_text = st.sampled_from(["yes", "no", "Yes", "2", "two", "red", "a dog", "dog", "none", "0"])


@settings(max_examples=150, deadline=None)
@given(st.lists(answer_text, min_size=10, max_size=10), answer_text)
def test_question_accuracy_is_bounded_and_on_the_official_grid(gts, result):
    acc = question_accuracy(result, gts)
    assert 0.0 <= acc <= 1.0
    # a mean of ten values in {0, 1/3, 2/3, 1}
    assert abs(acc * 30 - round(acc * 30)) < 1e-9


@settings(max_examples=100, deadline=None)
@given(st.lists(answer_text, min_size=10, max_size=10), answer_text, st.randoms())
def test_question_accuracy_ignores_annotator_order(gts, result, rnd):
    shuffled = list(gts)
    rnd.shuffle(shuffled)
    assert question_accuracy(result, gts) == pytest.approx(question_accuracy(result, shuffled), abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(answer_text, min_size=10, max_size=10), min_size=1, max_size=12))
def test_answering_the_unanimous_or_majority_answer_scores_100(gts_lists):
    anns, results = [], {}
    for i, gts in enumerate(gts_lists):
        gts = [gts[0]] * 4 + gts[4:]     # at least 4 annotators agree on gts[0]
        anns.append({"question_id": i, "question_type": "t", "answer_type": "a", "answers": gts})
        results[i] = gts[0]
    assert evaluate_vqa(anns, results).overall == 100.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.lists(answer_text, min_size=10, max_size=10), answer_text,
                          st.sampled_from(["yes/no", "number", "other"])), min_size=1, max_size=15),
       st.randoms())
def test_scores_do_not_depend_on_question_order_beyond_float_rounding(items, rnd):
    anns = [{"question_id": i, "question_type": "t", "answer_type": at, "answers": gts}
            for i, (gts, _, at) in enumerate(items)]
    results = {i: r for i, (_, r, _) in enumerate(items)}
    shuffled = list(anns)
    rnd.shuffle(shuffled)
    a, b = evaluate_vqa(anns, results), evaluate_vqa(shuffled, results)
    assert a.per_question == b.per_question
    assert abs(a.overall - b.overall) <= 0.01 + 1e-9
    assert 0.0 <= a.overall <= 100.0
