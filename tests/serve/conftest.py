"""Models to serve: short runs of the shipped tiny configs, exported (their gallery is the tiny
world's test pictures, in the test session's cache)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vlmt.cli import main

# a multiple-choice head beside the composed model's zero-shot scorer, so both of its `choose` scorers serve
COMPOSED_MC = ["--set", "tasks.mc={type: composed_vqa_mc, layer: 2, batch_size: 16, fusion_dim: 32, iterations: 20, "
               "step: 20}", "--set", "schedule.stages=[[retrieval, vqa, grounding, recognition, mc]]"]
EASY_CONFIG = {
    "data": {"type": "datasets", "root": None, "datasets": {"vqa": {}}, "families": {"vl": {"answer_more_than": 0}}},
    "model": {"type": "hierarchical", "dim": 16, "num_layers": 1, "heads": 2, "null_slots": 1,
              "fc_dropout": 0.0, "lstm_dropout": 0.0, "word_dim": 8},
    "tasks": {"vqa": {"type": "vqa", "batch_size": 16, "layer": 1, "iterations": 10, "step": 10}},
    "schedule": {"kind": "periodic", "cycle": 10},
    "train": {"seed": 0, "eval_every": 10, "checkpoint_every": 10, "log_every": 10, "threads": 1,
              "tensorboard": False, "progress": False},
}


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("fastapi", reason="the serving extra (pip install 'vlmt[serve]') is not installed")
    import torch

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("served")
    out = {}
    for name, config, iters in (("tiny", "tiny", 90), ("svlr", "svlr_tiny", 60)):
        run = tmp / "runs" / name
        assert main(["train", config, "--out", str(run), "--set", f"train.max_iters={iters}",
                     "--set", "train.progress=false"]) == 0
        assert main(["export", str(run), "--out", str(tmp / name), "--metrics", "none"]) == 0
        out[name] = tmp / name
    return out


@pytest.fixture(scope="session")
def family_dirs(model_dirs, tmp_path_factory) -> dict[str, Path]:
    """One exported model of every shipped family: hierarchical and SVLR (`model_dirs`), composed (with a
    multiple-choice head beside its zero-shot scorer) and easy-VQA (when the easyvqa extra is installed)."""
    tmp = tmp_path_factory.mktemp("families")
    out = dict(model_dirs)
    run = tmp / "runs" / "composed"
    assert main(["train", "composed_tiny", "--out", str(run), "--set", "train.max_iters=20",
                 "--set", "train.progress=false", *COMPOSED_MC]) == 0
    assert main(["export", str(run), "--out", str(tmp / "composed"), "--metrics", "none"]) == 0
    out["composed"] = tmp / "composed"
    try:
        import easy_vqa  # noqa: F401

        from vlmt.data.prepare.easy_vqa import ensure_easy_vqa
    except ImportError:
        return out
    data = ensure_easy_vqa(out=tmp / "easy_vqa", limit=12)
    config = tmp / "easy.yaml"
    config.write_text(yaml.safe_dump({**EASY_CONFIG, "data": {**EASY_CONFIG["data"], "root": str(data)}}))
    assert main(["train", str(config), "--out", str(tmp / "runs" / "easy")]) == 0
    assert main(["export", str(tmp / "runs" / "easy"), "--out", str(tmp / "easy"), "--metrics", "none"]) == 0
    out["easy"] = tmp / "easy"
    return out


@pytest.fixture(scope="session")
def picture(model_dirs) -> bytes:
    """A test picture of the tiny world, as uploaded bytes."""
    import json

    from vlmt.config import from_dict
    from vlmt.serve.gallery import find_gallery
    from vlmt.training.build import load_plugins

    load_plugins()
    experiment = json.loads((model_dirs["tiny"] / "config.json").read_text())["experiment"]
    return find_gallery(from_dict(experiment).data).images[0].path.read_bytes()
