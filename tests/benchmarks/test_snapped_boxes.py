"""benchmarks/snapped_boxes.py: the diagnostic world keeps the detector's regions and replaces
only the boxes that overlap a true box by IoU >= 0.5, by exactly that box."""

from __future__ import annotations

import json

import numpy as np
import torch

from tests.benchmarks.test_benchmark_errors import load_benchmark, one_error_line
from vlmt.data.features.detector import box_iou
from vlmt.data.features.store import FeatureStore
from vlmt.data.synth.world import SIZES, build


def test_only_found_objects_are_snapped_and_to_their_true_box(tmp_path, tiny_world_folder, capsys):
    bench = load_benchmark("snapped_boxes")
    out = tmp_path / "snapped"
    assert bench.main(["--size", "tiny", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 < result["boxes_snapped"] < result["boxes"]
    w = build(SIZES["tiny"], 0)
    detector, snapped = FeatureStore(tiny_world_folder / "features"), FeatureStore(out / "features")
    exact = kept = 0
    for i, scene in w.scenes.items():
        before, after = detector.boxes(i), snapped.boxes(i)
        truth = np.array([o.box for o in scene.objects], np.float32)
        hit = (box_iou(torch.from_numpy(before), torch.from_numpy(truth)).max(1).values >= 0.5).numpy()
        for b, a, h in zip(before, after, hit):
            if h:  # a found object: now exactly one of the picture's true boxes
                assert (np.abs(truth - a).max(1) == 0).any()
                exact += 1
            else:  # a miss, duplicate of nothing, or background: the detector's box as it was
                np.testing.assert_array_equal(a, b)
                kept += 1
    assert exact == result["boxes_snapped"] and exact + kept == result["boxes"]
    assert (out / "world.json").exists() and (out / "region_extractor").is_dir()


def test_a_folder_in_use_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "something").write_text("x")
    assert load_benchmark("snapped_boxes").main(["--size", "tiny", "--out", str(tmp_path)]) == 1
    assert "--out must be an empty or missing folder" in one_error_line(capsys.readouterr().err)
