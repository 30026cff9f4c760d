"""`vlmt demo --size tiny` end to end: report.json in the shape of the contract, with percentages,
and the Markdown / HTML reports beside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlmt import cli
from vlmt.experiments import demo as D

METRIC_PATHS = [
    ("hierarchical", "vqa", "accuracy"),
    *[("hierarchical", "retrieval", d, f"r{k}") for d in ("i2t", "t2i") for k in (1, 5, 10)],
    *[("hierarchical", "grounding", f"r{k}") for k in (1, 5, 10)],
    ("svlr", "vqa_mc", "accuracy"),
    ("svlr", "recognition", "object_accuracy"),
    ("svlr", "recognition", "attribute_accuracy"),
    ("svlr", "zero_shot_vqa_mc", "accuracy"),
]


def _get(tree: dict, path: tuple[str, ...]):
    for key in path:
        tree = tree[key]
    return tree


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> tuple[Path, dict, str]:
    import contextlib
    import io
    import os

    parent = tmp_path_factory.mktemp("demo")
    out = parent / "runs" / "demo"
    stdout, stderr = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(parent)  # a relative --out, as in the README's `vlmt demo` (runs/demo)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = cli.main(["demo", "--size", "tiny", "--out", "runs/demo", "--pictures", "1", "--json"])
    finally:
        os.chdir(cwd)
    assert code == 0, stderr.getvalue()[-2000:]
    return out, json.loads(stdout.getvalue()), stderr.getvalue()


def test_report_json_has_the_contract_shape_with_percentages(demo_out):
    out, printed, _ = demo_out
    report = json.loads((out / "report.json").read_text())
    assert report == printed
    assert isinstance(report["seconds"], float) and report["seconds"] > 0
    built = {p.name for p in D.PARTS} - set(report["not_built"])
    for path in METRIC_PATHS:
        value = _get(report, path)
        part = next(p for p in D.PARTS if p.section == path[0] and ".".join(path[1:]) in p.report)
        if part.name in built:
            assert isinstance(value, float) and 0.0 <= value <= 100.0, (path, value)
        else:
            assert value is None, (path, value)  # a part that is not built has no number


def test_every_system_is_built_and_trained(demo_out):
    out, report, _ = demo_out
    assert report["not_built"] == []
    for name, run in report["runs"].items():
        assert (out / run / "summary.json").is_file(), name


def test_markdown_and_html_reports_hold_tables_curves_and_pictures(demo_out):
    out, report, _ = demo_out
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "| VQA | accuracy |" in md and "| joint | multiple-choice VQA | accuracy |" in md
    acc = report["hierarchical"]["vqa"]["accuracy"]
    if acc is not None:
        assert f"| VQA | accuracy | {acc:.1f} |" in md
    for link in [line.split("](", 1)[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]:
        assert (out / link).is_file(), link
    assert md.count("![") == html.count("data:image/png;base64,")
    if report["runs"]:
        assert "_curves.png" in md


def test_report_puts_the_retrieval_ceiling_beside_the_models(demo_out):
    from vlmt.tasks.retrieval_ceiling import world_ceiling

    out, report, _ = demo_out
    ceiling = world_ceiling("tiny", 0)
    for side in ("i2t", "t2i"):
        for k, v in ceiling.recall["generated"][side].items():
            assert report["retrieval_ceiling"]["generated"][side][k] == pytest.approx(v, abs=0.005)
    assert report["retrieval_ceiling"]["images"] == 8
    md = (out / "report.md").read_text()
    r1 = report["retrieval_ceiling"]["generated"]["i2t"]["r1"]
    assert f"| retrieval ceiling | image -> caption (oracle) | {r1:.1f} |" in md
    assert md.count("| retrieval ceiling | caption -> image (oracle) |") == 2  # hierarchical and composed


def test_progress_names_each_stage_with_time_left(demo_out):
    _, _, err = demo_out
    lines = [line for line in err.splitlines() if line.startswith("[")]
    assert lines[0].startswith("[1/") and "world" in lines[0]
    assert all("left in total" in line for line in lines)
    assert lines[-1].split("]")[1].strip().startswith("report")


def test_unknown_size_and_a_file_as_output_are_refused(capsys, tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--size", "huge"])
    assert "invalid choice" in capsys.readouterr().err
    (tmp_path / "f").write_text("x")
    assert cli.main(["demo", "--size", "tiny", "--out", str(tmp_path / "f")]) == 1
    assert capsys.readouterr().err.strip().endswith("exists and is not a folder")


def test_parallel_estimate_is_the_makespan_longest_first():
    assert D._parallel_estimate([100.0, 50.0, 30.0], 2) == 100.0
    assert D._parallel_estimate([100.0, 50.0, 30.0], 1) == 180.0
    assert D._parallel_estimate([60.0, 50.0, 40.0], 2) == 90.0
    assert D._parallel_estimate([], 2) == 0.0


def test_progress_reads_the_last_logged_step(tmp_path):
    assert D._run_steps(tmp_path) == 0  # nothing logged yet
    (tmp_path / "metrics.jsonl").write_text('{"step": 10, "split": "train"}\n{"step": 20, "split": "val"}\n{"ste')
    assert D._run_steps(tmp_path) == 20  # a half-written last line is skipped


def _job(tmp_path: Path, name: str, overrides: tuple[str, ...]) -> D.PartJob:
    config = Path(D.__file__).resolve().parents[3] / "configs" / "svlr_tiny.yaml"
    return D.PartJob(name=name, title=name, config=str(config), overrides=overrides,
                     run_dir=str(tmp_path / "runs" / name), pictures_dir=str(tmp_path / "pictures"), pictures=0)


def test_parts_run_in_worker_processes_and_errors_come_back_as_one_line(tmp_path):
    from vlmt.errors import VlmtError

    fast = ("train.max_iters=4", "train.eval_every=4", "train.checkpoint_every=4", "train.log_every=2")
    jobs = [_job(tmp_path, "bad", fast + ("train.max_iter=3",)), _job(tmp_path, "a", fast),
            _job(tmp_path, "b", fast + ("schedule.order=[recognition]",))]
    seen: list[str] = []
    # the bad config fails in its worker; its error crosses the process boundary as one line, and
    # the pool lets the other runs finish before the error is raised
    with pytest.raises(VlmtError, match=r"^bad: .*'train.max_iter': unknown key; did you mean 'max_iters'"):
        D.run_parts(jobs, {"bad": 4, "a": 4, "b": 4}, workers=2, bar=False, say=seen.append)
    for name in ("a", "b"):
        summary = json.loads((tmp_path / "runs" / name / "summary.json").read_text())
        assert summary["step"] == 4
        assert (tmp_path / "pictures" / f"{name}_curves.png").is_file()
    assert not (tmp_path / "runs" / "bad").exists()
