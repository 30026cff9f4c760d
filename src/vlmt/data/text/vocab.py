"""Word vocabulary: token <-> index, built from token streams with a minimum count.

Index 0 is always the padding token and index 1 the unknown token, so zero-padded batches and
``nn.Embedding(padding_idx=0)`` line up. Ordinary words follow in order of decreasing count
(ties broken alphabetically), which makes the index of a word reproducible across runs.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from vlmt.errors import DataError
from vlmt.io import write_json

PAD = "<pad>"
UNK = "<unk>"
FORMAT = "vlmt-vocabulary"
VERSION = 1


class Vocabulary:
    """A fixed token list; index 0 is padding, index 1 unknown, then any extra specials, then words."""

    def __init__(self, tokens: Sequence[str], *, pad: str = PAD, unk: str = UNK, num_specials: int = 2):
        tokens = list(tokens)
        if len(tokens) < 2 or tokens[0] != pad or tokens[1] != unk:
            raise ValueError(f"a vocabulary starts with {pad!r}, {unk!r}; got {tokens[:2]!r}")
        if not 2 <= num_specials <= len(tokens):
            raise ValueError(f"num_specials must be in [2, {len(tokens)}], got {num_specials}")
        index: dict[str, int] = {}
        for i, token in enumerate(tokens):
            if token in index:
                raise ValueError(f"token {token!r} appears twice (indices {index[token]} and {i})")
            index[token] = i
        self._tokens = tokens
        self._index = index
        self.pad = pad
        self.unk = unk
        self.num_specials = num_specials

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        token_streams: Iterable[Iterable[str]],
        *,
        min_count: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = (),
        pad: str = PAD,
        unk: str = UNK,
    ) -> Vocabulary:
        """Count tokens over `token_streams` (e.g. one list per sentence) and keep every token seen
        at least `min_count` times, most frequent first, at most `max_size` ordinary words.

        `specials` (e.g. ``"<start>"``, ``"<end>"``) are placed right after pad and unk.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts: Counter[str] = Counter()
        for stream in token_streams:
            if isinstance(stream, str):
                raise TypeError("token_streams must yield token lists, not strings")
            counts.update(stream)
        head = [pad, unk, *specials]
        reserved = set(head)
        words = sorted(
            (w for w, c in counts.items() if c >= min_count and w not in reserved),
            key=lambda w: (-counts[w], w),
        )
        if max_size is not None:
            words = words[:max_size]
        return cls(head + words, pad=pad, unk=unk, num_specials=len(head))

    # -- lookup -------------------------------------------------------------------------------

    @property
    def pad_index(self) -> int:
        return 0

    @property
    def unk_index(self) -> int:
        return 1

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and (self._tokens, self.num_specials) == (
            other._tokens,
            other.num_specials,
        )

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens, {self.num_specials} special)"

    @property
    def tokens(self) -> list[str]:
        """All tokens in index order (a copy)."""
        return list(self._tokens)

    @property
    def words(self) -> list[str]:
        """The ordinary (non-special) tokens in index order."""
        return self._tokens[self.num_specials :]

    def index(self, token: str) -> int:
        """Index of `token`, or the unknown index."""
        return self._index.get(token, 1)

    def token(self, index: int) -> str:
        return self._tokens[index]

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Indices of `tokens`; unseen tokens map to the unknown index."""
        get = self._index.get
        return [get(t, 1) for t in tokens]

    def decode(self, indices: Iterable[int], *, skip_specials: bool = True) -> list[str]:
        """Tokens of `indices`; special tokens (padding, unknown, extras) are dropped unless
        `skip_specials` is False."""
        out = []
        for i in indices:
            i = int(i)
            if skip_specials and i < self.num_specials:
                continue
            out.append(self._tokens[i])
        return out

    def pad_batch(
        self, sequences: Sequence[Sequence[str]], *, max_length: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode token lists and right-pad them with index 0.

        Returns ``ids`` (B, L) int64 and ``lengths`` (B,) int64. L is the longest sequence, or
        exactly `max_length` when given (longer sequences are truncated to it), so batches of
        fixed width are possible. A sequence of length 0 keeps
        length 0; models that cannot take empty sequences must handle that themselves.
        """
        return pad_indices([self.encode(s) for s in sequences], max_length=max_length)

    # -- persistence --------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "pad": self.pad,
            "unk": self.unk,
            "num_specials": self.num_specials,
            "tokens": self._tokens,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON, atomically."""
        write_json(path, self.to_dict(), indent=None)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`; a malformed file raises DataError."""
        path = Path(path)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise DataError(path, "vocabulary file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(path, f"not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise DataError(path, "expected a JSON object")
        if data.get("format") != FORMAT:
            raise DataError(path, f"expected {FORMAT!r}, got {data.get('format')!r}", field="format")
        if data.get("version") != VERSION:
            raise DataError(path, f"unsupported version {data.get('version')!r}", field="version")
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise DataError(path, "expected a list of strings", field="tokens")
        for key in ("pad", "unk"):
            if not isinstance(data.get(key), str):
                raise DataError(path, "expected a string", field=key)
        if not isinstance(data.get("num_specials"), int):
            raise DataError(path, "expected an integer", field="num_specials")
        try:
            return cls(tokens, pad=data["pad"], unk=data["unk"], num_specials=data["num_specials"])
        except ValueError as e:
            raise DataError(path, str(e), field="tokens") from None


def pad_indices(
    sequences: Sequence[Sequence[int]], *, max_length: int | None = None, pad_index: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad index lists into ``ids`` (B, L) int64 and ``lengths`` (B,) int64; L is the
    longest sequence, or `max_length` when given (longer sequences are truncated)."""
    if max_length is not None and max_length < 0:
        raise ValueError(f"max_length must be >= 0, got {max_length}")
    lengths = [len(s) if max_length is None else min(len(s), max_length) for s in sequences]
    width = max(lengths, default=0) if max_length is None else max_length
    ids = torch.full((len(sequences), width), pad_index, dtype=torch.long)
    for row, (seq, n) in enumerate(zip(sequences, lengths)):
        if n:
            ids[row, :n] = torch.as_tensor(list(seq[:n]), dtype=torch.long)
    return ids, torch.tensor(lengths, dtype=torch.long)
