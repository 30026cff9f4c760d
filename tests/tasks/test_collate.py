"""`padded_regions` (the batches' read of region features, widened straight into the batch) gives
the tensors `pad_regions` gives from the store's float32 reads, for float16 and float32 stores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlmt.data.features.store import FeatureStore
from vlmt.data.features.writer import FeatureStoreWriter
from vlmt.tasks.collate import gather_regions, pad_regions, padded_regions


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_padded_regions_equal_pad_regions_of_the_reads(tmp_path, dtype):
    rng = np.random.default_rng(0)
    counts = {3: 2, 11: 5, 1_000_000_007: 1, 42: 5}
    with FeatureStoreWriter(tmp_path / "s", feature_dim=6, dtype=dtype) as w:
        for image_id, t in counts.items():
            xy = rng.uniform(0, 50, (t, 2)).astype(np.float32)
            w.add(image_id, boxes=np.concatenate([xy, xy + 10], axis=1),
                  features=rng.standard_normal((t, 6)).astype(np.float32) * 100, width=100, height=80)
    store = FeatureStore(tmp_path / "s")
    for ids in ([3], [3, 11, 1_000_000_007], [42, 3, 42], [1_000_000_007]):
        reads = [store.read(i) for i in ids]
        want = pad_regions([r.features for r in reads], 6, [r.boxes for r in reads])
        got = gather_regions(store, ids)
        assert list(got) == list(want)  # same keys, same order
        for key in want:
            assert got[key].dtype == want[key].dtype and torch.equal(got[key], want[key]), key
        plain = padded_regions(store, ids)
        assert list(plain) == ["region_features", "region_mask"]
        assert torch.equal(plain["region_features"], want["region_features"])
        boxes, features = store.views(ids[0])
        assert features.dtype == np.dtype(dtype) and boxes.dtype == np.float32
        assert features.shape == (counts[ids[0]], 6) and not features.flags.writeable
