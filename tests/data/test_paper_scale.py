"""`benchmarks/paper_scale.py` at a small scale: its writer produces every dataset in the official
layouts with valid contents (each folder validates, Genome under its id namespace) and the paper
configs (hierarchical, SVLR, composed) build their data from them; every stage reports time and peak memory."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "paper_scale.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("paper_scale", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_a_quick_run_writes_valid_data_that_both_paper_configs_build(tmp_path):
    bench = load_benchmark()
    out = tmp_path / "result.json"
    assert bench.main(["--scale", "0.002", "--stages", "validate,build", "--out", str(tmp_path / "data"),
                       "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    counts = result["write"]["counts"]
    assert counts["vqa2_questions"]["train2014"] == round(443_757 * 0.002)
    assert counts["genome_images"] == round(108_077 * 0.002)
    for stage in ("validate hier", "validate svlr", "validate composed", "build hierarchical_paper",
                  "build svlr_paper", "build composed_paper"):
        r = result[stage]
        assert "error" not in r, (stage, r)
        assert r["seconds"] > 0 and r["peak_mb"] > 0
    assert result["validate hier"]["ok"] and result["validate svlr"]["ok"] and result["validate composed"]["ok"]
    composed = " ".join(result["validate composed"]["summaries"])  # both folders' datasets, one store
    assert "Visual Genome visual_genome/" in composed and "Flickr30k Entities" in composed
    summaries = " ".join(result["validate svlr"]["summaries"])
    assert "Visual Genome visual_genome/: 216 images" in summaries
    assert result["build svlr_paper"]["summary"]["genome_regions"]["train"] > 0
    assert not (tmp_path / "data").exists()  # written data is deleted unless --keep
