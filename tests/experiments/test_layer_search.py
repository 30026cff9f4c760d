"""`vlmt search-layers`: grid mechanics on the trainer check config (seconds), plus resume/reuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vlmt import cli
from vlmt.errors import ConfigError
from vlmt.experiments import grid_runs as G
from vlmt.experiments.layer_search import SearchCell, cell_config, parse_int_list
from vlmt.training.build import load_experiment

ROOT = Path(__file__).resolve().parents[2]
SANITY = ROOT / "configs" / "sanity.yaml"
FAST = ["--set", "train.max_iters=6", "--set", "train.eval_every=3", "--set", "train.progress=false",
        "--set", "train.tensorboard=false", "--set", "schedule.cycle=10"]


def _search(out: Path, *extra: str) -> dict:
    argv = ["search-layers", str(SANITY), "--task", "map_b", "--out", str(out), "--json", *FAST, *extra]
    return argv


def test_grid_trains_only_the_task_and_ranks_by_validation(tmp_path, capsys):
    out = tmp_path / "search"
    assert cli.main(_search(out, "--layers", "1,2", "--batch-sizes", "8,16")) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["split"] == "val" and table["metric"] == "map_b/mse" and table["mode"] == "min"
    assert [(r["layer"], r["batch_size"]) for r in table["rows"]] == [(1, 8), (1, 16), (2, 8), (2, 16)]
    # each cell is its own run folder holding a single-task config with the cell's values
    for row in table["rows"]:
        (run,) = row["runs"]
        saved = load_experiment(out / run / "config.yaml")
        assert list(saved.tasks) == ["map_b"]
        assert saved.tasks["map_b"].layer == row["layer"]
        assert saved.tasks["map_b"].batch_size == row["batch_size"]
        # the table's number is the run's validation record at its best checkpoint
        best = json.loads((out / run / "checkpoints" / "best.json").read_text())
        assert row["val"]["map_b/mse"]["values"] == [pytest.approx(best["value"])]
        records = [json.loads(line) for line in (out / run / "metrics.jsonl").read_text().splitlines()]
        assert not any(r["split"] == "test" for r in records)
    # the best row is the lowest mse (mode min), marked in JSON and Markdown
    means = [r["val"]["map_b/mse"]["mean"] for r in table["rows"]]
    best_rows = [r for r in table["rows"] if r["best"]]
    assert len(best_rows) == 1 and best_rows[0]["val"]["map_b/mse"]["mean"] == min(means)
    assert table["best"]["batch_size"] == best_rows[0]["batch_size"] and table["complete"]
    md = (out / "layer_search.md").read_text()
    best_line = next(line for line in md.splitlines() if line.startswith("| **best**"))
    assert f"| {best_rows[0]['layer']} | {best_rows[0]['batch_size']} |" in best_line
    assert json.loads((out / "layer_search.json").read_text()) == table


def test_second_run_reuses_finished_cells_and_resumes_interrupted_ones(tmp_path, capsys):
    out = tmp_path / "search"
    assert cli.main(_search(out, "--layers", "1", "--seeds", "2")) == 0
    first = json.loads(capsys.readouterr().out)
    runs = [out / r for r in first["rows"][0]["runs"]]
    assert len(runs) == 2 and first["rows"][0]["val"]["map_b/mse"]["n"] == 2
    stamp = (runs[0] / "metrics.jsonl").stat().st_mtime_ns
    (runs[1] / "summary.json").unlink()  # as if killed after its last checkpoint
    assert cli.main(_search(out, "--layers", "1", "--seeds", "2")) == 0
    captured = capsys.readouterr()
    second = json.loads(captured.out)
    assert "finished before, reused" in captured.err and "resuming" in captured.err
    assert (runs[0] / "metrics.jsonl").stat().st_mtime_ns == stamp  # not retrained
    assert (runs[1] / "summary.json").is_file()
    assert second["rows"][0]["val"]["map_b/mse"]["values"] == first["rows"][0]["val"]["map_b/mse"]["values"]


def test_cell_folder_of_another_config_is_refused(tmp_path, capsys):
    out = tmp_path / "search"
    assert cli.main(_search(out, "--layers", "1")) == 0
    capsys.readouterr()
    argv = _search(out, "--layers", "1") + ["--set", "optim.lr=0.01"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "holds a run of a different config (optim.lr)" in err and "Traceback" not in err


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert cli.main(["search-layers", str(SANITY), "--task", "map_bb", "--out", str(tmp_path)]) == 1
    assert "no task 'map_bb'; did you mean 'map_b'?" in capsys.readouterr().err
    assert cli.main(["search-layers", str(SANITY), "--task", "map_a", "--out", str(tmp_path),
                     "--layers", "1,x"]) == 1
    assert "--layers: expected comma-separated integers >= 0" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="values must be >= 1"):
        parse_int_list("0,1", option="--batch-sizes")
    assert parse_int_list("0,1", option="--layers", minimum=0) == [0, 1]  # layer 0: the input encoders


def test_subset_filters_schedule_and_best_metric():
    raw = yaml.safe_load(SANITY.read_text())
    raw["schedule"] = {"kind": "curriculum", "cycle": 10, "stages": [["map_a"], ["map_a", "map_b"]],
                       "order": ["map_a", "map_b"]}
    raw["train"]["best_metric"] = "map_a/mse"
    sub = G.subset_tasks(raw, ["map_b"], source="x")
    assert list(sub["tasks"]) == ["map_b"]
    assert sub["schedule"]["stages"] == [["map_b"]] and sub["schedule"]["order"] == ["map_b"]
    assert sub["train"]["best_metric"] is None
    assert raw["train"]["best_metric"] == "map_a/mse"  # the input is left alone
    cfg = cell_config(raw, "map_b", SearchCell(layer=1, batch_size=4, step=7, iterations=50, seed=9), source="x")
    t = cfg.tasks["map_b"]
    assert (t.layer, t.batch_size, t.step, t.iterations, cfg.train.seed) == (1, 4, 7, 50, 9)


@pytest.mark.slow
def test_layer_search_on_the_tiny_world_sets_the_decoder_layer(tmp_path, capsys):
    """The real model: the grounding decoder read at layers 1 and 3 of the tiny encoder (a few seconds)."""
    out = tmp_path / "search"
    assert cli.main(["search-layers", str(ROOT / "configs" / "tiny.yaml"), "--task", "grounding", "--out", str(out),
                     "--layers", "1,3", "--json", "--set", "train.max_iters=3", "--set", "train.progress=false"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["metric"] == "grounding/r1" and table["mode"] == "max"
    assert [r["layer"] for r in table["rows"]] == [1, 3]
    for row in table["rows"]:
        assert {"grounding/r1", "grounding/r5", "grounding/r10"} <= set(row["val"])
        saved = load_experiment(out / row["runs"][0] / "config.yaml")
        assert list(saved.tasks) == ["grounding"] and saved.tasks["grounding"].layer == row["layer"]
        assert saved.train.best_metric is None  # the file's vqa/accuracy does not apply to a grounding-only run
    assert sum(r["best"] for r in table["rows"]) == 1


def test_only_the_first_torchrun_process_reports(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")  # what torchrun sets in the second process
    out = tmp_path / "search"
    assert cli.main(_search(out, "--layers", "1")) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert (out / "layer_search.json").is_file()  # the grid itself ran
