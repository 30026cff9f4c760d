"""Batches built ahead in a background thread (`train.num_workers`)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vlmt import cli
from vlmt.errors import DataError
from vlmt.training import checkpoint as ckpt
from vlmt.training.prefetch import Prefetcher, prefetched

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


def test_items_arrive_in_order_and_the_end_is_the_source_s_end():
    source = iter(range(50))
    got = list(Prefetcher(source, depth=3))
    assert got == list(range(50))
    plain = iter(range(3))
    assert prefetched(plain, 0) is plain


def test_an_error_while_building_is_raised_at_its_turn():
    def source():
        yield 1
        yield 2
        raise DataError("features.store", "image 7 missing", record="image 7", field="features")

    stream = Prefetcher(source(), depth=4)
    assert next(stream) == 1 and next(stream) == 2
    with pytest.raises(DataError, match="image 7 missing"):
        next(stream)
    with pytest.raises(StopIteration):
        next(stream)


def test_close_stops_an_endless_stream_s_thread():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    stream = Prefetcher(endless(), depth=2, name="endless")
    assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
    stream.close()
    assert threading.active_count() == before
    with pytest.raises(ValueError, match="depth"):
        Prefetcher(iter(()), depth=0)


def test_training_with_batches_built_ahead_ends_with_the_same_weights(tmp_path):
    torch.set_num_threads(1)
    common = ["--set", "train.max_iters=40", "--set", "train.eval_every=40", "--set", "train.checkpoint_every=40",
              "--set", "train.progress=false", "--set", "schedule.cycle=10"]
    for workers in (0, 2):
        assert cli.main(["train", str(TINY), "--out", str(tmp_path / f"w{workers}"), *common,
                         "--set", f"train.num_workers={workers}"]) == 0
    a = load_file(str(ckpt.checkpoint_dir(tmp_path / "w0", "last") / "model.safetensors"))
    b = load_file(str(ckpt.checkpoint_dir(tmp_path / "w2", "last") / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        # bit for bit: workers only build batches (the same values); every update runs in the main process
        assert torch.equal(a[key], b[key]), key
