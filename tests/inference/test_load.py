"""`vlmt export` and `vlmt.load`: a trained model leaves its run.

The acceptance of a standalone model: train a shipped config, export it, take the run, the world
and the cache away, and use the model from a new Python process in another folder. And the CLI
and the API are one path: the logits of `vlmt evaluate run` (the run rebuilt from its data) and of
`vlmt.load` are bit-identical on the same inputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import vlmt
from vlmt.cli import main
from vlmt.errors import ConfigError, VlmtError
from vlmt.models.heads.word_region import recognition_scores
from vlmt.training.build import rebuild

# runs in a fresh interpreter: loads a model folder, makes each call twice, prints the results
LOAD_SCRIPT = """
import json, sys
import vlmt
model = vlmt.load(sys.argv[1])
out = {"heads": model.heads, "calls": []}
for method, args, kwargs in json.loads(sys.argv[2]):
    first = getattr(model, method)(*args, **kwargs)
    second = getattr(model, method)(*args, **kwargs)
    first = first.tolist() if hasattr(first, "tolist") else first
    second = second.tolist() if hasattr(second, "tolist") else second
    # bit for bit: the same call twice in one process takes the same kernels (vlmt promises this)
    out["calls"].append({"method": method, "result": first, "same": first == second})
print(json.dumps(out))
"""


@contextlib.contextmanager
def taken_away(*paths: Path) -> Iterator[None]:
    """The paths moved out of reach (renamed) for the block, then put back."""
    moved = []
    try:
        for path in paths:
            hidden = path.with_name(f".gone-{path.name}")
            os.replace(path, hidden)
            moved.append((hidden, path))
        yield
    finally:
        for hidden, path in moved:
            os.replace(hidden, path)


def load_elsewhere(model_dir: Path, calls: list, where: Path) -> dict:
    """Run LOAD_SCRIPT in a new process in `where`, with a cache folder that does not exist (and
    must still not exist afterwards)."""
    where.mkdir(parents=True, exist_ok=True)
    no_cache = where / "no-cache"
    env = {**os.environ, "VLMT_CACHE": str(no_cache), "PYTHONHASHSEED": "random"}
    proc = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, os.path.relpath(model_dir, where), json.dumps(calls)],
                          cwd=where, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not no_cache.exists(), "loading a model folder wrote into the cache"
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory, tiny_world_folder) -> Iterator[Path]:
    """A cache of this module's own, so taking the world away does not disturb other tests; it
    starts with a copy of the session's tiny world (generating one takes most of a minute)."""
    cache = tmp_path_factory.mktemp("cache")
    shutil.copytree(tiny_world_folder, cache / "worlds" / tiny_world_folder.name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLMT_CACHE", str(cache))
        torch.set_num_threads(1)
        yield cache


def train_and_export(config: str, tmp: Path, *extra: str) -> tuple[Path, Path]:
    run, model = tmp / "run", tmp / "exported"
    assert main(["train", config, "--out", str(run)]) == 0
    assert main(["export", str(run), "--out", str(model), *extra]) == 0
    return run, model


@pytest.fixture(scope="module")
def tiny(private_cache, tmp_path_factory) -> dict[str, Path]:
    """The shipped tiny config (hierarchical, three tasks) trained, exported, and one test picture."""
    tmp = tmp_path_factory.mktemp("tiny")
    run, model = train_and_export("tiny", tmp)
    picture = tmp / "x.png"
    shutil.copyfile(sorted((private_cache / "worlds").glob("tiny-*/images/*.png"))[0], picture)
    return {"run": run, "model": model, "picture": picture, "cache": private_cache}


@pytest.fixture(scope="module")
def svlr(private_cache, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("svlr")
    run, model = train_and_export("svlr_tiny", tmp)
    picture = tmp / "x.png"
    shutil.copyfile(sorted((private_cache / "worlds").glob("tiny-*/images/*.png"))[1], picture)
    return {"run": run, "model": model, "picture": picture, "cache": private_cache}


def check_ranked(answers: list[dict], k: int, pool: list[str]) -> None:
    assert len(answers) == k
    assert all(a["answer"] in pool and 0.0 <= a["score"] <= 1.0 for a in answers)
    scores = [a["score"] for a in answers]
    assert scores == sorted(scores, reverse=True)


# -- acceptance ----------------------------------------------------------------------------------


def test_exported_tiny_model_answers_in_a_new_process_without_run_world_or_cache(tiny, tmp_path):
    model_dir = tiny["model"]
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "README.md", "answers.json", "config.json", "detector", "model.safetensors", "region_extractor",
        "vl_assets.json", "vocab.json"]
    card = (model_dir / "README.md").read_text()
    assert "vlmt.load(" in card and "## Metrics (test split)" in card and "| vqa | accuracy |" in card
    pool = json.loads((model_dir / "answers.json").read_text())["answers"]
    calls = [["answer", ["x.png", "what color is the square?"], {"top_k": 5}],
             ["ground", ["x.png", "a red square next to a blue circle"], {}],
             ["retrieve", [["x.png", "x.png"], ["a red square", "two blue circles", "a green triangle"]], {}]]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copyfile(tiny["picture"], elsewhere / "x.png")
    with taken_away(tiny["run"], tiny["cache"]):
        out = load_elsewhere(model_dir, calls, elsewhere)
    assert out["heads"] == {"retrieval": "retrieval", "vqa": "vqa", "grounding": "grounding"}
    answer, ground, retrieve = out["calls"]
    assert all(c["same"] for c in out["calls"])
    check_ranked(answer["result"], 5, pool)
    assert ground["result"] and all(len(g["box"]) == 4 and g["phrase"] for g in ground["result"])
    scores = np.asarray(retrieve["result"])
    assert scores.shape == (2, 3) and ((scores >= 0) & (scores <= 1)).all()
    # the same picture twice scores the same, to rounding: the two rows of one batch may take different
    # kernel paths (oneDNN / MKL block a batch by row position and CPU), so they need not agree bit for bit
    np.testing.assert_allclose(scores[0], scores[1], rtol=0, atol=1e-6)


def test_exported_svlr_model_recognizes_and_chooses_in_a_new_process(svlr, tmp_path):
    model_dir = svlr["model"]
    assert {"word_vectors.safetensors", "hypernyms.json", "svlr_assets.json", "region_extractor"} <= {
        p.name for p in model_dir.iterdir()}
    labels = json.loads((model_dir / "svlr_assets.json").read_text())
    choices = ["red", "blue", "green", "yellow"]
    calls = [["recognize", ["x.png"], {"top_k": 2}],
             ["choose", ["x.png", "what color is the square?", choices], {}],
             ["choose", ["x.png", "what color is the square?", choices], {"zero_shot": True}]]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copyfile(svlr["picture"], elsewhere / "x.png")
    with taken_away(svlr["run"], svlr["cache"]):
        out = load_elsewhere(model_dir, calls, elsewhere)
    assert set(out["heads"].values()) == {"svlr_recognition", "svlr_vqa_mc", "svlr_zero_shot"}
    recognize, choose, zero_shot = out["calls"]
    assert all(c["same"] for c in out["calls"])
    assert recognize["result"] and all(len(r["objects"]) == 2 and len(r["attributes"]) == 2
                                       for r in recognize["result"])
    assert all(o["label"] in labels["object_labels"] for r in recognize["result"] for o in r["objects"])
    assert all(0.0 <= a["score"] <= 1.0 for r in recognize["result"] for a in r["attributes"])
    for ranked in (choose["result"], zero_shot["result"]):
        assert sorted(c["answer"] for c in ranked) == sorted(choices)
        assert [c["score"] for c in ranked] == sorted((c["score"] for c in ranked), reverse=True)
    assert choose["result"] != zero_shot["result"]  # two different scorers (Eq. 7 and Eq. 9)


EASY_CONFIG = {
    "data": {"type": "datasets", "root": None, "datasets": {"vqa": {}}, "families": {"vl": {"answer_more_than": 0}}},
    "model": {"type": "hierarchical", "dim": 16, "num_layers": 1, "heads": 2, "null_slots": 1,
              "fc_dropout": 0.0, "lstm_dropout": 0.0, "word_dim": 8},
    "tasks": {"vqa": {"type": "vqa", "batch_size": 16, "layer": 1, "iterations": 30, "step": 30}},
    "schedule": {"kind": "periodic", "cycle": 10},
    "train": {"seed": 0, "eval_every": 30, "checkpoint_every": 30, "log_every": 10, "threads": 1,
              "tensorboard": False, "progress": False},
}


def test_exported_easy_vqa_model_answers_an_easy_vqa_png(private_cache, tmp_path):
    pytest.importorskip("easy_vqa", reason="the optional extra easy-vqa (pip install 'vlmt[easyvqa]') is not installed")
    from vlmt.data.prepare.easy_vqa import ensure_easy_vqa

    data = ensure_easy_vqa(out=tmp_path / "easy_vqa", limit=12)
    config = tmp_path / "easy.yaml"
    config.write_text(yaml.safe_dump({**EASY_CONFIG, "data": {**EASY_CONFIG["data"], "root": str(data)}}))
    run, model_dir = train_and_export(str(config), tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copyfile(data / "images" / "1000003.png", elsewhere / "shape.png")
    pool = json.loads((model_dir / "answers.json").read_text())["answers"]
    with taken_away(run, data, private_cache):
        out = load_elsewhere(model_dir, [["answer", ["shape.png", "What color is the shape?"], {"top_k": 5}]],
                             elsewhere)
    assert out["calls"][0]["same"]
    check_ranked(out["calls"][0]["result"], 5, pool)
    assert (model_dir / "region_extractor" / "region_cnn.safetensors").is_file()


# -- one path: evaluate and load give the same logits ----------------------------------------------


@pytest.mark.parametrize("source", ["exported", "run"])
def test_load_and_evaluate_run_give_bit_identical_vqa_logits(tiny, source):
    _, parts = rebuild(tiny["run"], "best", device="cpu")
    loaded = vlmt.load(tiny["model"] if source == "exported" else tiny["run"])
    task, twin = parts.tasks["vqa"], loaded.tasks["vqa"]
    n = 0
    with torch.no_grad():
        for batch in task.batches("test"):
            # bit for bit: evaluate and vlmt.load run the same modules and weights on the same batch (a promise)
            assert torch.equal(task.logits(parts.model, batch), twin.logits(loaded.model, batch))
            n += len(batch["tokens"])
        assert n == task.num_examples("test") > 0
        # the API's own path (question text -> tokens; regions given) on single test questions
        for index in range(4):
            batch, info = task.example_batch("test", index)
            regions = batch["region_features"][0, batch["region_mask"][0]].numpy()
            details = loaded.details("answer", question=info["question"], regions=regions, top_k=len(task.pool.answers))
            assert details["words"] == info["words"] and details["unknown_words"] == []
            expected = torch.sigmoid(task.logits(parts.model, batch))[0]
            got = {a["answer"]: a["score"] for a in details["answers"]}
            # bit for bit: one question, the same shapes and kernels through both paths (a promise)
            assert got == {a: float(expected[i]) for i, a in enumerate(task.pool.answers)}


def test_load_and_evaluate_run_give_bit_identical_svlr_scores(svlr):
    _, parts = rebuild(svlr["run"], "best", device="cpu")
    loaded = vlmt.load(svlr["model"])
    task, twin = parts.tasks["vqa"], loaded.tasks["vqa"]
    with torch.no_grad():
        for batch in task.batches("test"):
            # bit for bit: the same batch through the run's and the loaded model's modules (a promise)
            assert torch.equal(task.choice_scores(parts.model, batch.inputs), twin.choice_scores(loaded.model,
                                                                                                    batch.inputs))
        data = parts.data.family("svlr")
        question = data.vqa["test"][0]
        regions = data.store.read(question.image_id).features
        from vlmt.tasks.svlr_batches import vqa_batch

        expected = task.choice_scores(parts.model, vqa_batch(data, [question]).inputs)[0]
        got = loaded.choose(question=question.question, choices=question.choices, regions=regions)
        assert {c["answer"]: c["score"] for c in got} == {c: float(expected[i]) for i, c in enumerate(question.choices)}
        objects, _ = recognition_scores(parts.model, torch.from_numpy(regions))
        ranked = loaded.recognize(regions=regions, top_k=1)
        assert [r["objects"][0]["label"] for r in ranked] == [data.object_labels[i]
                                                             for i in objects.argmax(1).tolist()]


# -- choices and errors ------------------------------------------------------------------------------


def test_an_image_may_be_a_path_a_pil_image_or_an_array(tiny):
    model = vlmt.load(tiny["model"])
    question = "what color is the square?"
    pixels = np.asarray(Image.open(tiny["picture"]).convert("RGB"))
    by_path = model.answer(tiny["picture"], question, top_k=3)
    assert by_path == model.answer(Image.open(tiny["picture"]), question, top_k=3)
    assert by_path == model.answer(pixels, question, top_k=3)
    feats, boxes, _ = model.regions(pixels)
    assert by_path == model.answer(question=question, regions=feats, boxes=boxes, top_k=3)


def test_a_method_without_its_head_names_the_heads_the_model_has(tiny, svlr):
    with pytest.raises(ConfigError, match=r"recognize: this model has no task that offers it; its heads: "
                                          r"retrieval \(retrieval\), vqa \(vqa\), grounding \(grounding\); "
                                          r"its methods: retrieve, rank, answer, ground"):
        vlmt.load(tiny["model"]).recognize(tiny["picture"])
    with pytest.raises(ConfigError, match=r"answer: this model has no task that offers it; its heads: recognition"):
        vlmt.load(svlr["model"]).answer(svlr["picture"], "what color is it?")
    with pytest.raises(AttributeError, match="no_such_call"):  # a name no task declares is no method at all
        vlmt.load(svlr["model"]).no_such_call()


def test_bad_inputs_get_clear_errors(tiny, tmp_path):
    model = vlmt.load(tiny["model"])
    with pytest.raises(VlmtError, match="nope.png"):
        model.answer(tmp_path / "nope.png", "what color is the square?")
    with pytest.raises(VlmtError, match=r"regions: expected \(T, \d+\) region features"):
        model.answer(question="what color?", regions=np.zeros((3, 5)))
    with pytest.raises(VlmtError, match="top_k: must be >= 1"):
        model.answer(tiny["picture"], "what color is the square?", top_k=0)
    with pytest.raises(VlmtError, match="no such folder"):
        vlmt.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VlmtError, match="neither a model folder"):
        vlmt.load(tmp_path / "empty")


def test_export_picks_a_checkpoint_by_step_and_refuses_to_overwrite(tiny, tmp_path, capsys):
    steps = sorted(p.name for p in (tiny["run"] / "checkpoints").glob("step_*"))
    step = int(steps[0].removeprefix("step_"))
    out = tmp_path / "by-step"
    assert main(["export", str(tiny["run"]), "--out", str(out), "--checkpoint", str(step), "--metrics", "none",
                 "--json"]) == 0
    info = json.loads((out / "config.json").read_text())
    assert info["checkpoint"]["step"] == step and info["metrics"] == {}
    assert "Not measured at export" in (out / "README.md").read_text()
    printed = json.loads(capsys.readouterr().out)
    assert printed["bytes"] == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert main(["export", str(tiny["run"]), "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(tiny["run"]), "--out", str(tmp_path / "x"), "--checkpoint", "7"]) == 1
    err = capsys.readouterr().err
    assert "no checkpoint of step 7" in err and steps[-1] in err
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))


def test_loading_a_run_folder_reads_its_chosen_checkpoint(tiny):
    best = vlmt.load(tiny["run"])
    exported = vlmt.load(tiny["model"])
    question = "what shape is the red object?"
    assert best.answer(tiny["picture"], question) == exported.answer(tiny["picture"], question)
