"""`vlmt reproduce svlr` on the tiny world with one seed and a few iterations per run: every
report file is written and holds the Table 1 rows, Table 2 and Fig. 7 (attention agreement), the
pre-training comparison, Fig. 5 data, Table 4 and Fig. 4 examples."""

from __future__ import annotations

import json

import pytest
import torch

from vlmt.errors import ConfigError
from vlmt.experiments.reproduce_svlr import run_grid


@pytest.mark.slow
def test_run_grid_writes_the_report(tmp_path):
    torch.set_num_threads(1)
    messages: list[str] = []
    result = run_grid(tmp_path, seeds=1, size="tiny", progress=messages.append, max_iters=5)
    for name in ("report.md", "report.json", "fig5_transfer_objects.png", "fig4_inference_1.png",
                 "fig7_attention_agreement.png"):
        assert (tmp_path / name).is_file() and (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "fig5_transfer_objects.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["table1"] == json.loads(json.dumps(result["table1"]))
    assert set(saved["table1"]) == {"VQA Only", "Joint Multitask", "Joint SVLR", "Zero-Shot VQA"}
    for cells in saved["table1"].values():
        assert 0.0 <= cells["overall"]["mean"] <= 100.0 and len(cells["overall"]["values"]) == 1
    assert saved["shortened"] is True and saved["fig5"]["classes"]
    assert set(saved["table4"]["input"]) == set(saved["table4"]["svlr_g"])
    # Table 2 / Fig. 7: every VQA model and the centre baseline, on the questions that name an object
    table2 = saved["table2"]
    assert set(table2["models"]) == {"Centre baseline", "VQA Only", "Joint Multitask", "Joint SVLR",
                                     "Genome, then Joint SVLR"}
    assert all(-1.0 <= cell["mean"] <= 1.0 for cell in table2["models"].values())
    assert 0 < table2["questions"]["kept"] <= table2["questions"]["questions"]
    fig7 = saved["fig7"]
    assert fig7["counts"][-1] == table2["questions"]["kept"]  # t = 1: every question
    assert fig7["curves"]["Joint SVLR"][-1] == pytest.approx(table2["models"]["Joint SVLR"]["mean"], abs=1e-3)
    # Sec. 5.2: joint SVLR started from the Genome-only run of its seed, compared with joint from scratch
    assert len(saved["pretraining"]["genome_then_joint"]["values"]) == 1
    run = tmp_path / "runs" / "genome_then_joint" / "seed0"
    assert "initialised the model's" in (run / "train.log").read_text()
    assert (run / "data.json").is_file()
    report = (tmp_path / "report.md").read_text()
    assert "| Joint SVLR |" in report and "Zero-Shot VQA" in report
    assert "## Table 2" in report and "## Pre-training on Genome first" in report
    # a second call reuses the finished runs instead of training them again
    messages.clear()
    run_grid(tmp_path, seeds=1, size="tiny", progress=messages.append, max_iters=5)
    assert any("reusing joint_svlr/seed0" in m for m in messages)
    # but never a finished run of another config
    with pytest.raises(ConfigError, match="another config"):
        run_grid(tmp_path, seeds=1, size="tiny", progress=messages.append, max_iters=6)
