"""`vlmt reproduce hierarchical`: the Table 1 grid (7 task combinations x seeds), its report and resume.

The mechanics are checked on a three-task trainer-check config whose tasks carry the paper's task
names (seconds); the run on the real tiny world is in test_reproduce_hierarchical_tiny (when the
tiny config exists)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vlmt import cli
from vlmt.errors import ConfigError
from vlmt.experiments import reproduce_hierarchical as R
from vlmt.training.build import load_experiment

ROOT = Path(__file__).resolve().parents[2]


def _three_task_config(tmp_path: Path) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "sanity.yaml").read_text())
    spec = raw["tasks"]["map_a"]
    raw["tasks"] = {name: {**spec, "map_seed": i, "iterations": 16, "step": 4, "batch_size": 8}
                    for i, name in enumerate(R.TASKS)}
    raw["schedule"] = {"kind": "curriculum", "cycle": 4}
    raw["train"].update(eval_every=100, checkpoint_every=100, progress=False, tensorboard=False)
    path = tmp_path / "three.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_grid_has_seven_rows_with_paper_numbers_and_resumes(tmp_path):
    config = _three_task_config(tmp_path)
    out = tmp_path / "table1"
    messages: list[str] = []
    report = R.run_grid(out, seeds=1, size="tiny", config=config, progress=messages.append)
    assert [tuple(r["tasks"]) for r in report["rows"]] == list(R.COMBINATIONS)
    assert report["complete"] and report["split"] == "test"
    for row in report["rows"]:
        assert row["finished"] == 1
        # only the row's own tasks were trained and tested
        assert {k.split("/")[0] for k in row["metrics"]} == set(row["tasks"])
        for run in row["runs"]:
            assert sorted(load_experiment(out / run / "config.yaml").tasks) == sorted(row["tasks"])
            tested = json.loads((out / run / "test_metrics.json").read_text())
            assert tested["split"] == "test"
            assert set(tested["metrics"]) == {f"{t}/mse" for t in row["tasks"]}
        for task in row["tasks"]:
            cell = row["metrics"][f"{task}/mse"]
            assert cell["n"] == 1 and cell["mean"] == cell["values"][0] and cell["std"] == 0.0
    # the joint rows take more steps: the curriculum runs every task alone, each pair, then all
    assert report["rows"][6]["steps"][0] > report["rows"][0]["steps"][0]
    assert report["rows"][6]["paper"] == {"vqa/accuracy": 66.35, "retrieval/i2t_r1": 70.43,
                                         "retrieval/t2i_r1": 57.50, "grounding/r1": 58.26}
    md = (out / "report.md").read_text()
    first_table = md.split("\n| tasks |", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    assert [line.split(" | ")[0] for line in first_table] == [
        "| VQA", "| ICR", "| VG", "| VQA + ICR", "| VQA + VG", "| ICR + VG", "| VQA + ICR + VG"]
    assert "| 65.50 |" in first_table[0] and "| 69.05 |" in first_table[1] and "| 56.47 |" in first_table[1]
    assert (out / "table1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "report.json").read_text()) == report

    # interrupted grid: one run lost its summary, another its cached test metrics
    run_a, run_b = out / report["rows"][3]["runs"][0], out / report["rows"][6]["runs"][0]
    (run_a / "summary.json").unlink()
    (run_b / "test_metrics.json").unlink()
    messages.clear()
    again = R.run_grid(out, seeds=1, size="tiny", config=config, progress=messages.append)
    # 6 Table 1 rows and the 4 procedure rows reused, one resumed
    assert sum("reused" in m for m in messages) == 10 and sum("resuming" in m for m in messages) == 1
    assert [r["metrics"] for r in again["rows"]] == [r["metrics"] for r in report["rows"]]


def test_seeds_shift_the_config_seed_and_spread_is_mean_and_sample_std(tmp_path):
    raw = yaml.safe_load(_three_task_config(tmp_path).read_text())
    raw["train"]["seed"] = 5
    cfg = R.run_config(raw, ("vqa", "grounding"), 2, source="x")
    assert cfg.train.seed == 7 and sorted(cfg.tasks) == ["grounding", "vqa"]
    from vlmt.experiments.grid_runs import format_spread, spread

    cell = spread([60.0, 62.0, 64.0])
    assert (cell["mean"], cell["std"], cell["n"]) == (62.0, 2.0, 3)
    assert format_spread(cell) == "62.00 ± 2.00" and format_spread(spread([])) == "—"


def test_cli_refuses_a_config_without_the_three_tasks(tmp_path, capsys):
    with pytest.raises(ConfigError, match="Table 1 needs the tasks vqa, retrieval, grounding"):
        R.run_grid(tmp_path, seeds=1, size="tiny", config=ROOT / "configs" / "sanity.yaml")
    assert cli.main(["reproduce", "hierarchical", "--seeds", "0", "--out", str(tmp_path)]) == 1
    assert "--seeds: must be >= 1" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_on_the_tiny_world_writes_all_seven_rows(tmp_path, capsys):
    """The real model on the tiny world, a handful of iterations per task (about 20 s on a busy CPU)."""
    out = tmp_path / "table1"
    fast = ["--set", "schedule.cycle=2", "--set", "train.progress=false"]
    for task in R.TASKS:
        fast += ["--set", f"tasks.{task}.iterations=2"]
    assert cli.main(["reproduce", "hierarchical", "--size", "tiny", "--seeds", "1", "--rows", "table1",
                     "--out", str(out), "--json", *fast]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((out / "report.json").read_text())
    assert report["complete"] and report["config"] == "tiny.yaml"
    headline = {key for key, _ in R.HEADLINE}
    for row, tasks in zip(report["rows"], R.COMBINATIONS):
        assert tuple(row["tasks"]) == tasks
        wanted = {k for k in headline if k.split("/")[0] in tasks}
        assert wanted <= set(row["metrics"])  # the official metrics of every trained task, on test
        for key in wanted:
            assert 0.0 <= row["metrics"][key]["mean"] <= 100.0
    md = (out / "report.md").read_text()
    assert "| VQA + ICR + VG |" in md and "| 70.43 |" in md and (out / "table1.png").is_file()


def test_procedure_rows_train_all_three_tasks_four_ways(tmp_path):
    config = _three_task_config(tmp_path)  # its own schedule is a curriculum: every procedure is trained
    out = tmp_path / "procedures"
    report = R.run_grid(out, seeds=2, size="tiny", config=config, rows="procedures")
    assert report["rows"] == [] and report["complete"]
    assert [r["procedure"] for r in report["procedure_rows"]] == list(R.PROCEDURES)
    for r in report["procedure_rows"]:
        assert r["finished"] == 2 and {k.split("/")[0] for k in r["metrics"]} == set(R.TASKS)
        cfg = load_experiment(out / r["runs"][0] / "config.yaml")
        assert sorted(cfg.tasks) == sorted(R.TASKS)
        assert cfg.optim.per_task_state == r["procedure"].endswith("per-task Adam")
    curriculum = load_experiment(out / report["procedure_rows"][2]["runs"][0] / "config.yaml")
    assert curriculum.schedule.kind == "curriculum" and curriculum.schedule.curriculum == "subsets"
    assert curriculum.schedule.budget == "shared" and curriculum.schedule.cycle == 2  # half of C = 4
    tests = {(x["procedure"], x["metric"]) for x in report["procedure_tests"]}
    assert ("curriculum, per-task Adam", "vqa/accuracy") not in tests  # sanity tasks report mse only
    md = (out / "report.md").read_text()
    assert "## All three tasks by training procedure" in md and "| curriculum, per-task Adam |" in md
    assert not (out / "table1.png").exists()


def test_periodic_config_reuses_table1_all_three_row_for_its_own_procedure(tmp_path):
    raw = yaml.safe_load(_three_task_config(tmp_path).read_text())
    raw["schedule"] = {"kind": "periodic", "cycle": 4}
    path = tmp_path / "periodic.yaml"
    path.write_text(yaml.safe_dump(raw))
    report = R.run_grid(tmp_path / "grid", seeds=1, size="tiny", config=path, rows="all")
    shared = report["procedure_rows"][0]
    assert shared["procedure"] == "periodic, shared Adam"
    assert shared["runs"] == report["rows"][6]["runs"]  # trained once
    assert all(r["finished"] == 1 for r in report["procedure_rows"])
