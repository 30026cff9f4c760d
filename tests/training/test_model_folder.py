"""A trained model's own folder (RUN/model, and what `vlmt export` copies): config.json and the
data's assets are enough to rebuild the model and its heads with no dataset; word vectors travel as
the rows the model uses, not the whole vector file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_model

from vlmt import config as C
from vlmt.data.synth.cache import ensure_world
from vlmt.errors import DataError
from vlmt.tasks.svlr_text import WordTable
from vlmt.training import checkpoint as ckpt
from vlmt.training.build import build_from_model_folder, build_parts, save_model_folder


@pytest.fixture(scope="module")
def world() -> Path:
    return ensure_world("tiny")


def saved(cfg: C.ExperimentConfig, folder: Path):
    """Build `cfg` from its data, save its model folder with the weights; the built parts."""
    parts = build_parts(cfg, torch.device("cpu"))
    save_model_folder(folder, cfg, parts)
    save_model(parts.objective, str(folder / "model.safetensors"))
    return parts


def test_hierarchical_model_with_word_vectors_rebuilds_without_its_data(world, tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("what 1 0 0 0 0\nis 0 1 0 0 0\npicture 0 0 1 0 0\nunused 0 0 0 1 0\n")
    data_root = tmp_path / "world"
    shutil.copytree(world, data_root)
    cfg = C.from_dict({"data": {"type": "datasets", "root": str(data_root),
                                "datasets": {"vqa": {}, "captions": {}, "entities": {}},
                                "families": {"vl": {"answer_more_than": 1, "word_vectors": str(vectors)}}},
                       "model": {"type": "hierarchical", "dim": 16, "num_layers": 2, "heads": 2, "word_dim": 300},
                       "tasks": {"vqa": {"layer": 2}, "grounding": {"layer": 1}}})
    folder = tmp_path / "model"
    parts = saved(cfg, folder)
    vectors.unlink()
    shutil.rmtree(data_root)
    info, rebuilt = build_from_model_folder(folder)
    ckpt.load_weights(folder, rebuilt.objective)
    assert info["model_type"] == "hierarchical" and info["tasks"] == {"vqa": "vqa", "grounding": "grounding"}
    assert rebuilt.model.config == parts.model.config and rebuilt.model.config.freeze_word_vectors
    embedding = rebuilt.model.language.embedding.weight
    assert torch.equal(embedding, parts.model.language.embedding.weight) and not embedding.requires_grad
    saved_vl, built_vl = rebuilt.data.family("vl"), parts.data.family("vl")
    assert embedding[saved_vl.vocab.index("picture")].tolist() == [0, 0, 1, 0, 0]
    assert saved_vl.vocab.tokens == built_vl.vocab.tokens
    assert rebuilt.tasks["vqa"].pool.answers == parts.tasks["vqa"].pool.answers
    assert saved_vl.phrases.to_dict() == built_vl.assets.phrases.to_dict()
    assert list(rebuilt.data.families) == ["vl"]  # the family the run built, and only it
    for key, value in parts.objective.state_dict().items():
        assert torch.equal(rebuilt.objective.state_dict()[key], value), key
    assert not rebuilt.tasks["vqa"].has_examples


def test_fine_tuned_word_vectors_stay_trainable_in_the_rebuilt_model(world, tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("what 1 0 0 0 0\nis 0 1 0 0 0\npicture 0 0 1 0 0\n")
    cfg = C.from_dict({"data": {"type": "datasets", "root": str(world), "datasets": {"vqa": {}},
                                "families": {"vl": {"answer_more_than": 1, "word_vectors": str(vectors)}}},
                       "model": {"type": "hierarchical", "dim": 16, "num_layers": 1, "heads": 2,
                                 "freeze_word_vectors": False},
                       "tasks": {"vqa": {"layer": 1}}})
    folder = tmp_path / "model"
    parts = saved(cfg, folder)
    assert parts.model.language.embedding.weight.requires_grad
    assert parts.model.config.freeze_word_vectors is False
    _, rebuilt = build_from_model_folder(folder)
    assert rebuilt.model.config.freeze_word_vectors is False
    assert rebuilt.model.language.embedding.weight.requires_grad


def test_svlr_assets_keep_only_the_word_vector_rows_the_model_uses(world, tmp_path):
    base = {"data": {"type": "datasets", "root": str(world), "datasets": {"vqa_mc": {}, "genome": {}},
                     "families": {"svlr": {"word_dim": 8}}},
            "model": {"type": "svlr", "embed_dim": 8, "word_hidden": 8, "region_hidden": 16},
            "tasks": {"recognition": {"type": "svlr_recognition"}, "vqa": {"type": "svlr_vqa_mc", "fusion_dim": 8}}}
    used = build_parts(C.from_dict(base), torch.device("cpu")).data.family("svlr").words.tokens()
    rng = np.random.default_rng(0)
    vectors = tmp_path / "vectors.txt"
    extra = ["zebra", "xylophone", "quasar"]
    rows = {w: rng.normal(size=8).round(4) for w in [*used, *extra]}
    vectors.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in rows.items()))
    cfg = C.from_dict({**base, "data": {**base["data"], "families": {"svlr": {"word_dim": 8,
                                                                               "word_vectors": str(vectors)}}}})
    folder = tmp_path / "model"
    parts = saved(cfg, folder)
    table = WordTable.load(folder)
    assert sorted(table.tokens()) == sorted(used) and not table.fallback
    assert all(np.allclose(table.vector(w), rows[w], atol=1e-6) for w in used)
    assert "zebra" not in table and (folder / "word_vectors.safetensors").stat().st_size < vectors.stat().st_size
    vectors.unlink()
    _, rebuilt = build_from_model_folder(folder)
    saved_svlr, built_svlr = rebuilt.data.family("svlr"), parts.data.family("svlr")
    assert saved_svlr.object_labels == built_svlr.object_labels
    assert saved_svlr.attribute_labels == built_svlr.attribute_labels
    for a, b in zip(saved_svlr.label_vectors(), built_svlr.assets.label_vectors()):
        assert np.array_equal(a, b)
    question = built_svlr.vqa["test"][0]
    again = saved_svlr.reader().question(question.question, list(question.choices))
    assert (again.bins, again.nouns, again.choice_words) == (question.bins, question.nouns, question.choice_words)


def test_a_broken_model_folder_names_the_file(world, tmp_path):
    cfg = C.load_config("tiny")
    folder = tmp_path / "model"
    saved(cfg, folder)
    (folder / "vl_assets.json").write_text(json.dumps({"phrases": None}))
    with pytest.raises(DataError, match=r"vl_assets.json.*feature_dim"):
        build_from_model_folder(folder)
    (folder / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(DataError, match=r"config.json.*not a vlmt model description"):
        build_from_model_folder(folder)


def test_a_saved_word_table_is_the_same_bytes_in_every_process_and_older_tables_still_load(tmp_path):
    """safetensors writes its metadata map in a per-process random order: the table keeps one key."""
    import subprocess
    import sys

    script = ("import sys, numpy as np; from pathlib import Path; from vlmt.tasks.svlr_text import WordTable; "
              "t = WordTable({'red': np.ones(3, np.float32), 'cube': np.zeros(3, np.float32)}, 3, source='s', "
              "coverage=0.5, fallback=True); t.save(Path(sys.argv[1]))")
    written = []
    for k in range(3):
        (tmp_path / str(k)).mkdir()
        subprocess.run([sys.executable, "-c", script, str(tmp_path / str(k))], check=True, timeout=120)
        written.append((tmp_path / str(k) / WordTable.FILE).read_bytes())
    assert written[0] == written[1] == written[2]
    table = WordTable.load(tmp_path / "0")
    assert table.tokens() == ["red", "cube"] and table.fallback and table.coverage == 0.5 and table.source == "s"
    from safetensors.numpy import save_file  # a table as vlmt 0.1.0 wrote it: one metadata key per field

    old = tmp_path / "old"
    old.mkdir()
    save_file({"vectors": np.eye(2, 3, dtype=np.float32)}, str(old / WordTable.FILE),
              metadata={"words": '["red", "cube"]', "source": "s", "fallback": "False", "coverage": "0.5"})
    table = WordTable.load(old)
    assert table.tokens() == ["red", "cube"] and not table.fallback and table.coverage == 0.5
    np.testing.assert_array_equal(table.vector("cube"), [0, 1, 0])
