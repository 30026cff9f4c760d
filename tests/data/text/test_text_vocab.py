from __future__ import annotations

import json

import pytest
import torch

from vlmt.data.text import Vocabulary, pad_indices
from vlmt.errors import DataError

SENTENCES = [["a", "dog", "runs"], ["a", "cat"], ["a", "dog"], ["the", "dog"]]


def test_build_keeps_words_at_min_count_most_frequent_first():
    vocab = Vocabulary.build(SENTENCES, min_count=2)
    assert vocab.tokens == ["<pad>", "<unk>", "a", "dog"]
    assert vocab.pad_index == 0 and vocab.unk_index == 1
    # ties are broken alphabetically so indices are reproducible
    assert Vocabulary.build(SENTENCES).words == ["a", "dog", "cat", "runs", "the"]
    assert Vocabulary.build(SENTENCES, max_size=1).words == ["a"]


def test_extra_specials_follow_pad_and_unk():
    vocab = Vocabulary.build(SENTENCES, specials=["<start>", "<end>"], min_count=3)
    assert vocab.tokens == ["<pad>", "<unk>", "<start>", "<end>", "a", "dog"]
    assert vocab.num_specials == 4


def test_encode_maps_unseen_to_unk_and_decode_drops_specials():
    vocab = Vocabulary.build(SENTENCES, min_count=2)
    ids = vocab.encode(["a", "zebra", "dog"])
    assert ids == [2, 1, 3]
    assert vocab.decode(ids) == ["a", "dog"]
    assert vocab.decode([0, *ids], skip_specials=False) == ["<pad>", "a", "<unk>", "dog"]


def test_pad_batch_gives_ids_and_lengths():
    vocab = Vocabulary.build(SENTENCES)
    ids, lengths = vocab.pad_batch([["a", "dog", "runs"], ["cat"], []])
    assert ids.dtype == torch.long and ids.shape == (3, 3)
    assert lengths.tolist() == [3, 1, 0]
    assert ids[1].tolist() == [vocab.index("cat"), 0, 0]
    assert ids[2].tolist() == [0, 0, 0]
    fixed, lengths = vocab.pad_batch([["a", "dog", "runs"], ["cat"]], max_length=2)
    assert fixed.shape == (2, 2) and lengths.tolist() == [2, 1]
    wide, _ = vocab.pad_batch([["cat"]], max_length=5)
    assert wide.shape == (1, 5)


def test_pad_indices_of_empty_batch():
    ids, lengths = pad_indices([])
    assert ids.shape == (0, 0) and lengths.shape == (0,)


def test_save_load_round_trip_is_atomic(tmp_path):
    vocab = Vocabulary.build(SENTENCES, specials=["<start>"])
    path = tmp_path / "vocab.json"
    vocab.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]
    loaded = Vocabulary.load(path)
    assert loaded == vocab and loaded.num_specials == 3
    assert loaded.encode(["dog", "zebra"]) == vocab.encode(["dog", "zebra"])


def test_load_names_file_and_field_of_a_bad_vocabulary(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"format": "vlmt-vocabulary", "version": 1, "pad": "<pad>",
                                "unk": "<unk>", "num_specials": 2, "tokens": ["<pad>", "<unk>", 3]}))
    with pytest.raises(DataError) as e:
        Vocabulary.load(path)
    assert str(path) in str(e.value) and "'tokens'" in str(e.value)
    path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(DataError, match="'format'"):
        Vocabulary.load(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        Vocabulary.load(path)
    with pytest.raises(DataError, match="not found"):
        Vocabulary.load(tmp_path / "missing.json")


def test_duplicate_tokens_are_rejected():
    with pytest.raises(ValueError, match="twice"):
        Vocabulary(["<pad>", "<unk>", "a", "a"])
