"""Converters: bottom-up TSV and HDF5 -> FeatureStore, bit-exact, with clear errors on bad records."""

from __future__ import annotations

import base64
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from vlmt.cli import main
from vlmt.data.features.convert import TSV_LAYOUTS, convert, encode_tsv_line, read_hdf5, read_tsv
from vlmt.data.features.store import FeatureStore
from vlmt.data.features.validate import validate_store
from vlmt.errors import DataError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "features"


def decode_fixture_line(line: bytes):
    """Independent reading of the published format: struct on the base64-decoded bytes."""
    image_id, w, h, n, boxes, feats = line.rstrip(b"\r\n").split(b"\t")
    n = int(n)
    b = struct.unpack(f"<{4 * n}f", base64.b64decode(boxes))
    raw = base64.b64decode(feats)
    f = struct.unpack(f"<{len(raw) // 4}f", raw)
    return int(image_id), int(w), int(h), np.array(b, np.float32).reshape(n, 4), np.array(f, np.float32).reshape(n, -1)


def test_fixture_tsv_round_trips_bit_exactly(tmp_path):
    fixture = FIXTURES / "bottom_up.tsv"
    summary = convert("tsv", [fixture], tmp_path / "s")
    store = FeatureStore(tmp_path / "s")
    lines = fixture.read_bytes().splitlines(keepends=True)
    assert summary.images == len(store) == len(lines) == 3 and store.feature_dim == 4
    for line in lines:
        image_id, w, h, boxes, feats = decode_fixture_line(line)
        got = store[image_id]
        assert (got.width, got.height) == (w, h)
        np.testing.assert_array_equal(got.boxes.view(np.uint32), boxes.view(np.uint32))
        np.testing.assert_array_equal(got.features.view(np.uint32), feats.view(np.uint32))
    # hand-checked values from tests/fixtures/features/README.md
    assert store[9].boxes[1].tolist() == [10.5, 20.25, 100.0, 200.0]
    assert store[25].features[2].tolist()[2:] == [0.125, 65504.0]
    assert np.signbit(store[9].features[1, 2]) and store[393267].boxes.shape == (1, 4)
    assert list(store.image_ids()) == [9, 25, 393267]
    assert validate_store(store.path) == []


def test_lxmert_layout_reads_named_ids_and_height_before_width(tmp_path):
    convert("tsv", [FIXTURES / "lxmert.tsv"], tmp_path / "s")
    store = FeatureStore(tmp_path / "s")
    assert list(store.image_ids()) == [9, 25]
    assert store.image_size(9) == (640, 480)
    assert store[25].boxes[2].tolist() == [249.5, 187.5, 250.0, 188.0]


def _random_lines(rng, ids, d=16, layout="bottom-up"):
    out = {}
    for image_id in ids:
        t = int(rng.integers(10, 37))
        x = np.sort(rng.uniform(0, 300, (t, 2)), 1)
        y = np.sort(rng.uniform(0, 200, (t, 2)), 1)
        boxes = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1).astype(np.float32)
        scale = rng.choice([1e-30, 1.0, 1e30], (t, d)).astype(np.float32)  # tiny, ordinary and huge values
        feats = rng.standard_normal((t, d)).astype(np.float32) * scale
        out[image_id] = (encode_tsv_line(image_id, 300, 200, boxes, feats, layout=layout), boxes, feats)
    return out


@pytest.mark.parametrize("layout", list(TSV_LAYOUTS))
def test_every_layout_round_trips_over_several_files(tmp_path, layout):
    rng = np.random.default_rng(3)
    a, b = _random_lines(rng, range(0, 20), layout=layout), _random_lines(rng, range(100, 115), layout=layout)
    (tmp_path / "a.tsv").write_bytes(b"".join(v[0] for v in a.values()))
    (tmp_path / "b.tsv").write_bytes(b"".join(v[0] for v in b.values()) + b"\r\n")  # trailing blank line
    fields = "auto" if layout in ("bottom-up", "lxmert") else layout
    convert("tsv", [tmp_path / "a.tsv", tmp_path / "b.tsv"], tmp_path / "s", tsv_fields=fields)
    store = FeatureStore(tmp_path / "s")
    assert len(store) == 35
    for image_id, (_, boxes, feats) in (a | b).items():
        np.testing.assert_array_equal(store[image_id].features.view(np.uint32), feats.view(np.uint32))
        np.testing.assert_array_equal(store[image_id].boxes.view(np.uint32), boxes.view(np.uint32))


def test_cli_convert_prints_one_json_object(tmp_path, capsys):
    code = main(["data", "convert", "--from", "tsv", str(FIXTURES / "bottom_up.tsv"), "--out", str(tmp_path / "s"),
                 "--json"])
    captured = capsys.readouterr()
    assert code == 0
    result = json.loads(captured.out)
    assert result["images"] == 3 and result["regions"] == 6 and result["feature_dim"] == 4
    assert "wrote 3 images" in captured.err


