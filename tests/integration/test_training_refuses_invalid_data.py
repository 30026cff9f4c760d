"""Training refuses a dataset that does not validate, with the messages of `vlmt data validate`."""

from __future__ import annotations

import json
import shutil

import pytest

from vlmt import cli
from vlmt.config import bundled_config
from vlmt.data.synth.cache import ensure_world


@pytest.fixture(scope="module")
def broken_world(tmp_path_factory):
    world = tmp_path_factory.mktemp("broken") / "world"
    shutil.copytree(ensure_world("tiny"), world)
    path = world / "v2_mscoco_val2014_annotations.json"
    data = json.loads(path.read_text())
    del data["annotations"][0]["multiple_choice_answer"]
    path.write_text(json.dumps(data))
    return world


@pytest.mark.parametrize("config", ["tiny.yaml", "svlr_tiny.yaml"])
def test_training_on_data_that_does_not_validate_stops_naming_file_and_field(config, broken_world, tmp_path, capsys):
    code = cli.main(["train", str(bundled_config(config)), "--out", str(tmp_path / "run"),
                     "--set", f"data.root={broken_world}", "--set", "train.progress=false"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    assert "v2_mscoco_val2014_annotations.json" in err and "multiple_choice_answer" in err
    assert not (tmp_path / "run" / "checkpoints").exists()
