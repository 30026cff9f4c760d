"""A trained tiny model evaluates the same on a float16 copy of its feature store as on the float32
original: every metric of every task within 1 point (percent; retrieval ranks within 1), and the
VQA answer logits within 1e-3 of each other (float16 keeps 11 significant bits; measured on the
tiny world: every metric identical, logits 3e-5 apart)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vlmt import cli
from vlmt.data.datasets.sources import resolve_source
from vlmt.data.features.convert import convert
from vlmt.data.features.store import FeatureStore
from vlmt.training import checkpoint as ckpt
from vlmt.training.build import build_parts, load_experiment
from vlmt.training.evaluate import evaluate_tasks

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml")
TOLERANCE = 1.0  # metric points (percent, or ranks for medr)
LOGIT_TOLERANCE = 1e-3  # measured: 3e-5


def evaluate_with(run: Path, features: Path | None):
    overrides = [] if features is None else [f"data.features={features}"]
    cfg = load_experiment(run / "config.yaml", overrides)
    parts = build_parts(cfg, torch.device("cpu"))
    ckpt.load_weights(ckpt.find_checkpoint(run, "last"), parts.objective)
    parts.objective.eval()
    metrics = evaluate_tasks(parts.model, parts.tasks, "test", torch.device("cpu"))
    vqa = parts.tasks["vqa"]
    with torch.no_grad():
        logits = torch.cat([vqa.logits(parts.model, batch) for batch in vqa.batches("test")])
    return metrics, logits


@pytest.mark.slow
def test_a_trained_model_scores_the_same_on_float16_features(tmp_path):
    torch.set_num_threads(1)
    run = tmp_path / "run"
    short = [f"tasks.{t}.iterations=60" for t in ("vqa", "retrieval", "grounding")]
    assert cli.main(["train", CONFIG, "--out", str(run), "--set", "train.progress=false",
                     *[a for s in short for a in ("--set", s)]]) == 0
    source = resolve_source("world:tiny") / "features"
    half = tmp_path / "features16"
    convert("store", [source], half, dtype="float16")
    assert FeatureStore(half).dtype == "float16"
    full_metrics, full_logits = evaluate_with(run, None)
    half_metrics, half_logits = evaluate_with(run, half)
    assert full_metrics.keys() == half_metrics.keys()
    for key, value in full_metrics.items():
        if key.endswith("seconds"):
            continue
        assert abs(half_metrics[key] - value) <= TOLERANCE, (key, value, half_metrics[key])
    assert (half_logits - full_logits).abs().max().item() <= LOGIT_TOLERANCE
