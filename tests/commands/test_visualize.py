"""`vlmt visualize` on a briefly trained hierarchical run of the tiny world: one Fig. 2-like picture
per question, grounding pictures, an index page linking them all, and the noun-phrase chunker."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from vlmt import cli
from vlmt.data.text.phrases import PhraseLexicon, phrase_lexicon
from vlmt.tasks.capabilities import evenly_spaced

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("vis") / "run"
    sets = [f"tasks.{t}.{k}=6" for t in ("retrieval", "vqa", "grounding") for k in ("iterations", "step")]
    sets += ["schedule.cycle=6", "train.eval_every=18", "train.checkpoint_every=18", "train.progress=false"]
    args = ["train", str(CONFIG), "--out", str(run)] + [a for s in sets for a in ("--set", s)]
    assert cli.main(args) == 0
    return run


def test_visualize_writes_pictures_and_an_index(run_dir, tmp_path, capsys):
    out = tmp_path / "pics"
    assert cli.main(["visualize", str(run_dir), "--split", "val", "--count", "2", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    paths = [Path(p["path"]) for p in result["pictures"]]
    names = sorted(p.name for p in paths)
    assert len([n for n in names if n.startswith("question_")]) == 2
    assert len([n for n in names if n.startswith("grounding_")]) == 2
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width > 300
    index = (out / "index.html").read_text()
    assert sorted(re.findall(r"src='([^']+)'", index)) == names
    question = next(p for p in result["pictures"] if Path(p["path"]).name.startswith("question_"))
    assert "VQA decoder" in question["caption"] and "ICR decoder" in question["caption"]
    assert "predicted answer" in question["caption"]


def test_a_folder_without_checkpoints_is_refused(tmp_path, capsys):
    assert cli.main(["visualize", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "not a run folder" in capsys.readouterr().err


def test_noun_phrases_are_runs_of_phrase_words_ending_on_a_phrase_end():
    lex = phrase_lexicon([["the", "red", "star"], ["a", "circle"], ["the", "big", "blue", "square"]])
    words = "what colour is the red star next to a big circle ?".split()
    assert lex.chunks(words) == [(3, 5), (8, 10)]
    assert PhraseLexicon(frozenset({"the"}), frozenset()).chunks(["the", "the"]) == []


def test_evenly_spaced_indices():
    assert evenly_spaced(10, 3) == [0, 4, 9] or evenly_spaced(10, 3) == [0, 5, 9]
    assert evenly_spaced(2, 5) == [0, 1]
    assert evenly_spaced(0, 3) == []


def test_svlr_run_gets_the_fig4_picture(tmp_path, capsys):
    run = tmp_path / "svlr"
    config = CONFIG.parent / "svlr_tiny.yaml"
    sets = ["train.max_iters=10", "train.eval_every=10", "train.checkpoint_every=10"]
    assert cli.main(["train", str(config), "--out", str(run)] + [a for s in sets for a in ("--set", s)]) == 0
    out = tmp_path / "pics"
    assert cli.main(["visualize", str(run), "--split", "test", "--count", "1", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    [picture] = result["pictures"]
    assert Path(picture["path"]).name.startswith("svlr_inference_") and "chosen answer" in picture["caption"]
    with Image.open(picture["path"]) as im:
        assert im.format == "PNG" and im.width > 500
