"""Configs by name: `vlmt configs list|show`, `vlmt train NAME`, `vlmt train CONFIG --print-config`."""

from __future__ import annotations

import json

import pytest
import yaml

from vlmt import config as C
from vlmt.cli import main
from vlmt.errors import ConfigError


def test_list_names_every_shipped_config_with_its_model(capsys):
    assert main(["configs", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in rows]
    assert names == sorted(p.stem for p in C.configs_dir().glob("*.yaml"))
    by_name = {r["name"]: r for r in rows}
    assert by_name["tiny"]["model"] == "hierarchical" and by_name["tiny"]["tasks"] == ["retrieval", "vqa", "grounding"]
    assert by_name["svlr_world"]["model"] == "svlr"
    assert by_name["tiny"]["summary"].startswith("The hierarchical model on the tiny synthetic world")
    assert main(["configs", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == len(rows) and table[-1].split()[:2] == ["tiny", "hierarchical"]


def test_show_prints_the_file_or_the_resolved_config(capsys):
    assert main(["configs", "show", "tiny"]) == 0
    assert capsys.readouterr().out == (C.configs_dir() / "tiny.yaml").read_text()
    assert main(["configs", "show", "tiny.yaml", "--resolved"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["tasks"]["vqa"]["eval_batch_size"] == 64  # a default the file does not set
    assert C.from_dict(resolved, source="shown") == C.load_config(C.configs_dir() / "tiny.yaml")
    assert main(["configs", "show", "tinyy"]) == 1
    err = capsys.readouterr().err
    assert "tinyy: config file not found, and no shipped config of that name" in err and "tiny," in err


def test_train_finds_a_shipped_config_by_name_and_prints_the_resolved_config(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "svlr_tiny", "--print-config", "--set", "train.seed=7"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["seed"] == 7 and printed["model"]["type"] == "svlr"
    assert not (tmp_path / "runs").exists()  # nothing trained
    assert main(["train", "configs/sanity.yaml", "--set", "train.max_iters=20", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 20 and (tmp_path / "runs" / "sanity" / "config.yaml").is_file()


def test_a_file_of_a_shipped_name_wins_over_the_shipped_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").write_text((C.configs_dir() / "sanity.yaml").read_text())
    assert C.load_config("tiny").model.__class__.__name__ == "SanityMLPConfig"
    assert C.load_config("tiny.yaml").model.__class__.__name__ == "HierarchicalConfig"
    with pytest.raises(ConfigError, match="elsewhere/tiny.yaml: config file not found"):
        C.load_config("elsewhere/tiny.yaml")
