"""FeatureStore / FeatureStoreWriter: round trips, lookups, atomic writes, workers, validate()."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset

from vlmt.data.features.format import (
    BOXES_FILE,
    FEATURES_FILE,
    HEADER_FILE,
    INDEX_FILE,
    RECORD_DTYPE,
    RECORDS_FILE,
    DuplicateImageError,
    FeatureRecordError,
    MissingImageError,
    RegionFeatures,
    StoreExistsError,
)
from vlmt.data.features.store import FeatureStore, is_feature_store
from vlmt.data.features.validate import validate_store
from vlmt.data.features.writer import FeatureStoreWriter
from vlmt.errors import DataError

D = 6


def random_image(rng, t=None, w=64, h=48):
    t = int(rng.integers(1, 12)) if t is None else t
    x = np.sort(rng.uniform(0, w, (t, 2)), axis=1)
    y = np.sort(rng.uniform(0, h, (t, 2)), axis=1)
    boxes = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1).astype(np.float32)
    feats = rng.standard_normal((t, D)).astype(np.float32)
    return boxes, feats


def build(path, images, dim=D):
    with FeatureStoreWriter(path, feature_dim=dim) as w:
        for image_id, (boxes, feats) in images.items():
            w.add(image_id, boxes=boxes, features=feats, width=64, height=48)
    return FeatureStore(path)


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    ids = [0, 1, 2, 7, 1 << 40, -3, 123456789, 9_999_999_999] + list(range(1000, 1100))
    return {i: random_image(rng) for i in ids}


@pytest.fixture
def store(tmp_path, images):
    return build(tmp_path / "store", images)


def test_round_trip_is_bit_exact_for_every_image(store, images):
    assert len(store) == len(images)
    assert store.feature_dim == D
    for image_id, (boxes, feats) in images.items():
        got = store[image_id]
        assert isinstance(got, RegionFeatures)
        assert got.image_id == image_id and (got.width, got.height) == (64, 48)
        assert got.boxes.dtype == np.float32 and got.features.dtype == np.float32
        np.testing.assert_array_equal(got.boxes.view(np.uint32), boxes.view(np.uint32))
        np.testing.assert_array_equal(got.features.view(np.uint32), feats.view(np.uint32))
        assert store.region_count(image_id) == len(boxes) == got.num_regions
        assert store.image_size(image_id) == (64, 48)


def test_special_float_values_survive_unchanged(tmp_path):
    special = np.array([[-0.0, 1e-45, 3.4028235e38, 1.17549435e-38, -1e-40, 0.1]], dtype=np.float32)
    boxes = np.array([[0, 0, 1, 1]], dtype=np.float32)
    store = build(tmp_path / "s", {5: (boxes, special)})
    np.testing.assert_array_equal(store[5].features.view(np.uint32), special.view(np.uint32))


def test_ids_membership_order_and_iteration(store, images):
    assert list(store.image_ids()) == list(images)
    assert list(store) == list(images)
    assert all(i in store for i in images)
    assert 3 not in store and (1 << 41) not in store and "7" not in store and 7.0 not in store
    assert np.int64(7) in store and store[np.int32(7)].image_id == 7


def test_missing_id_is_a_key_error_naming_store_and_id(store):
    with pytest.raises(KeyError) as info:
        store[424242]
    err = info.value
    assert isinstance(err, MissingImageError) and isinstance(err, DataError)
    assert "424242" in str(err) and str(store.path) in str(err)
    with pytest.raises(TypeError):
        store["abc"]


def test_returned_arrays_are_private_copies(store, images):
    a = store[7]
    a.features[:] = 0
    np.testing.assert_array_equal(store[7].features, images[7][1])
    view = store.read(7, copy=False)
    assert not view.features.flags.writeable


def test_empty_store(tmp_path):
    with FeatureStoreWriter(tmp_path / "e", feature_dim=3):
        pass
    store = FeatureStore(tmp_path / "e")
    assert len(store) == 0 and 1 not in store and list(store) == [] and validate_store(store.path) == []


def test_index_stays_half_empty_and_finds_everything_after_growth(tmp_path):
    rng = np.random.default_rng(1)
    ids = rng.choice(10**12, size=3000, replace=False).tolist()
    boxes, feats = random_image(rng, t=1)
    with FeatureStoreWriter(tmp_path / "s", feature_dim=D) as w:
        for i in ids:
            w.add(i, boxes=boxes, features=feats, width=64, height=48)
    store = FeatureStore(tmp_path / "s")
    assert store.header["index_slots"] >= 2 * len(ids)
    assert all(i in store for i in ids[::7])
    assert sum(int(i) in store for i in rng.integers(0, 10**12, 500)) <= 2  # random misses stay misses


@settings(max_examples=25, deadline=None)
@given(ids=st.sets(st.integers(-(2**63), 2**63 - 1), max_size=60),
       probes=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=20))
def test_any_int64_ids_are_found_and_nothing_else(tmp_path_factory, ids, probes):
    path = tmp_path_factory.mktemp("h") / "s"
    one = np.zeros((1, 4), np.float32)
    with FeatureStoreWriter(path, feature_dim=1) as w:
        for k, i in enumerate(ids):
            w.add(i, boxes=one, features=np.full((1, 1), k, np.float32), width=1, height=1)
    store = FeatureStore(path)
    for k, i in enumerate(ids):
        assert store[i].features[0, 0] == k
    for p in probes:
        assert (p in store) == (p in ids)
    assert validate_store(store.path) == []


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(features=np.zeros((2, D), np.float64)), "features"),
        (dict(features=np.zeros((2, D + 1), np.float32)), "features"),
        (dict(features=np.zeros((3, D), np.float32)), "features"),
        (dict(boxes=np.zeros((2, 5), np.float32)), "boxes"),
        (dict(boxes=np.zeros((0, 4), np.float32), features=np.zeros((0, D), np.float32)), "boxes"),
        (dict(features=np.full((2, D), np.nan, np.float32)), "features"),
        (dict(boxes=np.array([[0, 0, 1, 1], [0, 0, np.inf, 1]], np.float32)), "boxes"),
        (dict(boxes=np.array([[0, 0, 1, 1], [5, 0, 1, 1]], np.float32)), "boxes"),
        (dict(boxes=np.array([[0, 0, 1, 1], [0, 0, 70, 1]], np.float32)), "boxes"),
        (dict(width=0), "width"),
        (dict(height=-5), "height"),
        (dict(width=3.5), "width"),
    ],
)
def test_add_refuses_bad_records_naming_the_field(tmp_path, change, field):
    good = dict(boxes=np.array([[0, 0, 1, 1], [2, 2, 3, 3]], np.float32), features=np.ones((2, D), np.float32),
                width=64, height=48)
    with FeatureStoreWriter(tmp_path / "s", feature_dim=D) as w:
        w.add(1, **good)
        with pytest.raises(FeatureRecordError) as info:
            w.add(2, **(good | change))
        assert info.value.field == field
        assert 2 not in w
    store = FeatureStore(tmp_path / "s")
    assert list(store) == [1] and store.num_regions == 2 and validate_store(store.path) == []


def test_add_refuses_duplicate_ids(tmp_path):
    boxes, feats = np.zeros((1, 4), np.float32), np.zeros((1, D), np.float32)
    with FeatureStoreWriter(tmp_path / "s", feature_dim=D) as w:
        w.add(5, boxes=boxes, features=feats, width=1, height=1)
        with pytest.raises(DuplicateImageError, match="added twice"):
            w.add(5, boxes=boxes, features=feats, width=1, height=1)


def test_failed_write_leaves_nothing_at_the_target(tmp_path, images):
    with pytest.raises(RuntimeError):
        with FeatureStoreWriter(tmp_path / "s", feature_dim=D) as w:
            for image_id, (boxes, feats) in list(images.items())[:10]:
                w.add(image_id, boxes=boxes, features=feats, width=64, height=48)
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_abandoned_writer_cleans_up_its_temp_dir(tmp_path):
    w = FeatureStoreWriter(tmp_path / "s", feature_dim=D)
    w.add(1, boxes=np.zeros((1, 4), np.float32), features=np.zeros((1, D), np.float32), width=1, height=1)
    assert len(list(tmp_path.iterdir())) == 1  # the hidden temp dir
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_existing_target_is_refused_unless_overwrite(tmp_path, images):
    build(tmp_path / "s", dict(list(images.items())[:3]))
    with pytest.raises(StoreExistsError, match="already exists"):
        FeatureStoreWriter(tmp_path / "s", feature_dim=D)
    with FeatureStoreWriter(tmp_path / "s", feature_dim=D, overwrite=True) as w:
        w.add(77, boxes=np.zeros((1, 4), np.float32), features=np.ones((1, D), np.float32), width=2, height=2)
    assert list(FeatureStore(tmp_path / "s")) == [77]
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_store_pickles_as_its_path(store):
    store[7]  # maps opened
    blob = pickle.dumps(store)
    assert len(blob) < 300
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again[7].features, store[7].features)


class _StoreDataset(Dataset):
    def __init__(self, store, ids):
        self.store, self.ids = store, ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        r = self.store[self.ids[i]]
        return r.image_id, os.getpid(), torch.from_numpy(r.features).sum(0)


@pytest.mark.parametrize("context", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_dataloader_workers_read_the_store(store, images, context):
    ids = list(images)
    store[ids[0]]  # the parent has its maps open before the workers start
    loader = DataLoader(_StoreDataset(store, ids), batch_size=None, num_workers=2, multiprocessing_context=context)
    seen, pids = {}, set()
    for image_id, pid, summed in loader:
        seen[int(image_id)] = summed
        pids.add(int(pid))
    assert len(pids) == 2 and os.getpid() not in pids
    assert set(seen) == set(ids)
    for image_id, (_, feats) in images.items():
        # to rounding: a worker sums with one thread, this process with several, so the additions may be split
        # differently (the bytes read are compared exactly in the tests above)
        torch.testing.assert_close(seen[image_id], torch.from_numpy(feats).sum(0), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- validate() and malformed stores

def _poke(path, name, dtype, shape, index, value):
    arr = np.memmap(path / name, dtype=dtype, mode="r+", shape=shape)
    arr[index] = value
    arr.flush()
    del arr


def _row_of(store, image_id):
    return int(np.asarray(store._maps()["records"])[list(store.image_ids()).index(image_id)]["start"])


def test_clean_store_validates(store):
    assert validate_store(store.path) == []


@pytest.mark.parametrize("value, word", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
def test_validate_finds_non_finite_features(store, value, word):
    row = _row_of(store, 1000)
    _poke(store.path, FEATURES_FILE, "<f4", (store.num_regions, D), (row, 2), value)
    problems = validate_store(store.path)
    assert len(problems) == 1
    assert FEATURES_FILE in problems[0] and "record 1000" in problems[0] and "'features'" in problems[0]
    assert word in problems[0]


def test_validate_finds_non_finite_boxes(store):
    _poke(store.path, BOXES_FILE, "<f4", (store.num_regions, 4), (_row_of(store, 7), 1), np.nan)
    (problem,) = validate_store(store.path)
    assert BOXES_FILE in problem and "record 7" in problem and "'boxes'" in problem and "NaN" in problem


def test_validate_finds_inverted_and_outside_boxes(store):
    rows = store.num_regions
    _poke(store.path, BOXES_FILE, "<f4", (rows, 4), _row_of(store, 2), np.array([30, 5, 10, 9], np.float32))
    _poke(store.path, BOXES_FILE, "<f4", (rows, 4), _row_of(store, 1001), np.array([0, 0, 10, 49], np.float32))
    _poke(store.path, BOXES_FILE, "<f4", (rows, 4), _row_of(store, 1002), np.array([-3, 0, 10, 9], np.float32))
    problems = validate_store(store.path)
    assert len(problems) == 3
    assert "record 2" in problems[0] and "inverted" in problems[0] and "'boxes'" in problems[0]
    assert "record 1001" in problems[1] and "outside the 64x48 image" in problems[1]
    assert "record 1002" in problems[2] and "outside" in problems[2]


def test_validate_finds_bad_image_size(store):
    n = len(store)
    records = np.memmap(store.path / RECORDS_FILE, dtype=RECORD_DTYPE, mode="r+", shape=(n,))
    records[3]["width"] = 0
    records[4]["height"] = -1
    records.flush()
    del records
    problems = validate_store(store.path)
    assert any("record 7" in p and "'width'" in p and "positive" in p for p in problems)
    assert any("record 1099511627776" in p and "'height'" in p for p in problems)


def test_validate_finds_overlapping_and_empty_records(store, images):
    ids = list(images)
    records = np.memmap(store.path / RECORDS_FILE, dtype=RECORD_DTYPE, mode="r+", shape=(len(store),))
    records[5]["start"] += 1  # overlaps the next record, leaves a gap after the previous
    records[20]["count"] = 0
    records[30]["start"] = store.num_regions  # beyond the arrays
    records.flush()
    del records
    problems = validate_store(store.path)
    assert any(f"record {ids[5]}" in p and "'start'" in p and "overlap or leave gaps" in p for p in problems)
    assert any(f"record {ids[20]}" in p and "'count'" in p and "positive" in p for p in problems)
    assert any(f"record {ids[30]}" in p and "'start'" in p and "outside" in p for p in problems)
    assert all(RECORDS_FILE in p for p in problems)
    with pytest.raises(DataError, match=f"{RECORDS_FILE}: record {ids[30]}: field 'count': damaged record"):
        FeatureStore(store.path)[ids[30]]


def test_validate_finds_duplicate_ids(store):
    records = np.memmap(store.path / RECORDS_FILE, dtype=RECORD_DTYPE, mode="r+", shape=(len(store),))
    records[10]["image_id"] = 1000  # record 9 already holds 1000
    records.flush()
    del records
    problems = validate_store(store.path)
    assert any(RECORDS_FILE in p and "record 1000" in p and "duplicate" in p and "'image_id'" in p for p in problems)


def test_truncated_file_fails_to_open_and_validate_names_the_records(store, images):
    size = (store.path / FEATURES_FILE).stat().st_size
    os.truncate(store.path / FEATURES_FILE, size - 3 * D * 4 - 1)
    with pytest.raises(DataError, match=FEATURES_FILE) as info:
        FeatureStore(store.path)
    assert "truncated" in str(info.value)
    problems = validate_store(store.path)
    assert FEATURES_FILE in problems[0] and "truncated" in problems[0]
    with pytest.raises(DataError, match="truncated"):
        store[7]  # opened before the damage: the maps fail with the same message
    last = list(images)[-1]
    assert any(f"record {last}" in p and "'features'" in p and "past the end" in p for p in problems[1:])


def test_longer_file_than_header_fails_to_open(store):
    with open(store.path / BOXES_FILE, "ab") as f:
        f.write(b"\0" * 16)
    with pytest.raises(DataError, match=f"{BOXES_FILE}.*longer"):
        FeatureStore(store.path)


def test_damaged_index_is_reported(store):
    table = np.memmap(store.path / INDEX_FILE, dtype="<i8", mode="r+", shape=(store.header["index_slots"], 2))
    slot = int(np.flatnonzero(np.asarray(table[:, 0]) == 7)[0])
    table[slot, 1] = 0  # now points at the record of image 0
    table.flush()
    del table
    problems = validate_store(store.path)
    assert any(INDEX_FILE in p and "record 7" in p and "'index'" in p for p in problems)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: (p / HEADER_FILE).unlink(), "missing"),
        (lambda p: (p / HEADER_FILE).write_text("{not json"), "not valid JSON"),
        (lambda p: (p / HEADER_FILE).write_text(json.dumps({"format": "other"})), "format"),
        (lambda p: _edit_header(p, version=99), "version"),
        (lambda p: _edit_header(p, feature_dim="six"), "feature_dim"),
        (lambda p: (p / INDEX_FILE).unlink(), "missing"),
    ],
)
def test_malformed_store_raises_data_error_naming_the_file(store, mutate, message):
    mutate(store.path)
    with pytest.raises(DataError, match=message) as info:
        FeatureStore(store.path)
    assert str(store.path) in info.value.file
    assert validate_store(store.path) and message in validate_store(store.path)[0]


def _edit_header(path, **changes):
    header = json.loads((path / HEADER_FILE).read_text())
    header.update(changes)
    (path / HEADER_FILE).write_text(json.dumps(header))


def test_not_a_directory(tmp_path):
    with pytest.raises(DataError, match="not a feature store"):
        FeatureStore(tmp_path / "nothing")
    assert not is_feature_store(tmp_path / "nothing")
    assert validate_store(tmp_path / "nothing") == [f"{tmp_path / 'nothing'}: not a feature store directory "
                                                    "(missing or not a directory)"]


def test_is_feature_store(store, tmp_path):
    assert is_feature_store(store.path) and not is_feature_store(tmp_path)
