"""Both papers on one encoder: SVLR's recognition, multiple-choice and zero-shot VQA on the
hierarchical encoder's region outputs, trained beside retrieval, VQA and grounding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import vlmt
from vlmt import config as C
from vlmt.cli import main
from vlmt.errors import ConfigError
from vlmt.training.build import build_parts, load_experiment, rebuild

MC = ["--set", "tasks.mc={type: composed_vqa_mc, layer: 2, batch_size: 16, fusion_dim: 32, iterations: 150, "
      "step: 150}", "--set", "schedule.stages=[[retrieval, vqa, grounding, recognition, mc]]"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """configs/composed_tiny.yaml trained as shipped."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("composed") / "run"
    assert main(["train", "configs/composed_tiny.yaml", "--out", str(out)]) == 0
    return out


def test_composed_tiny_trains_and_evaluates_every_task_of_both_papers(run, capsys):
    capsys.readouterr()
    assert main(["evaluate", "run", str(run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"retrieval", "vqa", "grounding", "recognition", "zero_shot"}
    assert {"object_accuracy", "attribute_accuracy"} <= set(metrics["recognition"])
    assert {"accuracy", "i2t_r1", "t2i_r1", "r1"} & set(metrics["vqa"]) and "i2t_r1" in metrics["retrieval"]
    assert "r1" in metrics["grounding"] and "accuracy" in metrics["zero_shot"]
    assert 0 < metrics["recognition"]["object_accuracy"] <= 100 and 0 <= metrics["zero_shot"]["accuracy"] <= 100
    summary = json.loads((run / "summary.json").read_text())
    assert summary["step"] == 600  # 150 updates of each of the four trained tasks


def test_the_config_round_trips_with_each_familys_options():
    cfg = load_experiment("composed_world")
    again = C.from_dict(C.to_dict(cfg), source="round trip")
    families = again.data.families
    assert again == cfg and families["vl"].answer_more_than == 8 and families["svlr"].word_dim == 64
    raw = C.to_dict(cfg)
    raw["data"]["families"]["vl"]["root"] = "elsewhere"  # the root is the section's, not a family's
    with pytest.raises(ConfigError, match="data.families.vl.root': unknown key"):
        C.from_dict(raw, source="bad")


def test_the_paper_config_composes_both_paper_configs():
    """configs/composed_paper.yaml: hierarchical_paper's data, model, tasks and optimiser, and
    svlr_paper's data section and recognition batch, on one encoder under periodic switching."""
    import dataclasses

    from vlmt.training.build import build_schedule

    cfg, hier, svlr = (load_experiment(n) for n in ("composed_paper", "hierarchical_paper", "svlr_paper"))
    for paper, family in ((hier, "vl"), (svlr, "svlr")):  # each paper's datasets and family options as they are
        assert all(cfg.data.datasets[kind] == files for kind, files in paper.data.datasets.items())
        assert cfg.data.families[family] == paper.data.families[family]
        assert (cfg.data.root, cfg.data.features) == (paper.data.root, paper.data.features)
    assert set(cfg.data.datasets) == {*hier.data.datasets, *svlr.data.datasets}
    assert all(getattr(cfg.model, f.name) == getattr(hier.model, f.name) for f in dataclasses.fields(hier.model))
    assert (cfg.model.embed_dim, cfg.model.word_hidden) == (svlr.model.embed_dim, svlr.model.word_hidden)
    assert all(cfg.tasks[t] == hier.tasks[t] for t in ("retrieval", "vqa", "grounding")) and cfg.optim == hier.optim
    assert cfg.tasks["recognition"].batch_size == svlr.tasks["recognition"].batch_size == 200
    schedule = build_schedule(cfg)
    first = [schedule.next()[0][0] for _ in range(1000)]
    counts = {t: first.count(t) for t in cfg.schedule.order}
    assert schedule.length == 180_000 and counts == {"retrieval": 333, "vqa": 389, "grounding": 139, "recognition": 139}


def test_composed_world_trains_retrieval_as_hierarchical_world():
    """Where both papers are silent the composed world config uses the hierarchical world
    config's retrieval settings, so the two models' retrieval numbers compare like for like."""
    composed, hierarchical = load_experiment("composed_world"), load_experiment("hierarchical_world")
    keys = ("negatives", "loss", "layer", "iterations", "step")  # the batch: composed keeps 16 (its time in the demo)
    assert {k: getattr(composed.tasks["retrieval"], k) for k in keys} == \
        {k: getattr(hierarchical.tasks["retrieval"], k) for k in keys}
    assert composed.tasks["retrieval"].negatives == 3 and composed.tasks["retrieval"].loss == "softmax"
    assert composed.optim.per_task_state and hierarchical.optim.per_task_state


def test_recognition_reads_the_layer_it_is_given():
    def grads(layer: int) -> dict[str, bool]:
        cfg = load_experiment("composed_tiny", [f"tasks.recognition.layer={layer}"])
        parts = build_parts(cfg, torch.device("cpu"))
        task = parts.tasks["recognition"]
        loss = task(parts.model, next(task.batches("train")))["loss"]
        loss.backward()
        model = parts.model
        return {"regions": model.regions.proj.weight.grad is not None if hasattr(model.regions, "proj") else
                any(p.grad is not None for p in model.regions.parameters()),
                "layer 1": any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.layers[0].parameters()),
                "layer 3": any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.layers[2].parameters()),
                "alignment": all(p.grad is not None for p in model.alignment.f_o.parameters())}

    assert grads(0) == {"regions": True, "layer 1": False, "layer 3": False, "alignment": True}
    assert grads(2) == {"regions": True, "layer 1": True, "layer 3": False, "alignment": True}


