"""The world cache: configs name a world; the first use generates it, later uses reuse it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from vlmt.data.synth.cache import ensure_world, world_dir


def test_ensure_world_names_its_cache_folder_and_reuses_a_complete_world(tiny_world_folder):
    cache = Path(os.environ["VLMT_CACHE"])  # the session's cache, where tiny_world_folder was generated
    # the default world (detector regions) keeps the "-detector" name: oracle caches keep theirs
    assert tiny_world_folder == world_dir("tiny", 0) == cache / "worlds" / "tiny-seed0-detector"
    manifest = json.loads((tiny_world_folder / "world.json").read_text())
    stamp = (tiny_world_folder / "world.json").stat().st_mtime_ns
    assert ensure_world("tiny", seed=0) == tiny_world_folder
    assert (tiny_world_folder / "world.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    assert manifest["size"] == "tiny"


def test_a_cached_world_of_another_definition_is_named_and_kept(tmp_path, monkeypatch, capsys):
    """When a size's definition changes between versions, the cached world made by the old one is
    neither reused nor overwritten: the error names the folder, what differs and what to do."""
    import pytest

    from vlmt import cli
    from vlmt.data.synth.world import SIZES, WORLD_VERSION, spec_of
    from vlmt.errors import ConfigError

    monkeypatch.setenv("VLMT_CACHE", str(tmp_path))
    folder = world_dir("tiny", 0)
    folder.mkdir(parents=True)
    old = {"version": WORLD_VERSION, "size": "tiny", "seed": 0,
           "spec": {**spec_of(SIZES["tiny"]), "detector_steps": 100}, "proposals": "detector"}
    (folder / ".synth_config.json").write_text(json.dumps(old))
    (folder / "world.json").write_text("{}")
    with pytest.raises(ConfigError) as err:
        ensure_world("tiny", 0)
    message = str(err.value)
    assert str(folder) in message and "spec.detector_steps" in message and "remove that folder" in message
    assert json.loads((folder / ".synth_config.json").read_text()) == json.loads(json.dumps(old))  # kept
    assert (folder / "world.json").read_text() == "{}"
    # an explicit --out keeps the generator's own message
    assert cli.main(["data", "synth", "--size", "tiny", "--out", str(folder)]) == 1
    assert "use an empty folder" in capsys.readouterr().err
    # through a config's `world:` root: the same message in one line, no traceback, nothing trained
    assert cli.main(["train", "tiny", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert str(folder) in err and "remove that folder" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()
