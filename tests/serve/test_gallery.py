"""Which folder a model's data section names, for its gallery: every form of a world source."""

from __future__ import annotations

from vlmt.data.synth.cache import world_dir
from vlmt.serve.gallery import data_folder


def test_world_sources_name_their_cached_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("VLMT_CACHE", str(tmp_path))
    oracle = tmp_path / "worlds" / "tiny-seed0"
    detector = tmp_path / "worlds" / "tiny-seed2-detector"
    assert data_folder({"root": "world:tiny:0:oracle"}) is None  # not generated: nothing to show
    for folder in (oracle, detector, tmp_path / "worlds" / "tiny-seed0-detector"):
        folder.mkdir(parents=True)
    assert data_folder({"root": "world:tiny"}) == world_dir("tiny", 0)  # the default method's folder
    assert data_folder({"root": "world:tiny:0:oracle"}) == oracle
    assert data_folder({"root": "world:tiny:2:detector"}) == detector
    assert data_folder({"root": "world:tiny:2:yolo"}) is None  # a bad source is no gallery, not a crash