def test_multiple_choice_on_the_encoder_trains_the_shared_alignment_and_the_encoder(tmp_path):
    mc = "tasks.mc={type: composed_vqa_mc, layer: 2, batch_size: 8, fusion_dim: 16}"
    cfg = load_experiment("composed_tiny", [mc])
    parts = build_parts(cfg, torch.device("cpu"))
    task = parts.tasks["mc"]
    out = task(parts.model, next(task.batches("train")))
    assert torch.isfinite(out["loss"]) and out["loss"] > 0
    out["loss"].backward()
    assert all(p.grad is not None for p in task.head.parameters())
    assert parts.model.alignment.g.fc1.weight.grad is not None  # g is shared with recognition
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in parts.model.layers[1].parameters())
    assert sum(p.numel() for p in parts.tasks["zero_shot"].parameters()) == 0  # Eq. 9 has no parameters


def test_an_exported_composed_model_answers_recognizes_and_chooses_like_the_run(tmp_path):
    torch.set_num_threads(1)
    run = tmp_path / "run"
    assert main(["train", "composed_tiny", "--out", str(run), "--set", "train.max_iters=100", *MC]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "model"), "--metrics", "none"]) == 0
    loaded = vlmt.load(tmp_path / "model")
    assert loaded.heads["mc"] == "composed_vqa_mc" and loaded.heads["recognition"] == "composed_recognition"
    _, parts = rebuild(run, "best", device="cpu")
    with torch.no_grad():
        for name in ("mc", "zero_shot"):
            task, twin = parts.tasks[name], loaded.tasks[name]
            batch = next(task.batches("test"))
            # bit for bit: the same batch through the run's and the loaded model's modules (a promise)
            assert torch.equal(task.choice_scores(parts.model, batch.inputs), twin.choice_scores(loaded.model,
                                                                                                  batch.inputs))
        question = parts.data.family("svlr").vqa["test"][0]
        regions = parts.data.family("svlr").store.read(question.image_id).features
        expected = parts.tasks["mc"].choice_scores(parts.model, parts.tasks["mc"].batch_of([question]).inputs)[0]
        got = loaded.choose(question=question.question, choices=question.choices, regions=regions, zero_shot=False)
        assert {c["answer"]: c["score"] for c in got} == pytest.approx(
            {c: float(expected[i]) for i, c in enumerate(question.choices)}, abs=1e-5)
    objects = loaded.recognize(regions=regions, top_k=2)
    assert len(objects) == len(regions) and len(objects[0]["objects"]) == 2
    assert loaded.answer(question=question.question, regions=regions, top_k=3)


def test_the_recognition_layer_is_searchable(tmp_path, capsys):
    assert main(["search-layers", "composed_tiny", "--task", "recognition", "--layers", "0,2",
                 "--set", "tasks.recognition.iterations=40", "--out", str(tmp_path / "search"), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["grid"]["layer"] == [0, 2] and table["metric"] == "recognition/object_accuracy"
    assert len(table["rows"]) == 2


def test_a_composed_model_without_a_multiple_choice_head_answers_zero_shot_and_says_so(run):
    """composed_tiny as shipped has the zero-shot scorer and no multiple-choice head: `choose` answers by
    Eq. 9, and asking for Eq. 7 names the scorer it has (the served page and API share this path)."""
    model = vlmt.load(run)
    question = "what color is the square?"
    choices = ["red", "blue", "green"]
    details = model.details("choose", question=question, choices=choices, regions=np.ones((3, model.feature_dim)))
    assert details["variant"] == "zero_shot" and details["task"] == "zero_shot"
    with pytest.raises(ConfigError, match=r"choose with zero_shot=False: no head of this model answers that; choose "
                                          r"is answered by zero_shot \(zero_shot: zero_shot=True\)"):
        model.choose(question=question, choices=choices, regions=np.ones((3, model.feature_dim)), zero_shot=False)

