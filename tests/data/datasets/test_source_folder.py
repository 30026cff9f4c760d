"""Which folder a data section's root names when it is already on this machine (what a served
model's gallery reads): every form of a world source."""

from __future__ import annotations

from vlmt.data.datasets import source_folder
from vlmt.data.synth.cache import world_dir


def test_world_sources_name_their_cached_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("VLMT_CACHE", str(tmp_path))
    oracle = tmp_path / "worlds" / "tiny-seed0"
    detector = tmp_path / "worlds" / "tiny-seed2-detector"
    assert source_folder("world:tiny:0:oracle") is None  # not generated: nothing to show
    for folder in (oracle, detector, tmp_path / "worlds" / "tiny-seed0-detector"):
        folder.mkdir(parents=True)
    assert source_folder("world:tiny") == world_dir("tiny", 0)  # the default method's folder
    assert source_folder("world:tiny:0:oracle") == oracle
    assert source_folder("world:tiny:2:detector") == detector
    assert source_folder("world:tiny:2:yolo") is None  # a bad source is no gallery, not a crash
