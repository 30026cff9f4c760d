"""`data.features_on_device`: batches carry row indices into the store (`StoreRows`) and `.to(device)`
gathers them from a table held once per process and device. Every tensor a task's batch gives
after `.to()` is the one the features path gives, bit for bit, for every task that reads regions,
and seeded training ends with the same weights."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from vlmt.data.features import resident
from vlmt.data.features.format import MissingImageError
from vlmt.data.features.resident import StoreRows, device_table, gather, held_tables, on_device, set_on_device
from vlmt.data.features.store import FeatureStore
from vlmt.data.features.writer import FeatureStoreWriter
from vlmt.tasks.base import move_to
from vlmt.tasks.collate import padded_regions
from vlmt.training.build import build_parts, load_experiment
from vlmt.training.trainer import train

COUNTS = {5: 3, 7: 1, 1_000_000_007: 4, 12: 2}  # image id -> regions: uneven, so batches pad


@pytest.fixture(autouse=True)
def _nothing_kept():
    yield
    set_on_device(resident.kept(), False)
    resident.release_tables()


def _store(folder: Path, dtype: str) -> FeatureStore:
    rng = np.random.default_rng(0)
    with FeatureStoreWriter(folder, feature_dim=6, dtype=dtype) as w:
        for image_id, t in COUNTS.items():
            xy = rng.uniform(0, 50, (t, 2)).astype(np.float32)
            w.add(image_id, boxes=np.concatenate([xy, xy + 10], axis=1),
                  features=rng.standard_normal((t, 6)).astype(np.float32), width=100, height=80)
    return FeatureStore(folder)


def _same(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_rows_give_the_padded_features_bit_for_bit(tmp_path, dtype):
    store = _store(tmp_path / "s", dtype)
    ids = [7, 1_000_000_007, 5, 7, 12]  # an image twice; T = 4, so every image but one pads
    want = padded_regions(store, ids, boxes=True)
    set_on_device([tmp_path / "s"], True)
    assert on_device(store) and on_device(FeatureStore(tmp_path / "s"))  # any handle of the folder
    got = padded_regions(store, ids, boxes=True)
    rows = got["region_features"]
    assert isinstance(rows, StoreRows) and rows.shape == (5, 4, 6) and rows.dtype == torch.float32
    assert rows.rows[1].tolist() == list(range(rows.rows[1, 0].item(), rows.rows[1, 0].item() + 4))
    assert rows.rows[0, 1:].tolist() == [store.num_regions] * 3  # padding: the zero row
    moved = move_to(got, torch.device("cpu"))
    assert moved.keys() == want.keys()
    for key in want:
        _same(moved[key], want[key])
    assert held_tables() == {}  # on the CPU the rows are read from the memory map
    # an accelerator's path: the table (once per store and device, in the store's dtype, plus the
    # zero row) and one gather from it, run here on the CPU
    _same(gather(device_table(store, "cpu"), rows.rows), want["region_features"])
    tables = held_tables()
    assert list(tables.values()) == [((store.num_regions + 1, 6), getattr(torch, dtype))]
    assert device_table(store, "cpu") is device_table(FeatureStore(tmp_path / "s"), "cpu")


def test_single_rows_equal_feature_rows(tmp_path):
    store = _store(tmp_path / "s", "float16")
    rows = np.array([8, 0, 3, 3, 9], dtype=np.int64)
    want = torch.from_numpy(store.feature_rows(rows))
    _same(StoreRows.of(store, rows).to("cpu"), want)
    _same(gather(device_table(store, "cpu"), torch.from_numpy(rows)), want)


def test_rows_pickle_without_the_table(tmp_path):
    store = _store(tmp_path / "s", "float16")
    set_on_device([store.path], True)
    rows = padded_regions(store, list(COUNTS))["region_features"]
    want = gather(device_table(store, "cpu"), rows.rows)  # a table is held now; the pickle must not carry it
    blob = pickle.dumps(rows)
    assert len(blob) < 2048 + rows.rows.numel() * 8
    resident.release_tables()
    back = pickle.loads(blob)
    assert isinstance(back, StoreRows) and back.store.path == store.path
    _same(back.to("cpu"), want)
    _same(gather(device_table(back.store, "cpu"), back.rows), want)


def test_a_store_rewritten_in_place_gets_a_new_table(tmp_path):
    store = _store(tmp_path / "s", "float16")
    before = gather(device_table(store, "cpu"), torch.arange(3))
    with FeatureStoreWriter(tmp_path / "s", feature_dim=6, dtype="float16", overwrite=True) as w:
        w.add(5, boxes=np.array([[0, 0, 5, 5]] * 3, dtype=np.float32), features=np.ones((3, 6), np.float32),
              width=10, height=10)
    after = gather(device_table(FeatureStore(tmp_path / "s"), "cpu"), torch.arange(3))
    assert not torch.equal(before, after) and bool((after == 1).all())
    assert len(held_tables()) == 2


def test_spans_name_a_missing_image(tmp_path):
    store = _store(tmp_path / "s", "float16")
    starts, counts = store.spans(np.array([12, 5]))
    assert list(zip(starts.tolist(), counts.tolist())) == [store.region_span(12), store.region_span(5)]
    set_on_device([store.path], True)
    with pytest.raises(MissingImageError, match="999"):
        padded_regions(store, [5, 999])


# ----------------------------------------------------------------------------- every task that reads regions

def _tensors(x: object, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor inside a batch, by its path (dicts, dataclasses, inputs objects)."""
    if isinstance(x, torch.Tensor):
        return {prefix: x}
    if isinstance(x, dict):
        items = x.items()
    elif dataclasses.is_dataclass(x) and not isinstance(x, type):
        items = ((f.name, getattr(x, f.name)) for f in dataclasses.fields(x))
    elif hasattr(x, "__dict__"):
        items = vars(x).items()
    else:
        return {}
    return {k: v for name, value in items for k, v in _tensors(value, f"{prefix}.{name}").items()}


