from __future__ import annotations

import json

import pytest

from vlmt.data.readers import _stream
from vlmt.data.readers._stream import ArrayStream
from vlmt.errors import DataError


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_records_and_header_equal_a_full_parse_across_chunk_boundaries(tmp_path, monkeypatch, fixtures, chunk):
    monkeypatch.setattr(_stream, "_CHUNK", chunk)
    path = fixtures / "vqa" / "v2_mscoco_val2014_annotations.json"
    whole = json.loads(path.read_text())
    stream = ArrayStream(path, "annotations")
    assert list(stream) == whole["annotations"]
    assert stream.header == {k: v for k, v in whole.items() if k != "annotations"}
    # numbers split by a chunk boundary are read whole; the array may come first
    other = tmp_path / "n.json"
    other.write_text('{"items": [123456789, -2.5e10, "x"], "year": 2017123}')
    s = ArrayStream(other, "items")
    assert list(s) == [123456789, -2.5e10, "x"] and s.header == {"year": 2017123}


@pytest.mark.parametrize("text", ['{"items": [1, 2', '{"items": [1 2]}', '{"items": [1], }', '{"items": []} x', ''])
def test_broken_json_is_a_data_error(tmp_path, monkeypatch, text):
    monkeypatch.setattr(_stream, "_CHUNK", 4)
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DataError, match="not valid JSON"):
        list(ArrayStream(path, "items"))
