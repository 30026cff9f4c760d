"""`vlmt.errors.reports_errors`: the one way `vlmt` and the benchmark scripts end on a user's
mistake (one line on stderr, the error's exit status), while a bug still raises."""

from __future__ import annotations

import pytest

from vlmt.errors import DataError, TrainingError, reports_errors


def test_a_data_error_is_one_line_naming_file_record_and_field(capsys):
    @reports_errors
    def main(argv: list[str]) -> int:
        raise DataError(argv[0], "must be a number", record=3, field="answer")

    assert main(["answers.json"]) == 1
    assert capsys.readouterr().err == "error: answers.json: record 3: field 'answer': must be a number\n"


def test_the_errors_exit_status_is_returned(capsys):
    class Refused(TrainingError):
        exit_code = 3

    @reports_errors
    def train() -> int:
        raise Refused("loss is nan at step 7")

    assert train() == 3
    assert capsys.readouterr().err == "error: loss is nan at step 7\n"


def test_results_pass_through_and_none_is_success(capsys):
    assert reports_errors(lambda code: code)(5) == 5
    assert reports_errors(lambda: None)() == 0
    assert capsys.readouterr().err == ""


def test_interrupt_is_status_130(capsys):
    def stop() -> int:
        raise KeyboardInterrupt

    assert reports_errors(stop)() == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_a_bug_is_not_hidden():
    def broken() -> int:
        raise KeyError("not a user's mistake")

    with pytest.raises(KeyError):
        reports_errors(broken)()