def _batches(config: str, on: bool) -> dict[tuple[str, str], list[dict[str, torch.Tensor]]]:
    cfg = load_experiment(config, [f"data.features_on_device={str(on).lower()}"])
    parts = build_parts(cfg, torch.device("cpu"))
    out: dict[tuple[str, str], list[dict[str, torch.Tensor]]] = {}
    kinds: dict[str, bool] = {}
    for name, task in parts.tasks.items():
        for split in ("train", "val"):
            batches = list(itertools.islice(task.batches(split), 3))
            kinds[name] = any(isinstance(v, StoreRows) for b in batches for v in _parts(b))
            out[(name, split)] = [_tensors(move_to(b, torch.device("cpu"))) for b in batches]
        if hasattr(task, "example_batch"):  # what pictures run the model on, unmoved: features, not rows
            example, _ = task.example_batch("val", 0)
            assert not any(isinstance(v, StoreRows) for v in _parts(example))
            out[(name, "example")] = [_tensors(example)]
    return out, kinds


def _parts(x: object) -> list[object]:
    if isinstance(x, dict):
        return [p for v in x.values() for p in _parts(v)]
    if hasattr(x, "__dict__") and not isinstance(x, (torch.Tensor, StoreRows)):
        return [p for v in vars(x).values() for p in _parts(v)]
    return [x]


@pytest.mark.parametrize("config, reading", [
    # composed recognition: padded_regions; zero-shot: MCBatches of the split's question columns
    ("composed_tiny", {"retrieval", "vqa", "grounding", "recognition", "zero_shot"}),
    ("svlr_tiny", {"recognition", "vqa", "zero_shot"}),  # RecognitionColumns.features and MCBatches
])
def test_every_task_gives_the_same_tensors(tiny_world_folder, config, reading):
    on, kinds_on = _batches(config, True)
    off, kinds_off = _batches(config, False)
    assert {name for name, rows in kinds_on.items() if rows} == reading
    assert not any(kinds_off.values())
    assert on.keys() == off.keys()
    for key, batches in off.items():
        assert len(on[key]) == len(batches) > 0, key
        for got, want in zip(on[key], batches):
            assert got.keys() == want.keys(), key
            for name in want:
                assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape, (key, name)
                assert torch.equal(got[name], want[name]), (key, name)


@pytest.mark.parametrize("config", ["composed_tiny", "svlr_tiny"])
def test_seeded_training_ends_with_the_same_weights(tiny_world_folder, tmp_path, config):
    digests = []
    for on in (False, True):
        cfg = load_experiment(config, [f"data.features_on_device={str(on).lower()}", "train.max_iters=6",
                                       "train.eval_every=6", "train.checkpoint_every=6", "train.progress=false"])
        train(cfg, tmp_path / str(on))
        weights = tmp_path / str(on) / "checkpoints" / "step_00000006" / "model.safetensors"
        digests.append(hashlib.sha256(weights.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