def _line(image_id=1, w=b"300", h=b"200", n=None, boxes=None, feats=None, extra=()):
    bx = np.array([[0, 0, 10, 10], [5, 5, 20, 30]], np.float32) if boxes is None else boxes
    ft = np.ones((2, 8), np.float32) if feats is None else feats
    cols = [str(image_id).encode(), w, h, str(len(bx)).encode() if n is None else n,
            base64.b64encode(bx.tobytes()), base64.b64encode(ft.tobytes()), *extra]
    return b"\t".join(cols) + b"\r\n"


@pytest.mark.parametrize(
    "bad, field, words",
    [
        (_line(extra=(b"x", b"y", b"z")), None, "9 tab-separated fields"),
        (_line(w=b"3OO"), "image_w", "not an integer"),
        (_line(h=b""), "image_h", "not an integer"),
        (_line(n=b"3"), "boxes", "num_boxes=3 needs 12"),
        (_line(n=b"0"), "num_boxes", "at least 1"),
        (_line(image_id="abc"), "image_id", "neither an integer"),
        (_line().replace(b"AAAA", b"A!AA", 1), "boxes", "base64"),
        (_line(feats=np.ones((2, 8), np.float32))[:-20] + b"\r\n", "features", ""),
        (_line(feats=np.ones(15, np.float32)), "features", "do not split into 2 regions"),
        (_line(feats=np.full((2, 8), np.nan, np.float32)), "features", "NaN"),
        (_line(boxes=np.array([[0, 0, 10, 10], [50, 5, 20, 30]], np.float32)), "boxes", "inverted"),
        (_line(boxes=np.array([[0, 0, 10, 10], [5, 5, 20, 300]], np.float32)), "boxes", "outside the 300x200"),
        (_line(w=b"0"), "image_w", "positive"),
        (_line(image_id=7), "image_id", "added twice"),
        (_line(feats=np.ones((2, 4), np.float32)), "features", "earlier records have 8"),
    ],
)
def test_bad_record_names_file_line_and_field_and_writes_nothing(tmp_path, capsys, bad, field, words):
    path = tmp_path / "in.tsv"
    path.write_bytes(_line(7) + _line(8) + bad + _line(9))
    code = main(["data", "convert", "--from", "tsv", str(path), "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1
    assert err.startswith(f"error: {path}: record line 3")
    if field:
        assert f"field {field!r}" in err
    assert words in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tsv"]
    with pytest.raises(DataError):
        convert("tsv", [path], tmp_path / "s")


def test_python3_bytes_literal_fields_are_read(tmp_path):
    line = _line(5)
    cols = line.rstrip(b"\r\n").split(b"\t")
    cols[4], cols[5] = b"b'" + cols[4] + b"'", b"b'" + cols[5] + b"'"
    (tmp_path / "a.tsv").write_bytes(b"\t".join(cols) + b"\n")
    convert("tsv", [tmp_path / "a.tsv"], tmp_path / "s")
    assert FeatureStore(tmp_path / "s")[5].boxes[1].tolist() == [5, 5, 20, 30]


def test_missing_input_file(tmp_path, capsys):
    assert main(["data", "convert", "--from", "tsv", str(tmp_path / "nope.tsv"), "--out", str(tmp_path / "s")]) == 1
    assert "nope.tsv: cannot open" in capsys.readouterr().err


def test_unknown_column_count_asks_for_field_names(tmp_path):
    path = tmp_path / "in.tsv"
    path.write_bytes(_line(extra=(b"AAAA",)))
    with pytest.raises(DataError, match="--tsv-fields"):
        convert("tsv", [path], tmp_path / "s")
    convert("tsv", [path], tmp_path / "s", tsv_fields="bottom-up-cls-prob")
    assert list(FeatureStore(tmp_path / "s")) == [1]


def test_duplicate_id_across_files_is_refused(tmp_path):
    (tmp_path / "a.tsv").write_bytes(_line(1) + _line(2))
    (tmp_path / "b.tsv").write_bytes(_line(3) + _line(2))
    with pytest.raises(DataError, match=r"b\.tsv: record line 2 \(image 2\): field 'image_id'"):
        convert("tsv", [tmp_path / "a.tsv", tmp_path / "b.tsv"], tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_expected_feature_dim_is_checked(tmp_path):
    (tmp_path / "a.tsv").write_bytes(_line(1))
    with pytest.raises(DataError, match="expected --feature-dim 2048"):
        convert("tsv", [tmp_path / "a.tsv"], tmp_path / "s", feature_dim=2048)


# ---------------------------------------------------------------- HDF5

h5py = pytest.importorskip("h5py")


def _images(rng, n=5, d=8, t_max=6):
    out = {}
    for k in range(n):
        t = int(rng.integers(1, t_max + 1))
        x = np.sort(rng.uniform(0, 50, (t, 2)), 1)
        boxes = np.stack([x[:, 0], x[:, 0] / 2, x[:, 1], x[:, 1] / 2], 1).astype(np.float32)
        out[1000 + 3 * k] = (60 + k, 40 + k, boxes, rng.standard_normal((t, d)).astype(np.float32))
    return out


def _check(store_path, images):
    store = FeatureStore(store_path)
    assert list(store.image_ids()) == list(images)
    for image_id, (w, h, boxes, feats) in images.items():
        got = store[image_id]
        assert (got.width, got.height) == (w, h)
        np.testing.assert_array_equal(got.boxes.view(np.uint32), boxes.view(np.uint32))
        np.testing.assert_array_equal(got.features.view(np.uint32), feats.view(np.uint32))
    assert validate_store(store.path) == []


def test_hdf5_per_image_groups(tmp_path):
    images = _images(np.random.default_rng(0))
    with h5py.File(tmp_path / "f.h5", "w") as f:
        for image_id, (w, h, boxes, feats) in images.items():
            g = f.create_group(str(image_id))
            g["boxes"], g["features"] = boxes, feats
            g.attrs["image_w"] = w
            g["image_h"] = h  # a scalar dataset works as well as an attribute
    convert("hdf5", [tmp_path / "f.h5"], tmp_path / "s")
    _check(tmp_path / "s", dict(sorted(images.items(), key=lambda kv: str(kv[0]))))


@pytest.mark.parametrize("transposed", [False, True])
def test_hdf5_stacked_padded_arrays_with_counts(tmp_path, transposed):
    images = _images(np.random.default_rng(1))
    t, n = 6, len(images)
    feats = np.zeros((n, t, 8), np.float32)
    boxes = np.zeros((n, t, 4), np.float32)
    for k, (_, _, b, f) in enumerate(images.values()):
        boxes[k, : len(b)], feats[k, : len(f)] = b, f
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["features"] = feats.transpose(0, 2, 1) if transposed else feats
        f["boxes"] = boxes.transpose(0, 2, 1) if transposed else boxes
        f["ids"] = np.array([f"COCO_val2014_{i:012d}".encode() for i in images])  # ids as file stems
        f["widths"] = np.array([v[0] for v in images.values()], np.int32)
        f["heights"] = np.array([v[1] for v in images.values()], np.int32)
        f["num_boxes"] = np.array([len(v[2]) for v in images.values()])
    convert("hdf5", [tmp_path / "f.h5"], tmp_path / "s")
    _check(tmp_path / "s", images)


def test_hdf5_flat_rows_with_pos_boxes(tmp_path):
    images = _images(np.random.default_rng(2))
    counts = [len(v[2]) for v in images.values()]
    ends = np.cumsum(counts)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["image_features"] = np.concatenate([v[3] for v in images.values()])
        f["image_bb"] = np.concatenate([v[2] for v in images.values()])
        f["pos_boxes"] = np.stack([ends - counts, ends], 1).astype(np.int32)
        f["image_id"] = np.array(list(images))
        f["image_w"] = np.array([v[0] for v in images.values()])
        f["image_h"] = np.array([v[1] for v in images.values()])
    assert main(["data", "convert", "--from", "hdf5", str(tmp_path / "f.h5"), "--out", str(tmp_path / "s")]) == 0
    _check(tmp_path / "s", images)


def test_hdf5_problems_name_file_record_and_field(tmp_path):
    images = _images(np.random.default_rng(4), t_max=1)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["features"] = np.stack([v[3] for v in images.values()])
        f["boxes"] = np.stack([v[2] for v in images.values()])
        f["ids"] = np.array(list(images))
        f["widths"] = np.array([v[0] for v in images.values()])
    with pytest.raises(DataError, match="f.h5: field 'image_h': no image height dataset"):
        list(read_hdf5(tmp_path / "f.h5"))
    with h5py.File(tmp_path / "f.h5", "a") as f:
        f["heights"] = np.array([v[1] for v in images.values()])
        f["features"][2, 0, 3] = np.inf
    with pytest.raises(DataError, match=r"f.h5: record 2 \(image 1006\): field 'features': 1 inf"):
        convert("hdf5", [tmp_path / "f.h5"], tmp_path / "s")
    assert not (tmp_path / "s").exists()
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="cannot open as HDF5"):
        list(read_hdf5(tmp_path / "junk.h5"))


def test_missing_h5py_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # as if not installed
    with pytest.raises(DataError, match="needs the optional h5py package"):
        convert("hdf5", [tmp_path / "f.h5"], tmp_path / "s")


def test_read_tsv_streams_one_record_at_a_time():
    records = read_tsv(FIXTURES / "bottom_up.tsv")
    first = next(records)
    assert first.image_id == 9 and first.where == "line 1 (image 9)"
