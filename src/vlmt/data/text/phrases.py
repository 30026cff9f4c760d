"""Noun phrases of a sentence without a parser, learned from a grounding dataset's phrases.

The hierarchical paper grounds the NP chunks a parser finds. vlmt learns which words occur inside
the grounding task's training phrases (`inside`) and which end them (`ends`), and takes every
maximal run of phrase words that ends on a phrase-ending word: no tagger needed, and on the
synthetic world it finds exactly the "the small red star" chunks. Used to draw grounding for a
question (`vlmt visualize`) and to ground a new sentence (`vlmt.load(...).ground`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True)
class PhraseLexicon:
    """Words seen inside grounding phrases (`inside`) and words that end them (`ends`)."""

    inside: frozenset[str]
    ends: frozenset[str]

    def chunks(self, words: Sequence[str]) -> list[tuple[int, int]]:
        """Inclusive (first, last) word spans of the noun phrases in `words`."""
        spans, i = [], 0
        while i < len(words):
            if words[i] not in self.inside:
                i += 1
                continue
            j = i
            while j + 1 < len(words) and words[j + 1] in self.inside:
                j += 1
            last = max((k for k in range(i, j + 1) if words[k] in self.ends), default=None)
            if last is not None:
                spans.append((i, last))
            i = j + 1
        return spans

    def to_dict(self) -> dict[str, list[str]]:
        return {"inside": sorted(self.inside), "ends": sorted(self.ends)}

    @classmethod
    def from_dict(cls, data: dict[str, list[str]]) -> PhraseLexicon:
        return cls(frozenset(data["inside"]), frozenset(data["ends"]))


def phrase_lexicon(phrases: Iterable[Sequence[str]]) -> PhraseLexicon:
    """Learn the lexicon from tokenised phrases (e.g. a grounding dataset's training phrases)."""
    phrases = [list(p) for p in phrases]
    inside = frozenset(w for p in phrases for w in p)
    ends = frozenset(p[-1] for p in phrases if p)
    return PhraseLexicon(inside, ends)
