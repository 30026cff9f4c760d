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
