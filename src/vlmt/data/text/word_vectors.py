"""Pretrained word vectors (GloVe text, word2vec text and binary), loaded row by row.

The files are streamed once and only the rows of the requested words are kept, so loading
vectors for a 20k-word vocabulary from the 5.6 GB GloVe 840B file needs about 20k x 300 floats of
memory, not the whole file. Words the file lacks get a seeded random vector.

Formats read:
* GloVe text: one line per word, ``token v1 ... vD`` separated by single spaces. The token may
  itself contain spaces (the 840B file has such lines), so the last D fields are the vector and
  everything before them is the token.
* word2vec text (e.g. fastText ``.vec``): the same lines after a header line ``count dim``.
* word2vec binary: a header line ``count dim``, then per word the UTF-8 token, one space, and D
  little-endian float32 values; a newline may follow each vector (the original tool writes one,
  some writers do not).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import torch

from vlmt.data.text.vocab import Vocabulary
from vlmt.errors import DataError
from vlmt.io import atomic_write

VectorFormat = Literal["auto", "glove", "word2vec", "word2vec-text"]
FALLBACK_INIT_STD = 0.1
_CHUNK = 1 << 20
_MAX_WORD_BYTES = 1 << 16


@dataclass
class WordVectors:
    """Vectors for a requested word list, row i for `words[i]`.

    `found[i]` says whether row i came from the file (exactly or through a lowercase match);
    other rows are random (see :func:`load_word_vectors`) or zero (padding).
    """

    words: list[str]
    vectors: np.ndarray  # (V, D) float32
    found: np.ndarray  # (V,) bool
    source: str
    file_format: str
    lowercase_matches: list[str] = field(default_factory=list)
    counted: np.ndarray | None = None  # (V,) bool: rows that count towards coverage
    init_std: float = FALLBACK_INIT_STD

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def _counted(self) -> np.ndarray:
        return self.counted if self.counted is not None else np.ones(len(self.words), dtype=bool)

    @property
    def coverage(self) -> float:
        """Fraction of the requested (non-special) words that have a pretrained vector."""
        counted = self._counted()
        total = int(counted.sum())
        return float((self.found & counted).sum()) / total if total else 0.0

    @property
    def missing(self) -> list[str]:
        """Requested (non-special) words the file has no vector for, in request order."""
        counted = self._counted()
        return [w for w, f, c in zip(self.words, self.found, counted) if c and not f]

    def report(self, *, examples: int = 20) -> dict:
        """Coverage summary for logs and run folders."""
        counted = self._counted()
        return {
            "file": self.source,
            "format": self.file_format,
            "dim": self.dim,
            "requested": int(counted.sum()),
            "found": int((self.found & counted).sum()),
            "coverage": round(self.coverage, 6),
            "lowercase_matches": len(self.lowercase_matches),
            "random_init_std": self.init_std,
            "missing_examples": self.missing[:examples],
        }

    def as_tensor(self) -> torch.Tensor:
        """The (V, D) float32 matrix as a tensor, e.g. for ``nn.Embedding.from_pretrained``."""
        return torch.from_numpy(self.vectors)


def load_word_vectors(
    path: str | os.PathLike,
    words: Vocabulary | Sequence[str],
    *,
    file_format: VectorFormat = "auto",
    dim: int | None = None,
    seed: int = 0,
    init_std: float | None = None,
    lowercase_fallback: bool = True,
) -> WordVectors:
    """Read vectors for `words` (a word list or a Vocabulary, whose index order the rows follow).

    * `dim`: expected vector size; a file of another size raises DataError.
    * `lowercase_fallback`: when a word has no exact entry, take the first entry (in file order,
      which is frequency order for GloVe and word2vec) whose lowercased token equals the word, so
      lowercased tokens find vectors in cased files such as GloVe 840B. Exact entries win.
    * Missing words get ``N(0, s^2)`` entries, where `s` is `init_std` or, when None, the
      standard deviation of all loaded vector entries (0.1 when nothing was found). Each
      missing word's vector is drawn from a generator seeded by (`seed`, CRC32 of the word), so
      its direction does not depend on which other words are requested or found (its scale
      does, unless `init_std` is given).
    * With a Vocabulary, the padding row is zero, other special tokens get random vectors, and
      specials do not count towards coverage.
    """
    path = Path(path)
    if isinstance(words, Vocabulary):
        word_list = words.tokens
        counted = np.zeros(len(word_list), dtype=bool)
        counted[words.num_specials :] = True
        zero_rows = [words.pad_index]
    else:
        word_list = list(words)
        counted = np.ones(len(word_list), dtype=bool)
        zero_rows = []
    wanted: dict[str, int] = {}
    for i, w in enumerate(word_list):
        if counted[i]:
            wanted.setdefault(w, i)
    if not path.is_file():
        raise DataError(path, "word vector file not found")
    if file_format == "auto":
        file_format = _detect_format(path)
    if file_format not in ("glove", "word2vec", "word2vec-text"):
        raise ValueError(f"unknown word vector format {file_format!r}")

    scan = _Scan(wanted, lowercase_fallback, rows=len(word_list))
    with open(path, "rb") as f:
        if file_format == "word2vec":
            file_dim = _scan_word2vec_binary(f, path, scan, dim)
        else:
            file_dim = _scan_text(f, path, scan, dim, header=file_format == "word2vec-text")

    vectors = scan.matrix if scan.matrix is not None else np.zeros((len(word_list), file_dim), np.float32)
    found = np.zeros(len(word_list), dtype=bool)
    found[np.array([wanted[w] for w in (*scan.exact, *scan.folded)], dtype=np.int64)] = True
    lowercase_matches = [w for w in scan.folded if w not in scan.exact]
    # duplicates of a requested word in `words` share the first row's vector
    for i, w in enumerate(word_list):
        if counted[i] and wanted[w] != i:
            vectors[i] = vectors[wanted[w]]
            found[i] = found[wanted[w]]

    if init_std is None:
        init_std = _std_of_rows(vectors, found) if found.any() else FALLBACK_INIT_STD
    for i, w in enumerate(word_list):
        if not found[i] and i not in zero_rows:
            rng = np.random.default_rng([seed, zlib.crc32(w.encode("utf-8"))])
            vectors[i] = rng.standard_normal(file_dim, dtype=np.float32) * init_std
    return WordVectors(
        words=word_list,
        vectors=vectors,
        found=found,
        source=str(path),
        file_format=file_format,
        lowercase_matches=lowercase_matches,
        counted=counted,
        init_std=init_std,
    )


def _std_of_rows(vectors: np.ndarray, rows: np.ndarray) -> float:
    """Standard deviation of all entries of the selected rows, without copying them."""
    total = total_sq = 0.0
    for i in np.flatnonzero(rows):
        row = vectors[i].astype(np.float64)
        total += row.sum()
        total_sq += (row * row).sum()
    n = int(rows.sum()) * vectors.shape[1]
    mean = total / n
    return float(np.sqrt(max(total_sq / n - mean * mean, 0.0)))


def save_word_vectors_text(path: str | os.PathLike, words: Iterable[str], vectors: np.ndarray) -> None:
    """Write vectors in GloVe text format, atomically (e.g. to cache the rows of one vocabulary
    so later runs read a small file). Tokens containing newlines cannot be written."""
    vectors = np.asarray(vectors, dtype=np.float32)
    with atomic_write(path, "w", encoding="utf-8", newline="\n") as f:
        for word, row in zip(words, vectors, strict=True):
            if "\n" in word or "\r" in word or not word:
                raise ValueError(f"cannot write token {word!r} in the GloVe text format")
            f.write(word + " " + " ".join(repr(float(x)) for x in row) + "\n")


# -- scanning -------------------------------------------------------------------------------


class _Scan:
    """Writes the rows of wanted words into a (rows, D) matrix while a file streams past."""

    def __init__(self, wanted: dict[str, int], lowercase_fallback: bool, *, rows: int):
        self.wanted = wanted
        self.wanted_bytes = {w.encode("utf-8"): w for w in wanted}
        self.lowercase_fallback = lowercase_fallback
        self.rows = rows
        self.matrix: np.ndarray | None = None  # allocated at the first kept row
        self.exact: dict[str, None] = {}  # insertion-ordered sets
        self.folded: dict[str, None] = {}

    def target(self, token: bytes) -> tuple[str, bool] | None:
        """(word, exact) when this file token supplies a row still needed, else None."""
        word = self.wanted_bytes.get(token)
        if word is not None:
            return (word, True) if word not in self.exact else None
        if self.lowercase_fallback:
            folded = token.decode("utf-8", errors="replace").lower()
            if folded in self.wanted and folded not in self.exact and folded not in self.folded:
                return folded, False
        return None

    def keep(self, word: str, exact: bool, vector: np.ndarray) -> None:
        if self.matrix is None:
            self.matrix = np.zeros((self.rows, vector.shape[0]), dtype=np.float32)
        self.matrix[self.wanted[word]] = vector  # an exact row later overwrites a lowercase match
        (self.exact if exact else self.folded)[word] = None


def _detect_format(path: Path) -> Literal["glove", "word2vec", "word2vec-text"]:
    """word2vec binary when the name ends in .bin or the data after a ``count dim`` header is not
    text; word2vec text when such a header is followed by text lines; GloVe text otherwise."""
    with open(path, "rb") as f:
        first = f.readline()
        if _parse_header(first) is None:
            return "glove"
        if path.suffix == ".bin":
            return "word2vec"
        sample = f.read(4096)
    if b"\x00" in sample:
        return "word2vec"
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:
        # a cut in the middle of a multi-byte character at the end of the sample is still text
        if e.start < len(sample) - 4:
            return "word2vec"
    return "word2vec-text"


def _parse_header(line: bytes) -> tuple[int, int] | None:
    parts = line.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


def _check_dim(path: Path, file_dim: int, expected: int | None, record: str) -> None:
    if file_dim < 1:
        raise DataError(path, f"vector dimension must be positive, got {file_dim}", record=record, field="dim")
    if expected is not None and file_dim != expected:
        raise DataError(path, f"vectors have {file_dim} dimensions, expected {expected}", record=record, field="dim")


def _infer_dim(line: bytes) -> int:
    """Vector size of a headerless file from its first line: the number of trailing fields that
    are numbers (the token, first field, may contain spaces but should not end in a number)."""
    fields = line.split(b" ")
    n = 0
    for value in reversed(fields[1:]):
        try:
            float(value)
        except ValueError:
            break
        n += 1
    return n


def _parse_values(path: Path, fields: list[bytes], line_no: int) -> np.ndarray:
    try:
        vec = np.array(fields, dtype=np.float32)
    except ValueError:
        for k, value in enumerate(fields):
            try:
                float(value)
            except ValueError:
                raise DataError(
                    path, f"not a number: {value[:40]!r}", record=f"line {line_no}", field=f"value {k + 1}"
                ) from None
        raise
    if not np.isfinite(vec).all():
        k = int(np.flatnonzero(~np.isfinite(vec))[0])
        raise DataError(path, "value is not finite", record=f"line {line_no}", field=f"value {k + 1}")
    return vec


def _scan_text(f: BinaryIO, path: Path, scan: _Scan, dim: int | None, *, header: bool) -> int:
    file_dim: int | None = None
    line_no = 0
    if header:
        line_no = 1
        parsed = _parse_header(f.readline())
        if parsed is None:
            raise DataError(path, "expected a header 'count dim'", record="line 1", field="header")
        file_dim = parsed[1]
        _check_dim(path, file_dim, dim, "line 1")
    for raw in f:
        line_no += 1
        line = raw.rstrip(b"\r\n").rstrip(b" ")
        if not line:
            raise DataError(path, "empty line", record=f"line {line_no}")
        if file_dim is None:
            file_dim = _infer_dim(line)
            _check_dim(path, file_dim, dim, f"line {line_no}")
        spaces = line.count(b" ")
        if spaces == file_dim:
            cut = line.find(b" ")
        elif spaces > file_dim:  # the token contains spaces: the vector is the last D fields
            cut = len(line.rsplit(b" ", file_dim)[0])
        else:
            raise DataError(
                path,
                f"expected a token and {file_dim} values, found {spaces + 1} fields",
                record=f"line {line_no}",
                field="vector",
            )
        if cut == 0:
            raise DataError(path, "empty token", record=f"line {line_no}", field="token")
        hit = scan.target(line[:cut])
        if hit is not None:
            scan.keep(*hit, _parse_values(path, line[cut + 1 :].split(b" "), line_no))
    if file_dim is None:
        raise DataError(path, "file holds no vectors")
    return file_dim


def _scan_word2vec_binary(f: BinaryIO, path: Path, scan: _Scan, dim: int | None) -> int:
    parsed = _parse_header(f.readline())
    if parsed is None:
        raise DataError(path, "expected a header 'count dim'", record="line 1", field="header")
    count, file_dim = parsed
    _check_dim(path, file_dim, dim, "line 1")
    size = 4 * file_dim
    buf = bytearray()
    pos = 0
    offset = f.tell()  # file offset of buf[0]
    eof = False

    def more() -> bool:
        nonlocal buf, pos, offset, eof
        if eof:
            return False
        chunk = f.read(_CHUNK)
        if not chunk:
            eof = True
            return False
        del buf[:pos]
        offset += pos
        pos = 0
        buf += chunk
        return True

    for record in range(1, count + 1):
        where = f"record {record}"
        while True:  # skip the newline (and stray whitespace) between records
            while pos < len(buf) and buf[pos] in b"\n\r\t ":
                pos += 1
            if pos < len(buf) or not more():
                break
        space = buf.find(b" ", pos)
        while space < 0:
            if len(buf) - pos > _MAX_WORD_BYTES:
                raise DataError(path, f"no space after the token at byte {offset + pos}", record=where, field="token")
            if not more():
                what = "token" if pos < len(buf) else "record"
                raise DataError(path, f"file ends before {what} {record} of {count}", record=where, field="token")
            space = buf.find(b" ", pos)
        token = bytes(buf[pos:space])
        pos = space + 1
        while len(buf) - pos < size:
            if not more():
                raise DataError(
                    path,
                    f"file ends {len(buf) - pos} bytes into a {size}-byte vector (token {token[:40]!r})",
                    record=where,
                    field="vector",
                )
        hit = scan.target(token)
        if hit is not None:
            vec = np.frombuffer(buf, dtype="<f4", count=file_dim, offset=pos).astype(np.float32)
            if not np.isfinite(vec).all():
                k = int(np.flatnonzero(~np.isfinite(vec))[0])
                raise DataError(path, f"value {k + 1} is not finite", record=where, field="vector")
            scan.keep(*hit, vec)
        pos += size
    while True:
        rest = bytes(buf[pos:]).strip()
        if rest:
            raise DataError(path, f"data after the {count} records the header announces", record=f"record {count + 1}")
        pos = len(buf)
        if not more():
            break
    return file_dim
