"""`vlmt evaluate vqa` on official-format files: output contract and error messages."""

import json
import shutil
from pathlib import Path

import pytest

from vlmt.cli import main

FIXTURES = Path(__file__).parent.parent / "fixtures" / "metrics"
EXPECTED = {"overall": 68.33,
            "perAnswerType": {"yes/no": 50.0, "number": 80.0, "other": 75.0},
            "perQuestionType": {"is the": 50.0, "how many": 80.0, "what color is the": 60.0,
                                "what is the": 90.0}}


def _args(questions="vqa_questions.json", results="vqa_results.json", annotations="vqa_annotations.json"):
    return ["evaluate", "vqa", "--questions", str(FIXTURES / questions),
            "--annotations", str(FIXTURES / annotations),
            "--results", str(results if Path(str(results)).is_absolute() else FIXTURES / results)]


def test_json_prints_exactly_the_specified_object(capsys):
    assert main(_args() + ["--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == EXPECTED
    assert out.count("\n") == 1


def test_human_output_goes_to_stderr(capsys):
    assert main(_args()) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Overall Accuracy is: 68.33" in captured.err


def test_multiple_choice_file_checks_choices(tmp_path, capsys):
    assert main(_args("vqa_mc_questions.json", "vqa_mc_results.json") + ["--json"]) == 0
    assert json.loads(capsys.readouterr().out) == EXPECTED
    bad = json.loads((FIXTURES / "vqa_mc_results.json").read_text())
    bad[3]["answer"] = "seventeen"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    assert main(_args("vqa_mc_questions.json", path) + ["--json"]) == 1
    err = capsys.readouterr().err
    assert "bad.json" in err and "question_id 4" in err and "'answer'" in err and "choices" in err
    # the same results are fine as open-ended
    assert main(_args("vqa_mc_questions.json", path) + ["--task", "open-ended", "--json"]) == 0


@pytest.mark.parametrize("edit, message", [
    (lambda r: r[:-1], "no answer for 1 annotated question"),
    (lambda r: r + [{"question_id": 99, "answer": "x"}], "not in the annotation file"),
    (lambda r: r + [r[0]], "answered twice"),
    (lambda r: [dict(r[0], answer=3)] + r[1:], "must be str"),
    (lambda r: {"question_id": 1}, "must be a JSON list"),
])
def test_bad_results_name_file_record_and_field(tmp_path, capsys, edit, message):
    results = json.loads((FIXTURES / "vqa_results.json").read_text())
    path = tmp_path / "results.json"
    path.write_text(json.dumps(edit(results)))
    assert main(_args(results=path)) == 1
    err = capsys.readouterr().err
    assert "results.json" in err and message in err
    assert "Traceback" not in err


def test_missing_and_broken_files_are_one_line_errors(tmp_path, capsys):
    assert main(_args(results=tmp_path / "nope.json")) == 1
    assert "nope.json: file not found" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    assert main(_args(results=broken)) == 1
    assert "not valid JSON" in capsys.readouterr().err


def test_annotation_without_answers_is_reported(tmp_path, capsys):
    data = json.loads((FIXTURES / "vqa_annotations.json").read_text())
    del data["annotations"][2]["answer_type"]
    (tmp_path / "a.json").write_text(json.dumps(data))
    shutil.copy(FIXTURES / "vqa_questions.json", tmp_path / "q.json")
    rc = main(["evaluate", "vqa", "--questions", str(tmp_path / "q.json"), "--annotations",
               str(tmp_path / "a.json"), "--results", str(FIXTURES / "vqa_results.json")])
    assert rc == 1
    assert "a.json: record question_id 3: field 'answer_type': missing" in capsys.readouterr().err


def test_written_results_evaluate_like_the_fixture(tmp_path, capsys):
    from vlmt.metrics.vqa_files import write_vqa_results

    answers = {r["question_id"]: r["answer"] for r in json.loads((FIXTURES / "vqa_results.json").read_text())}
    write_vqa_results(tmp_path / "r.json", answers)
    assert main(_args(results=tmp_path / "r.json") + ["--json"]) == 0
    assert json.loads(capsys.readouterr().out) == EXPECTED
