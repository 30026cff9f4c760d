from __future__ import annotations

import json
import shutil

import pytest

from vlmt.data.readers import vqa
from vlmt.errors import DataError


def test_v2_open_ended_joins_questions_and_annotations(fixtures):
    d = fixtures / "vqa"
    examples = {e.question_id: e for e in vqa.read_vqa(d / "v2_OpenEnded_mscoco_val2014_questions.json",
                                                        d / "v2_mscoco_val2014_annotations.json")}
    assert sorted(examples) == [262148000, 262148001, 262148002, 393225000, 393225001]
    e = examples[262148002]
    assert e.image_id == 262148 and e.question == "What is he on top of?"
    assert len(e.answers) == 10 and e.answers.count("picnic table") == 5
    assert e.multiple_choice_answer == "picnic table" and e.answer_type == "other" and e.question_type == "what is"
    assert e.choices is None
    assert examples[393225001].answer_type == "number"


def test_v1_multiple_choice_has_18_choices_with_the_answer(fixtures):
    d = fixtures / "vqa"
    examples = vqa.read_vqa(d / "MultipleChoice_mscoco_val2014_questions.json", d / "mscoco_val2014_annotations.json")
    assert len(examples) == 3
    for e in examples:
        assert len(e.choices) == 18 and e.multiple_choice_answer in e.choices


def test_test_split_has_questions_only(fixtures):
    examples = vqa.read_vqa(fixtures / "vqa" / "v2_OpenEnded_mscoco_test-dev2015_questions.json")
    assert [(e.question_id, e.image_id, e.answers) for e in examples] == [(1000, 1, ()), (1001, 1, ())]


def test_index_looks_up_by_question_id(fixtures):
    d = fixtures / "vqa"
    index = vqa.VQAIndex(d / "v2_OpenEnded_mscoco_val2014_questions.json", d / "v2_mscoco_val2014_annotations.json")
    assert len(index) == 5 and 393225000 in index and 5 not in index
    assert index[393225000].multiple_choice_answer == "no"
    assert [e.question_id for e in index] == sorted(index.question_ids.tolist())
    with pytest.raises(DataError, match="question_id 7"):
        index[7]


def test_first_problem_raises_with_file_record_and_field(tmp_path, fixtures):
    src = fixtures / "vqa" / "v2_mscoco_val2014_annotations.json"
    data = json.loads(src.read_text())
    data["annotations"][1]["answers"] = data["annotations"][1]["answers"][:9]
    bad = tmp_path / src.name
    bad.write_text(json.dumps(data))
    shutil.copy(fixtures / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json", tmp_path)
    with pytest.raises(DataError) as e:
        vqa.read_vqa(tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json", bad)
    assert e.value.file == str(bad) and e.value.field == "answers" and e.value.record == "question_id 262148001"
