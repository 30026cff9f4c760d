"""The model card (YAML metadata, intended use and limitations from the run, both papers' BibTeX)
and `TrainedModel.save`: a loaded model written as an exported folder that answers the same."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import vlmt
from vlmt.cli import main
from vlmt.errors import ConfigError


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    """The tiny config trained briefly on the default (detector) tiny world, and exported."""
    tmp = tmp_path_factory.mktemp("card")
    torch.set_num_threads(1)
    run, out = tmp / "run", tmp / "exported"
    assert main(["train", "tiny", "--out", str(run), "--set", "tasks.retrieval.iterations=30",
                 "--set", "tasks.vqa.iterations=30", "--set", "tasks.grounding.iterations=30"]) == 0
    assert main(["export", str(run), "--out", str(out)]) == 0
    return {"run": run, "model": out, "tmp": tmp}


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    head, _, _ = card[4:].partition("\n---\n")
    return yaml.safe_load(head)


def test_card_has_metadata_use_limitations_and_both_papers(exported):
    card = (exported["model"] / "README.md").read_text()
    meta = _front_matter(card)
    info = json.loads((exported["model"] / "config.json").read_text())
    assert meta["library_name"] == "vlmt" and meta["license"] == "mit"
    assert {"vlmt", "vision-language", "visual-question-answering", "phrase-grounding", "image-text-retrieval",
            "synthetic-data"} <= set(meta["tags"])
    assert meta["datasets"] == ["vlmt-synthetic-world-tiny-seed0-detector"]
    results = meta["model-index"][0]["results"]
    assert {r["task"]["name"] for r in results} == set(info["metrics"]) == {"retrieval", "vqa", "grounding"}
    for r in results:
        assert r["dataset"]["split"] == "test"
        for m in r["metrics"]:  # the card's values are config.json's metrics
            assert m["value"] == pytest.approx(info["metrics"][r["task"]["name"]][m["type"]], abs=1e-4)
    assert "accuracy" in meta["metrics"]
    # intended use and limitations, derived from the run: the world's picture size and its detector
    assert "## Intended use" in card and "## Limitations" in card
    assert "synthetic world of 128 x 128 scenes" in card and "not for photographs" in card
    assert "small detector trained on the world's Genome-like training split" in card
    assert "Multi-task Learning of Hierarchical Vision-Language Representation" in card
    assert "Nguyen, Duy-Kien and Okatani, Takayuki" in card and "CVPR" in card
    assert "Aligned Image-Word Representations Improve Inductive Transfer Across Vision-Language Tasks" in card
    assert "Gupta, Tanmay and Shih, Kevin and Singh, Saurabh and Hoiem, Derek" in card and "ICCV" in card
    assert card.count("@inproceedings{") == 2
    assert "/tmp" not in card and str(Path.home()) not in card  # no machine paths


def test_every_file_of_the_folder_is_readable_by_others(exported):
    for p in [exported["model"], *exported["model"].rglob("*")]:
        mode = p.stat().st_mode
        assert mode & stat.S_IROTH, f"{p.name}: {oct(mode)}"
        if p.is_dir():
            assert mode & stat.S_IXOTH, p.name


def test_save_writes_a_folder_that_answers_the_same(exported):
    tmp = exported["tmp"]
    from vlmt.data.synth.cache import world_dir

    picture = sorted((world_dir("tiny", 0) / "images").glob("*.png"))[:1]
    assert picture
    question = "what color is the square?"
    for source in (exported["run"], exported["model"]):  # from a run folder and from an exported one
        model = vlmt.load(source)
        out = model.save(tmp / f"saved-{source.name}")
        again = vlmt.load(out)
        pixels = np.asarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3)), dtype=np.uint8)
        for pic in [pixels, *picture]:
            assert again.answer(pic, question, top_k=3) == model.answer(pic, question, top_k=3)
            assert again.ground(pic, "a red square") == model.ground(pic, "a red square")
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in exported["model"].iterdir())
        info = json.loads((out / "config.json").read_text())
        assert info["preprocess"] == model.preprocess
        meta = _front_matter((out / "README.md").read_text())
        assert meta["library_name"] == "vlmt"
        for p in [out, *out.rglob("*")]:
            assert p.stat().st_mode & stat.S_IROTH, p.name
        with pytest.raises(ConfigError, match="already exists"):
            model.save(out)
    run_saved = json.loads((tmp / "saved-run" / "config.json").read_text())
    assert run_saved["metrics"] == {} and "Not measured" in (tmp / "saved-run" / "README.md").read_text()
    exp_saved = json.loads((tmp / "saved-exported" / "config.json").read_text())
    assert exp_saved["metrics"] == json.loads((exported["model"] / "config.json").read_text())["metrics"]
