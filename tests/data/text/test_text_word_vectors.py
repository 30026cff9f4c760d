from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlmt.data.text import Vocabulary, load_word_vectors, save_word_vectors_text
from vlmt.errors import DataError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "text"
GLOVE = FIXTURES / "glove_tiny.txt"  # 4-dimensional, GloVe text format


def _row(wv, word):
    return wv.vectors[wv.words.index(word)]


def test_glove_keeps_only_requested_rows_in_request_order():
    wv = load_word_vectors(GLOVE, ["dog", "the", ","], lowercase_fallback=False)
    assert wv.vectors.shape == (3, 4) and wv.vectors.dtype == np.float32
    assert wv.file_format == "glove" and wv.dim == 4
    np.testing.assert_array_equal(wv.vectors[0], [0.5, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(wv.vectors[1], np.float32([0.1, 0.2, 0.3, 0.4]))  # first "the" wins
    np.testing.assert_array_equal(wv.vectors[2], np.float32([-0.5, 0.25, 0, 1e-3]))
    assert wv.coverage == 1.0 and wv.missing == []


def test_glove_tokens_with_spaces_take_the_last_d_fields_as_vector():
    wv = load_word_vectors(GLOVE, ["at name@domain.com", "New York", "at"])
    np.testing.assert_array_equal(_row(wv, "at name@domain.com"), [9, 8, 7, 6])
    np.testing.assert_array_equal(_row(wv, "New York"), [1.5, -1.5, 2.5, -2.5])
    assert wv.found.tolist() == [True, True, False]


def test_lowercase_fallback_prefers_exact_entries():
    wv = load_word_vectors(GLOVE, ["paris", "dog"])
    np.testing.assert_array_equal(_row(wv, "paris"), [4, 3, 2, 1])  # from "Paris"
    np.testing.assert_array_equal(_row(wv, "dog"), [0.5, 0.5, 0.5, 0.5])  # "dog", not "Dog"
    assert wv.lowercase_matches == ["paris"]
    assert not load_word_vectors(GLOVE, ["paris"], lowercase_fallback=False).found[0]


def test_missing_words_get_seeded_random_vectors_independent_of_the_request():
    a = load_word_vectors(GLOVE, ["zebra", "the", "okapi"], seed=3, init_std=0.2)
    b = load_word_vectors(GLOVE, ["okapi", "dog", "zebra", "yak"], seed=3, init_std=0.2)
    np.testing.assert_array_equal(_row(a, "zebra"), _row(b, "zebra"))
    np.testing.assert_array_equal(_row(a, "okapi"), _row(b, "okapi"))
    assert not np.array_equal(_row(a, "zebra"), _row(a, "okapi"))
    c = load_word_vectors(GLOVE, ["zebra", "the", "okapi"], seed=4, init_std=0.2)
    assert not np.array_equal(_row(a, "zebra"), _row(c, "zebra"))
    assert a.coverage == pytest.approx(1 / 3) and a.missing == ["zebra", "okapi"]


def test_random_init_scale_follows_the_loaded_vectors_or_init_std():
    words = ["dog", "the"] + [f"unknown{i}" for i in range(300)]
    wv = load_word_vectors(GLOVE, words)
    loaded_std = wv.vectors[:2].std()
    assert wv.init_std == pytest.approx(loaded_std)
    assert wv.vectors[2:].std() == pytest.approx(loaded_std, rel=0.1)
    assert abs(wv.vectors[2:].mean()) < 0.1 * loaded_std
    fixed = load_word_vectors(GLOVE, words, init_std=0.01)
    assert fixed.vectors[2:].std() == pytest.approx(0.01, rel=0.1)


def test_vocabulary_rows_follow_indices_with_zero_padding():
    vocab = Vocabulary.build([["dog", "the", "zebra"]], specials=["<start>"])
    wv = load_word_vectors(GLOVE, vocab, dim=4)
    assert wv.vectors.shape == (len(vocab), 4)
    np.testing.assert_array_equal(wv.vectors[vocab.pad_index], 0)
    assert np.abs(wv.vectors[vocab.unk_index]).sum() > 0  # specials other than padding are random
    np.testing.assert_array_equal(wv.vectors[vocab.index("dog")], [0.5] * 4)
    report = wv.report()
    assert report["requested"] == 3 and report["found"] == 2
    assert report["coverage"] == pytest.approx(2 / 3) and report["missing_examples"] == ["zebra"]
    assert tuple(wv.as_tensor().shape) == (len(vocab), 4)


def test_dimension_check_names_file_line_and_field():
    with pytest.raises(DataError) as e:
        load_word_vectors(GLOVE, ["dog"], dim=300)
    msg = str(e.value)
    assert str(GLOVE) in msg and "line 1" in msg and "'dim'" in msg and "300" in msg


@pytest.mark.parametrize(
    "content,line,field,text",
    [
        ("a 1 2 3\nb 1 2\n", "line 2", "'vector'", "found 3 fields"),
        ("a 1 2 3\nb 1 x 3\n", "line 2", "'value 2'", "not a number"),
        ("a 1 2 3\n\nb 1 2 3\n", "line 2", None, "empty line"),
        ("a 1 2 3\nb 1 nan 3\n", "line 2", "'value 2'", "not finite"),
    ],
)
def test_malformed_glove_lines_are_errors(tmp_path, content, line, field, text):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(DataError) as e:
        load_word_vectors(path, ["a", "b"])
    msg = str(e.value)
    assert str(path) in msg and line in msg and text in msg
    if field:
        assert field in msg


def test_word2vec_text_with_header_and_trailing_spaces(tmp_path):
    path = tmp_path / "vectors.vec"
    path.write_text("2 3\ncat 1 2 3 \ndog 4 5 6 \n")
    wv = load_word_vectors(path, ["dog", "cat"], dim=3)
    assert wv.file_format == "word2vec-text"
    np.testing.assert_array_equal(wv.vectors, [[4, 5, 6], [1, 2, 3]])


def _word2vec_binary(path, entries, *, newline: bool, header: str | None = None):
    dim = len(entries[0][1])
    with open(path, "wb") as f:
        f.write((header or f"{len(entries)} {dim}\n").encode())
        for word, vec in entries:
            f.write(word.encode("utf-8") + b" " + struct.pack(f"<{dim}f", *vec))
            if newline:
                f.write(b"\n")


ENTRIES = [("the", [0.5, -1.0, 2.0]), ("café", [1.0, 2.0, 3.0]), ("Dog", [7.0, 8.0, 9.0]),
           ("nl", [10.0, 0.0, -0.0])]


@pytest.mark.parametrize("newline", [True, False])
def test_word2vec_binary_with_and_without_newlines(tmp_path, newline):
    path = tmp_path / "vectors.bin"
    _word2vec_binary(path, ENTRIES, newline=newline)
    wv = load_word_vectors(path, ["dog", "café", "nl", "zebra"], dim=3)
    assert wv.file_format == "word2vec"
    np.testing.assert_array_equal(wv.vectors[:3], [[7, 8, 9], [1, 2, 3], [10, 0, 0]])
    assert wv.found.tolist() == [True, True, True, False]


def test_word2vec_binary_is_detected_without_bin_suffix(tmp_path):
    path = tmp_path / "vectors"
    # 0x0a bytes inside the vectors (the float 1.0e-32 starts with 0x0a) must not confuse the reader
    entries = [("a", [struct.unpack("<f", b"\x0a\x0a\x0a\x0a")[0], 1.0]), ("b", [2.0, 3.0])]
    _word2vec_binary(path, entries, newline=True)
    wv = load_word_vectors(path, ["b", "a"])
    assert wv.file_format == "word2vec"
    np.testing.assert_array_equal(wv.vectors[0], [2, 3])
    assert wv.vectors[1].tobytes()[:4] == b"\x0a\x0a\x0a\x0a"


def test_truncated_word2vec_binary_names_the_record(tmp_path):
    path = tmp_path / "vectors.bin"
    _word2vec_binary(path, ENTRIES, newline=True)
    data = path.read_bytes()
    path.write_bytes(data[:-6])
    with pytest.raises(DataError) as e:
        load_word_vectors(path, ["the"])
    assert str(path) in str(e.value) and "record 4" in str(e.value) and "'vector'" in str(e.value)
    _word2vec_binary(path, ENTRIES, newline=True, header="5 3\n")
    with pytest.raises(DataError, match="record 5"):
        load_word_vectors(path, ["the"])
    _word2vec_binary(path, ENTRIES, newline=True, header="3 3\n")
    with pytest.raises(DataError, match="data after the 3 records"):
        load_word_vectors(path, ["the"])


def test_word2vec_binary_bad_header(tmp_path):
    path = tmp_path / "vectors.bin"
    path.write_bytes(b"three 3\n")
    with pytest.raises(DataError):
        load_word_vectors(path, ["a"], file_format="word2vec")
    _word2vec_binary(path, ENTRIES, newline=True)
    with pytest.raises(DataError, match="'dim'"):
        load_word_vectors(path, ["a"], dim=300)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_word_vectors(tmp_path / "none.txt", ["a"])


def test_saved_subset_reloads_identically(tmp_path):
    wv = load_word_vectors(GLOVE, ["New York", "the", "zebra"])
    path = tmp_path / "cache" / "subset.txt"
    save_word_vectors_text(path, wv.words, wv.vectors)
    again = load_word_vectors(path, wv.words, dim=4)
    np.testing.assert_array_equal(again.vectors, wv.vectors)
    assert again.found.all()


def test_repeated_requested_words_share_one_vector():
    wv = load_word_vectors(GLOVE, ["dog", "zebra", "dog", "zebra"], init_std=0.3)
    np.testing.assert_array_equal(wv.vectors[0], wv.vectors[2])
    np.testing.assert_array_equal(wv.vectors[1], wv.vectors[3])
    assert wv.found.tolist() == [True, False, True, False]


_token = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=8
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(_token, min_size=1, max_size=6, unique=True),
    st.integers(1, 5),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_word2vec_binary_round_trip_is_bit_exact(tmp_path, tokens, dim, newline, seed):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((len(tokens), dim)).astype(np.float32)
    path = tmp_path / "rt.bin"
    _word2vec_binary(path, list(zip(tokens, vectors.tolist())), newline=newline)
    wv = load_word_vectors(path, tokens, dim=dim, lowercase_fallback=False)
    assert wv.found.all()
    assert wv.vectors.tobytes() == vectors.tobytes()
