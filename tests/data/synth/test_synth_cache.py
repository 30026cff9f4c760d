"""The world cache: configs name a world; the first use generates it, later uses reuse it."""

from __future__ import annotations

import json

from vlmt.data.synth.cache import ensure_world, world_dir


def test_ensure_world_generates_once_then_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("VLMT_CACHE", str(tmp_path))
    folder = ensure_world("tiny", seed=3)
    # the default world (detector regions) keeps the "-detector" name: oracle caches keep theirs
    assert folder == world_dir("tiny", 3) == tmp_path / "worlds" / "tiny-seed3-detector"
    manifest = json.loads((folder / "world.json").read_text())
    stamp = (folder / "world.json").stat().st_mtime_ns
    assert ensure_world("tiny", seed=3) == folder
    assert (folder / "world.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    assert manifest["size"] == "tiny"
