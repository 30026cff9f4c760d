"""float16 feature stores: the header says so, features take half the bytes, readers hand out
float32 within float16's rounding, values beyond its range are refused, `vlmt data convert --from
store --dtype float16` re-encodes a store, and float32 stores read as before."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vlmt import cli
from vlmt.data.features.format import FEATURES_FILE, HEADER_FILE, FeatureRecordError
from vlmt.data.features.store import FeatureStore
from vlmt.data.features.validate import validate_store
from vlmt.data.features.writer import FeatureStoreWriter
from vlmt.errors import DataError

D = 8


def write(path, dtype, images):
    with FeatureStoreWriter(path, feature_dim=D, dtype=dtype) as w:
        for image_id, (boxes, feats) in images.items():
            w.add(image_id, boxes=boxes, features=feats, width=100, height=80)
    return FeatureStore(path)


def images(seed=0, n=5):
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        t = int(rng.integers(1, 6))
        boxes = np.tile(np.array([[1.25, 2.5, 90.75, 70.125]], dtype=np.float32), (t, 1))
        out[1000 + i] = (boxes, (rng.normal(size=(t, D)) * 3).astype(np.float32))
    return out


def test_float16_store_reads_float32_close_to_the_originals_in_half_the_bytes(tmp_path):
    data = images()
    s32 = write(tmp_path / "f32", "float32", data)
    s16 = write(tmp_path / "f16", "float16", data)
    assert json.loads((tmp_path / "f16" / HEADER_FILE).read_text())["dtype"] == "float16"
    assert s16.dtype == "float16" and s32.dtype == "float32"
    assert (tmp_path / "f16" / FEATURES_FILE).stat().st_size * 2 == (tmp_path / "f32" / FEATURES_FILE).stat().st_size
    for image_id, (boxes, feats) in data.items():
        for copy in (True, False):
            r = s16.read(image_id, copy=copy)
            assert r.features.dtype == np.float32 and r.boxes.dtype == np.float32
            np.testing.assert_array_equal(r.boxes, boxes)  # boxes stay float32
            # float16 keeps 11 significant bits: relative error <= 2^-11
            np.testing.assert_allclose(r.features, feats, rtol=2.0 ** -11, atol=1e-7)
            np.testing.assert_array_equal(s32.read(image_id, copy=copy).features, feats)
    assert validate_store(tmp_path / "f16") == []


def test_values_beyond_float16_range_are_refused_naming_the_field(tmp_path):
    boxes = np.array([[0, 0, 10, 10]], dtype=np.float32)
    feats = np.zeros((1, D), dtype=np.float32)
    feats[0, 3] = 70000.0
    with pytest.raises(FeatureRecordError, match="float16's range") as e:
        with FeatureStoreWriter(tmp_path / "s", feature_dim=D, dtype="float16") as w:
            w.add(1, boxes=boxes, features=feats, width=20, height=20)
    assert e.value.field == "features"
    assert not (tmp_path / "s").exists()
    with pytest.raises(ValueError, match="dtype"):
        FeatureStoreWriter(tmp_path / "t", feature_dim=D, dtype="bfloat16")


def test_an_unknown_dtype_in_the_header_is_one_line_error(tmp_path):
    write(tmp_path / "s", "float32", images())
    header = json.loads((tmp_path / "s" / HEADER_FILE).read_text())
    header["dtype"] = "int8"
    (tmp_path / "s" / HEADER_FILE).write_text(json.dumps(header))
    with pytest.raises(DataError, match="dtype.*must be one of 'float32', 'float16', got 'int8'"):
        FeatureStore(tmp_path / "s")


def test_convert_a_store_to_float16_from_the_command_line(tmp_path, capsys):
    data = images(seed=3, n=7)
    write(tmp_path / "f32", "float32", data)
    out = tmp_path / "f16"
    assert cli.main(["data", "convert", "--from", "store", str(tmp_path / "f32"), "--out", str(out),
                     "--dtype", "float16", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dtype"] == "float16" and summary["images"] == 7
    s16 = FeatureStore(out)
    assert list(s16) == list(data)
    for image_id, (_, feats) in data.items():
        np.testing.assert_allclose(s16[image_id].features, feats, rtol=2.0 ** -11, atol=1e-7)
    assert cli.main(["data", "validate", str(out)]) == 0


def test_convert_with_an_id_offset_moves_every_image_into_a_namespace(tmp_path):
    from vlmt.data.features.convert import convert

    data = images(seed=4, n=3)
    write(tmp_path / "genome", "float32", data)
    summary = convert("store", [tmp_path / "genome"], tmp_path / "shifted", id_offset=1_000_000_000)
    assert summary.images == 3
    assert list(FeatureStore(tmp_path / "shifted")) == [1_000_000_000 + i for i in data]


def test_nan_and_inf_in_a_float16_store_are_reported(tmp_path):
    data = images(seed=5, n=4)
    write(tmp_path / "s", "float16", data)
    feats = np.fromfile(tmp_path / "s" / FEATURES_FILE, dtype="<f2")
    feats[3] = np.nan  # region 0 of the first image
    feats[-1] = -np.inf  # the last region of the last image
    feats.tofile(tmp_path / "s" / FEATURES_FILE)
    problems = validate_store(tmp_path / "s")
    first, last = list(data)[0], list(data)[-1]
    assert any(f"record {first}" in p and "1 NaN values in 1 of" in p for p in problems), problems
    assert any(f"record {last}" in p and "1 inf values in 1 of" in p for p in problems), problems
    assert len(problems) == 2
