from __future__ import annotations

import pytest

from vlmt.data.readers import easy_vqa

pytest.importorskip("easy_vqa")


def test_package_data_reads_as_vqa_examples_with_ten_identical_answers():
    train = easy_vqa.read_easy_vqa("train")
    test = easy_vqa.read_easy_vqa("test")
    assert len({e.image_id for e in train}) == 4000 and len({e.image_id for e in test}) == 1000
    assert len(easy_vqa.read_answers()) == 13
    e = train[0]
    assert len(e.answers) == 10 and len(set(e.answers)) == 1 and e.multiple_choice_answer == e.answers[0]
    assert not {e.image_id for e in train} & {e.image_id for e in test}
    assert easy_vqa.image_path("test", test[0].image_id).exists()
