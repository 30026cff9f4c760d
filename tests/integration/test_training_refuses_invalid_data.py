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
    # a file of each config's data section (VQA v2 open-ended for tiny, v1 multiple choice for SVLR):
    # training validates the files it reads
    for name in ("v2_mscoco_val2014_annotations.json", "mscoco_val2014_annotations.json"):
        path = world / name
        data = json.loads(path.read_text())
        del data["annotations"][0]["multiple_choice_answer"]
        path.write_text(json.dumps(data))
    return world


@pytest.mark.parametrize("config, broken", [("tiny.yaml", "v2_mscoco_val2014_annotations.json"),
                                            ("svlr_tiny.yaml", "mscoco_val2014_annotations.json")])
def test_training_on_data_that_does_not_validate_stops_naming_file_and_field(config, broken, broken_world, tmp_path,
                                                                             capsys):
    code = cli.main(["train", str(bundled_config(config)), "--out", str(tmp_path / "run"),
                     "--set", f"data.root={broken_world}", "--set", "train.progress=false"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    assert f"/{broken}" in err and "multiple_choice_answer" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_features_with_nan_or_inf_stop_training_before_the_first_step(value, tmp_path, capsys):
    import numpy as np

    world = tmp_path / "world"
    world.mkdir()
    source = ensure_world("tiny")
    for p in source.iterdir():  # links, but a real copy of the store whose features are spoilt
        if p.name != "features":
            (world / p.name).symlink_to(p)
    shutil.copytree(source / "features", world / "features")
    features = np.fromfile(world / "features" / "features.bin", dtype="<f4")
    features[12345] = value
    features.tofile(world / "features" / "features.bin")
    assert cli.main(["data", "validate", str(world)]) == 1
    assert "features.bin" in capsys.readouterr().err
    code = cli.main(["train", str(bundled_config("tiny.yaml")), "--out", str(tmp_path / "run"),
                     "--set", f"data.root={world}", "--set", "train.progress=false"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "features.bin" in err and ("NaN" in err if value != value else "inf" in err)
    assert not (tmp_path / "run" / "metrics.jsonl").exists() and not (tmp_path / "run" / "checkpoints").exists()
