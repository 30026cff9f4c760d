"""`vlmt reproduce composed` on the tiny world, shortened: every row and comparison is in the
report, and a second run reuses the finished runs."""

from __future__ import annotations

import json

import torch

from vlmt.experiments.reproduce_composed import COLUMNS, ROWS, run_grid


def test_the_grid_reports_every_row_and_reuses_its_runs(tmp_path):
    torch.set_num_threads(1)
    report = run_grid(tmp_path, seeds=1, size="tiny", overrides=["train.max_iters=40"], workers=1)
    assert report["complete"] and report["runs_done"] == 2 * len(ROWS) + 1
    cells = report["cells"]
    assert cells["hierarchical"]["vqa/accuracy"]["n"] == 1
    assert cells["hierarchical"]["recognition/object_accuracy"]["n"] == 0  # not trained there
    assert cells["zero_shot-pts"]["vqa/accuracy"]["n"] == 0 and cells["zero_shot-pts"]["zero_shot/accuracy"]["n"] == 1
    assert cells["svlr_zero_shot"]["zero_shot/accuracy"]["n"] == 1
    whats = {c["what"] for c in report["comparisons"]}
    assert {"rec_layer0 − hierarchical", "rec_layerL-pts − hierarchical-pts", "zero_shot − svlr_zero_shot",
            "rec_layerL − rec_layer0", "hierarchical-pts − hierarchical"} <= whats
    layer_l = json.loads((tmp_path / "runs" / "rec_layerL" / "seed0" / "summary.json").read_text())
    assert layer_l["step"] == 40
    text = (tmp_path / "report.md").read_text()
    assert all(title in text for _, title in COLUMNS) and "Welch" in text
    again = run_grid(tmp_path, seeds=1, size="tiny", overrides=["train.max_iters=40"], workers=1)
    assert all(r["reused"] for r in again["runs"].values())
    assert again["cells"] == report["cells"]
