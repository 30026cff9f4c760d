"""What the data build and the collates read from a store without the float32 copy of `read`:
an image's boxes alone (`FeatureStore.boxes`), and float16 features widened by `as_float32`
exactly as numpy widens them."""

from __future__ import annotations

import numpy as np

from vlmt.data.features.store import FeatureStore, as_float32
from vlmt.data.features.writer import FeatureStoreWriter


def test_boxes_alone_equal_the_boxes_read_with_the_features(tmp_path):
    rng = np.random.default_rng(0)
    with FeatureStoreWriter(tmp_path / "s", feature_dim=8, dtype="float16") as w:
        for image_id, t in ((5, 3), (1_000_000_007, 4)):
            xy = rng.uniform(0, 50, (t, 2)).astype(np.float32)
            w.add(image_id, boxes=np.concatenate([xy, xy + 10], axis=1),
                  features=rng.standard_normal((t, 8)).astype(np.float32), width=100, height=80)
    store = FeatureStore(tmp_path / "s")
    for image_id in (5, 1_000_000_007):
        full = store.read(image_id)
        assert store.boxes(image_id).dtype == np.float32
        np.testing.assert_array_equal(store.boxes(image_id), full.boxes)
        np.testing.assert_array_equal(store.read(image_id, copy=False).features, full.features)


def test_float16_widening_is_numpys_for_every_value_but_nan_payloads():
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16).reshape(256, 256)
    got, want = as_float32(every), every.astype(np.float32)
    assert got.dtype == np.float32 and got.shape == (256, 256)
    same = got.view(np.uint32) == want.view(np.uint32)
    assert np.isnan(every[~same]).all() and np.isnan(got[~same]).all()  # NaN stays NaN (stores refuse it)
    assert same[~np.isnan(every)].all() and same.sum() > 60_000  # every number, infinities included
