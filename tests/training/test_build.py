"""The parts a run is built from do not depend on what the data cache already held."""

from __future__ import annotations

from pathlib import Path

import torch

from vlmt.training.build import build_parts, load_experiment

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


def test_initial_weights_are_the_same_whether_the_world_is_generated_or_cached(tmp_path, monkeypatch):
    """Generating the world trains its region extractor, which reseeds torch's generator: before
    the fix a run on a fresh cache started from other weights than the same run later - and under
    torchrun the first process (which generates) from other weights than the others (which wait)."""
    monkeypatch.setenv("VLMT_CACHE", str(tmp_path / "cache"))
    cfg = load_experiment(CONFIG)
    fresh = build_parts(cfg, torch.device("cpu")).objective  # generates world:tiny into the empty cache
    assert (tmp_path / "cache" / "worlds").is_dir()
    torch.manual_seed(12345)  # whatever the generators hold before, build_parts seeds them itself
    cached = build_parts(cfg, torch.device("cpu")).objective
    a, b = fresh.state_dict(), cached.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
