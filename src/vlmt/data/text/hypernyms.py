"""Hypernym map: for a label, its more general labels (``dog`` -> ``canine`` -> ... -> ``entity``).

SVLR's object loss counts a region's labels together with their hypernyms as true labels. The
map is read from a file (formats below) or, when NLTK and its WordNet data are installed, taken
from WordNet.

File formats (UTF-8; words are compared exactly as written, surrounding spaces removed):

* JSON: an object ``{"child": ["parent", ...], ...}``; a word with several parents lists them
  all; roots need no entry.
* TSV: one edge per line, ``child<TAB>parent``; a word with several parents has several lines;
  empty lines and lines starting with ``#`` are comments.

The parent relation must be acyclic; a cycle is an error naming the file and the words on it.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Container, Iterable, Mapping, Sequence
from pathlib import Path

from vlmt.data.text.optional import nltk_wordnet
from vlmt.errors import DataError
from vlmt.io import write_json

MEMORY = "<memory>"


class HypernymMap:
    """Parents of each word and the transitive closure, nearest ancestor first."""

    def __init__(
        self,
        parents: Mapping[str, Sequence[str]],
        *,
        source: str = MEMORY,
        records: Mapping[tuple[str, str], object] | None = None,
    ):
        """`parents` maps a word to its direct hypernyms. `records` optionally gives, per
        (child, parent) edge, where it came from (e.g. a file line), for error messages."""
        self.source = str(source)
        self._parents: dict[str, tuple[str, ...]] = {
            child: tuple(dict.fromkeys(ps)) for child, ps in parents.items()
        }
        self._check_acyclic(records or {})
        self._closure: dict[str, tuple[str, ...]] = {w: self._ancestors(w) for w in self._parents}

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> HypernymMap:
        """Read a JSON (``.json``) or TSV (any other name) hypernym file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataError(path, "hypernym file not found") from None
        except UnicodeDecodeError as e:
            raise DataError(path, f"not UTF-8 text: {e}") from None
        if path.suffix.lower() == ".json":
            return cls._from_json(path, text)
        return cls._from_tsv(path, text)

    @classmethod
    def _from_json(cls, path: Path, text: str) -> HypernymMap:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(path, f"not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise DataError(path, "expected a JSON object mapping each word to a list of parents")
        parents: dict[str, list[str]] = {}
        for child, ps in data.items():
            if not isinstance(ps, list) or not all(isinstance(p, str) and p.strip() for p in ps):
                raise DataError(path, "expected a list of non-empty strings", record=child, field="parents")
            if not child.strip():
                raise DataError(path, "empty word", record=repr(child))
            parents.setdefault(child.strip(), []).extend(p.strip() for p in ps)
        records = {(c, p): f"word {c!r}" for c, ps in parents.items() for p in ps}
        return cls(parents, source=str(path), records=records)

    @classmethod
    def _from_tsv(cls, path: Path, text: str) -> HypernymMap:
        parents: dict[str, list[str]] = {}
        records: dict[tuple[str, str], str] = {}
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                raise DataError(
                    path, f"expected 'child<TAB>parent', found {len(fields)} tab-separated fields",
                    record=f"line {line_no}",
                )
            child, parent = fields[0].strip(), fields[1].strip()
            for name, value in (("child", child), ("parent", parent)):
                if not value:
                    raise DataError(path, "empty word", record=f"line {line_no}", field=name)
            parents.setdefault(child, []).append(parent)
            records.setdefault((child, parent), f"line {line_no}")
        return cls(parents, source=str(path), records=records)

    @classmethod
    def from_wordnet(cls, words: Iterable[str], *, pos: str = "n") -> HypernymMap:
        """Hypernyms from WordNet for `words` (NLTK and its ``wordnet`` data required).

        Each word takes its most frequent sense (first synset), or the named synset when the word
        is a synset name such as ``dog.n.01`` (the form Visual Genome annotations use). Ancestors
        are named by their synset's first lemma, underscores turned into spaces.
        """
        wordnet = nltk_wordnet()
        if wordnet is None:
            raise RuntimeError("NLTK with its WordNet data is not installed (pip install nltk; "
                               "python -m nltk.downloader wordnet)")
        parents: dict[str, list[str]] = {}
        seen: set[str] = set()
        queue: deque = deque()
        for word in words:
            synset = _wordnet_synset(wordnet, word, pos)
            if synset is None:
                continue
            parents.setdefault(word, []).extend(_synset_label(h) for h in _synset_parents(synset))
            queue.extend(_synset_parents(synset))
        while queue:  # the parent graph of every ancestor, keyed by synset label
            synset = queue.popleft()
            label = _synset_label(synset)
            if synset.name() in seen:
                continue
            seen.add(synset.name())
            ps = _synset_parents(synset)
            parents.setdefault(label, []).extend(_synset_label(h) for h in ps if _synset_label(h) != label)
            queue.extend(ps)
        return cls(parents, source="WordNet")

    # -- lookup -------------------------------------------------------------------------------

    def hypernyms(self, word: str, *, within: Container[str] | None = None) -> list[str]:
        """All hypernyms of `word`, nearest first and the root(s) last: ordered by the longest
        path from `word`, so each hypernym precedes its own hypernyms (ties: breadth-first, parents
        in the order given). Empty for unknown words and roots. With `within`, only those in it
        (e.g. the label set of a loss)."""
        ancestors = self._closure.get(word, ())
        if within is None:
            return list(ancestors)
        return [a for a in ancestors if a in within]

    def parents(self, word: str) -> list[str]:
        """Direct hypernyms of `word`."""
        return list(self._parents.get(word, ()))

    def __contains__(self, word: object) -> bool:
        return word in self._parents

    def __len__(self) -> int:
        return len(self._parents)

    def words(self) -> list[str]:
        """Every word that has at least one parent."""
        return list(self._parents)

    def to_dict(self) -> dict[str, list[str]]:
        return {c: list(ps) for c, ps in self._parents.items()}

    def save(self, path: str | os.PathLike) -> None:
        """Write the parent relation in the JSON format, atomically (e.g. to cache WordNet)."""
        write_json(path, self.to_dict())

    # -- internals ----------------------------------------------------------------------------

    def _ancestors(self, word: str) -> tuple[str, ...]:
        """Ancestors ordered by their longest path from `word`: every hypernym comes before its
        own hypernyms, so the root(s) come last even where paths have different lengths."""
        found: dict[str, int] = {}  # ancestor -> discovery order (breadth first)
        queue = deque(self._parents.get(word, ()))
        while queue:
            w = queue.popleft()
            if w not in found:
                found[w] = len(found)
                queue.extend(self._parents.get(w, ()))
        waiting = dict.fromkeys(found, 0)  # children not yet processed, per ancestor
        for node in [word, *found]:
            for p in self._parents.get(node, ()):
                waiting[p] += 1
        depth = {word: 0}
        ready = deque([word])
        while ready:  # Kahn's algorithm on the (acyclic) ancestor graph
            node = ready.popleft()
            for p in self._parents.get(node, ()):
                depth[p] = max(depth.get(p, 0), depth[node] + 1)
                waiting[p] -= 1
                if waiting[p] == 0:
                    ready.append(p)
        return tuple(sorted(found, key=lambda a: (depth[a], found[a])))

    def _check_acyclic(self, records: Mapping[tuple[str, str], object]) -> None:
        """Depth-first search; a back edge closes a cycle, reported with its words."""
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        for root in self._parents:
            if root in state:
                continue
            path: list[str] = [root]
            state[root] = 1
            stack = [iter(self._parents.get(root, ()))]
            while stack:
                nxt = next(stack[-1], None)
                if nxt is None:
                    state[path.pop()] = 2
                    stack.pop()
                    continue
                if state.get(nxt) == 1:
                    cycle = path[path.index(nxt) :] + [nxt]
                    where = records.get((path[-1], nxt))
                    raise DataError(self.source, "hypernym cycle: " + " -> ".join(cycle), record=where)
                if nxt not in state:
                    state[nxt] = 1
                    path.append(nxt)
                    stack.append(iter(self._parents.get(nxt, ())))


def _wordnet_synset(wordnet, word: str, pos: str):
    if word.count(".") == 2 and word.rsplit(".", 1)[-1].isdigit():
        try:
            return wordnet.synset(word)
        except Exception:  # noqa: BLE001 - WordNet raises WordNetError or ValueError
            return None
    synsets = wordnet.synsets(word.replace(" ", "_"), pos=pos)
    return synsets[0] if synsets else None


def _synset_parents(synset) -> list:
    return list(synset.hypernyms()) + list(synset.instance_hypernyms())


def _synset_label(synset) -> str:
    return synset.lemmas()[0].name().replace("_", " ")
