"""How SVLR reads text: a question and its choices pre-processed into what the model needs (the
4 question bins, the lemmatised nouns and adjectives, the words of every choice; `SVLRText`), and
the word vectors of words and multi-word terms (`WordTable`, with fixed random vectors when no
vector file is configured). Part of the SVLR family's preprocessing (`vlmt.tasks.svlr_data`)."""

from __future__ import annotations

import functools
import json
import operator
import zlib
from array import array
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence, overload

import numpy as np

from vlmt.data.question_bins import QuestionBinner
from vlmt.data.text import HypernymMap, PosLexicon, tokenize
from vlmt.data.text.cache import TEXT_CACHE_SIZE, LRUCache
from vlmt.errors import ConfigError, DataError
from vlmt.io import atomic_path


@dataclass(frozen=True)
class MCQuestion:
    """One VQA v1 multiple-choice question, pre-processed for SVLR."""

    question_id: int
    image_id: int
    question: str
    question_type: str
    answer_type: str
    answers: tuple[str, ...]            # the 10 annotator answers (official scoring)
    choices: tuple[str, ...]            # the 18 candidate answers
    correct: int                        # index of multiple_choice_answer in `choices`
    bins: tuple[tuple[str, ...], ...]   # 4 question bins (vlmt.data.question_bins)
    nouns: tuple[str, ...]              # lemmatised question nouns
    adjectives: tuple[str, ...]         # lemmatised question adjectives
    choice_words: tuple[tuple[str, ...], ...]
    choice_nouns: tuple[tuple[str, ...], ...]
    choice_adjectives: tuple[tuple[str, ...], ...]


class _Table:
    """Strings -> dense ids, first seen first."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def add(self, values: Iterable[str], out: array) -> None:
        ids = self.ids
        for v in values:
            k = ids.get(v)
            if k is None:
                k = ids[v] = len(ids)
            out.append(k)

    def one(self, value: str) -> int:
        return self.ids.setdefault(value, len(self.ids))

    def strings(self) -> list[str]:
        return list(self.ids)


_QUESTION_PARTS = 6  # the term lists of a question: its 4 bins, its nouns, its adjectives


class MCQuestions(SequenceABC):
    """One split's `MCQuestion`s as columns (VQA v1 has 370 K questions of 18 choices): ids in
    numpy arrays, strings in shared tables (each distinct choice tagged once); indexing builds the
    question asked for, a slice gives a list. Made by `SVLRText.questions`."""

    def __init__(self, columns: dict[str, np.ndarray], questions: list[str], strings: list[str], terms: list[str],
                 choices: list[str], choice_tags: list[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]):
        self._c = columns
        self._questions, self._strings, self._terms = questions, strings, terms
        self._choices, self._choice_tags = choices, choice_tags

    def __len__(self) -> int:
        return len(self._questions)

    def terms(self) -> list[str]:
        """Every term of the questions' bins, nouns and adjectives and of their choices' words,
        nouns and adjectives (with repeats)."""
        return [*self._terms, *(t for tags in self._choice_tags for part in tags for t in part)]

    def question_text(self, i: int) -> str:
        """The text of question `i` (without building the question)."""
        return self._questions[i]

    def question_ids(self) -> np.ndarray:
        """(N,) int64 question ids, in the split's order."""
        return self._c["question_ids"]

    def image_ids(self) -> np.ndarray:
        """(N,) int64 image id of each question, in the split's order."""
        return self._c["image_ids"]

    def choice_text(self, rows: Sequence[int] | np.ndarray, chosen: Sequence[int] | np.ndarray) -> list[str]:
        """The text of choice `chosen[j]` of question `rows[j]`, for every j: one gather over the
        columns (no `MCQuestion` per question). An index outside a question's choices is an
        IndexError naming the question."""
        c = self._c
        index = np.asarray(rows, dtype=np.int64).reshape(-1)
        picked = np.asarray(chosen, dtype=np.int64).reshape(-1)
        if len(index) != len(picked):
            raise ValueError(f"choice_text: {len(index)} rows for {len(picked)} chosen indices")
        k0 = c["choice_offsets"][index]
        counts = c["choice_offsets"][index + 1] - k0
        bad = np.flatnonzero((picked < 0) | (picked >= counts))
        if len(bad):
            j = int(bad[0])
            raise IndexError(f"choice {int(picked[j])} of question {int(c['question_ids'][index[j]])}, which has "
                             f"{int(counts[j])} choices")
        table = self._choices
        return [table[k] for k in c["choice_ids"][k0 + picked].tolist()]

    def annotations(self) -> list[dict[str, object]]:
        """The split's questions as the official evaluation's annotation records ("question_id",
        "question_type", "answer_type", "answers"), in the split's order, read from the columns."""
        c, s = self._c, self._strings
        answers = [s[k] for k in c["answer_ids"].tolist()]
        bounds = c["answer_offsets"].tolist()
        return [{"question_id": qid, "question_type": s[qt], "answer_type": s[at], "answers": answers[lo:hi]}
                for qid, qt, at, lo, hi in zip(c["question_ids"].tolist(), c["question_types"].tolist(),
                                               c["answer_types"].tolist(), bounds, bounds[1:])]

    def choice_lists(self) -> dict[int, dict[str, list[str]]]:
        """question id -> {"multiple_choices": its choices}, as the official question file gives
        them, read from the columns."""
        c, table = self._c, self._choices
        choices = [table[k] for k in c["choice_ids"].tolist()]
        bounds = c["choice_offsets"].tolist()
        return {qid: {"multiple_choices": choices[lo:hi]}
                for qid, lo, hi in zip(c["question_ids"].tolist(), bounds, bounds[1:])}

    def _tag_columns(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(vocabulary, offsets, ids): the question terms (ids as in `term_ids`) then every other
        word, noun and adjective of the choices as one id space, and the 3 tag lists (words, nouns,
        adjectives) of each distinct choice as offsets into ids over it. Made once, on first use."""
        cached = self.__dict__.get("_tags_cached")
        if cached is None:
            vocab = {t: k for k, t in enumerate(self._terms)}
            offsets, ids = array("q", [0]), array("i")
            for tags in self._choice_tags:
                for part in tags:
                    for t in part:
                        k = vocab.get(t)
                        if k is None:
                            k = vocab[t] = len(vocab)
                        ids.append(k)
                    offsets.append(len(ids))
            cached = self.__dict__["_tags_cached"] = (
                list(vocab), np.array(offsets, dtype=np.int64), np.array(ids, dtype=np.int64))
        return cached

    def vocabulary(self) -> list[str]:
        """The strings of the ids `id_arrays` gives (question terms first, then the choices' tags)."""
        return self._tag_columns()[0]

    def id_arrays(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The questions `rows` as padded arrays of `vocabulary` ids, -1 at padding, built by
        indexing the columns (no `MCQuestion` per question): "question_nouns" (P, Nq),
        "question_adjectives" (P, Jq), "question_bins" (P, 4, Lb), "answer_words" / "answer_nouns"
        / "answer_adjectives" (P, C, L), "choice_mask" (P, C), "correct" (P,), "image_ids" (P,).
        Each width is the longest list of the rows (at least 1), C their most choices: the
        shapes `SVLRVQAInputs.from_lists` gives the same questions."""
        c = self._c
        rows = np.asarray(rows, dtype=np.int64)
        _, tag_offsets, tag_ids = self._tag_columns()
        parts = rows[:, None] * _QUESTION_PARTS + np.arange(_QUESTION_PARTS)
        terms = c["term_ids"].astype(np.int64, copy=False)
        out = {"question_bins": _padded(c["term_offsets"], terms, parts[:, :4]),
               "question_nouns": _padded(c["term_offsets"], terms, parts[:, 4]),
               "question_adjectives": _padded(c["term_offsets"], terms, parts[:, 5])}
        k0 = c["choice_offsets"][rows]
        counts = c["choice_offsets"][rows + 1] - k0
        width = int(counts.max(initial=0))
        choice_mask = np.arange(width)[None, :] < counts[:, None]
        slots = np.where(choice_mask, k0[:, None] + np.arange(width), 0)
        choices = c["choice_ids"][np.minimum(slots, max(len(c["choice_ids"]) - 1, 0))].astype(np.int64) \
            if len(c["choice_ids"]) else np.zeros_like(slots)
        for j, name in enumerate(("answer_words", "answer_nouns", "answer_adjectives")):
            out[name] = _padded(tag_offsets, tag_ids, choices * 3 + j, choice_mask)
        out.update(choice_mask=choice_mask, correct=c["correct"][rows], image_ids=c["image_ids"][rows])
        return out

    def _one(self, i: int) -> MCQuestion:
        c, s, t = self._c, self._strings, self._terms
        a0, a1 = c["answer_offsets"][i:i + 2].tolist()
        k0, k1 = c["choice_offsets"][i:i + 2].tolist()
        bounds = c["term_offsets"][i * _QUESTION_PARTS:(i + 1) * _QUESTION_PARTS + 1].tolist()
        ids = c["term_ids"][bounds[0]:bounds[-1]].tolist()
        parts = [tuple(t[k] for k in ids[lo - bounds[0]:hi - bounds[0]]) for lo, hi in zip(bounds, bounds[1:])]
        tags = [self._choice_tags[k] for k in c["choice_ids"][k0:k1].tolist()]
        return MCQuestion(
            question_id=int(c["question_ids"][i]), image_id=int(c["image_ids"][i]), question=self._questions[i],
            question_type=s[c["question_types"][i]], answer_type=s[c["answer_types"][i]],
            answers=tuple(s[k] for k in c["answer_ids"][a0:a1].tolist()),
            choices=tuple(self._choices[k] for k in c["choice_ids"][k0:k1].tolist()), correct=int(c["correct"][i]),
            bins=tuple(parts[:4]), nouns=parts[4], adjectives=parts[5],
            choice_words=tuple(x[0] for x in tags), choice_nouns=tuple(x[1] for x in tags),
            choice_adjectives=tuple(x[2] for x in tags))

    @overload
    def __getitem__(self, i: int) -> MCQuestion: ...

    @overload
    def __getitem__(self, i: slice) -> list[MCQuestion]: ...

    def __getitem__(self, i: int | slice) -> MCQuestion | list[MCQuestion]:
        if isinstance(i, slice):
            return [self._one(k) for k in range(*i.indices(len(self)))]
        n, k = len(self), operator.index(i)
        if not -n <= k < n:
            raise IndexError(f"question {i} of {n}")
        return self._one(k % n)

    def __repr__(self) -> str:
        return f"MCQuestions({len(self)} questions)"


def _padded(offsets: np.ndarray, ids: np.ndarray, parts: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """The lists `parts` (indices into `offsets`; where `valid` is False, an empty list) as one
    array of shape parts.shape + (W,), W the longest list (at least 1), -1 after each list."""
    lo = offsets[parts]
    lengths = offsets[parts + 1] - lo
    if valid is not None:
        lengths = np.where(valid, lengths, 0)
    width = max(int(lengths.max(initial=0)), 1)
    at = np.arange(width)
    real = at < lengths[..., None]
    if not len(ids):
        return np.full(real.shape, -1, dtype=np.int64)
    return np.where(real, ids[np.minimum(lo[..., None] + at, len(ids) - 1)], -1)


def fallback_vector(word: str, dim: int, *, seed: int = 0) -> np.ndarray:
    """A fixed random vector for `word`: N(0, 1/dim) per entry, seeded by (seed, CRC32(word)).

    Used when no pretrained vectors are configured (the synthetic world's words have none). The
    vector depends on the word alone, so every run, split and process sees the same input
    vectors; distinct words are nearly orthogonal, so the input carries no similarity at all and
    everything `g` knows about a word it learned from the tasks.
    """
    rng = np.random.default_rng([seed, zlib.crc32(word.encode("utf-8"))])
    return (rng.standard_normal(dim) / np.sqrt(dim)).astype(np.float32)


class WordTable:
    """Vectors of words and multi-word terms: a term's vector is the mean of its tokens'.

    `fallback`: the table holds `fallback_vector`s (no word-vector file), so a word it never
    collected has one too (a new question's words); otherwise such a word has no vector."""

    FILE = "word_vectors.safetensors"
    META = "vlmt_word_table"  # the metadata key holding the words, source, fallback flag and coverage

    def __init__(self, token_vectors: dict[str, np.ndarray], dim: int, *, source: str, coverage: float | None,
                 fallback: bool = False):
        self._tokens = token_vectors
        self.dim = dim
        self.source = source
        self.coverage = coverage
        self.fallback = fallback
        self._cache: LRUCache[str, np.ndarray] = LRUCache(TEXT_CACHE_SIZE)  # keyed by client text

    def __contains__(self, term: object) -> bool:
        """Whether every token of `term` has a vector."""
        return isinstance(term, str) and bool(term.split()) and (
            self.fallback or all(t in self._tokens for t in term.split()))

    def vector(self, term: str) -> np.ndarray:
        v = self._cache.get(term)
        if v is None:
            toks = term.split()
            if toks and self.fallback:
                vecs = [self._tokens[t] if t in self._tokens else fallback_vector(t, self.dim) for t in toks]
            else:
                missing = [t for t in toks if t not in self._tokens]
                if missing or not toks:
                    raise KeyError(f"no word vector for {term!r} (the data section did not collect it)")
                vecs = [self._tokens[t] for t in toks]
            v = np.mean(vecs, axis=0).astype(np.float32)
            self._cache[term] = v
        return v

    def matrix(self, terms: Sequence[str]) -> np.ndarray:
        """(len(terms), dim) float32."""
        if not terms:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.vector(t) for t in terms])

    def tokens(self) -> list[str]:
        return list(self._tokens)

    def save(self, folder: Path) -> Path:
        """The collected rows (and only those) as safetensors, the words in its metadata."""
        from safetensors.numpy import save_file

        words = self.tokens()
        matrix = np.stack([self._tokens[w] for w in words]) if words else np.zeros((0, self.dim), np.float32)
        path = folder / self.FILE
        with atomic_path(path) as tmp:
            # one metadata key: safetensors writes its metadata map in a random order per process, so
            # several keys made identical tables differ byte for byte
            table = {"words": words, "source": self.source, "fallback": self.fallback, "coverage": self.coverage}
            save_file({"vectors": np.ascontiguousarray(matrix, dtype=np.float32)}, str(tmp),
                      metadata={self.META: json.dumps(table, sort_keys=True)})
        return path

    @classmethod
    def load(cls, folder: Path) -> WordTable:
        from safetensors import safe_open

        path = folder / cls.FILE
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata()
                matrix = f.get_tensor("vectors")
            if packed := meta.get(cls.META):
                meta = json.loads(packed)
            else:  # written by vlmt <= 0.1.0: one metadata key per field, values as strings
                meta = {"words": json.loads(meta["words"]), "source": meta.get("source", str(path)),
                        "fallback": meta["fallback"] == "True", "coverage": json.loads(meta.get("coverage", "null"))}
            words, fallback = meta["words"], bool(meta["fallback"])
        except FileNotFoundError:
            raise DataError(path, "file not found") from None
        except Exception as e:  # safetensors raises its own error types for damaged files
            raise DataError(path, f"not a word-vector table: {e}") from None
        if len(words) != len(matrix):
            raise DataError(path, f"{len(words)} words for {len(matrix)} vectors")
        return cls(dict(zip(words, matrix)), int(matrix.shape[1]), source=meta.get("source") or str(path),
                   coverage=meta.get("coverage"), fallback=fallback)


# --------------------------------------------------------------------------- text and assets


class SVLRText:
    """How SVLR reads a question and its answers: the tokens (VQA rule), the nouns and adjectives the
    POS lexicon finds (the label sets, and the words of the hypernyms as nouns) and the 4 question
    bins. Built from the label sets and the tools chosen (tagger, lemmatiser, question parser);
    a model saved with its data keeps the tools' resolved names, so it reads questions the same way
    when loaded."""

    def __init__(self, *, object_labels: Sequence[str], attribute_labels: Sequence[str],
                 hypernyms: HypernymMap | None, lemmatizer: str = "auto", tagger: str = "auto",
                 question_parser: str = "auto"):
        self.noun_words = set(object_labels) | (
            {w for n in hypernyms.words() for w in [n, *hypernyms.hypernyms(n)]} if hypernyms else set())
        tagger, spacy_model = _tool(tagger)
        parser, parser_model = _tool(question_parser)
        try:
            self.lexicon = PosLexicon.from_labels(objects=sorted(self.noun_words), attributes=attribute_labels,
                                                  lemmatizer=lemmatizer, tagger=tagger,
                                                  **({"spacy_model": spacy_model} if spacy_model else {}))
        except (RuntimeError, ValueError) as e:
            raise ConfigError(f"data.families.svlr.tagger / lemmatizer: {e}") from None
        self.binner = QuestionBinner(is_noun=self._is_noun, parser=parser,  # type: ignore[arg-type]
                                     **({"spacy_model": parser_model} if parser_model else {}))
        self._tag = functools.lru_cache(maxsize=TEXT_CACHE_SIZE)(self._tag_text)

    def settings(self) -> dict[str, str]:
        """The tools as resolved ("auto" replaced by what was found installed)."""
        lemmatizer = "wordnet" if type(self.lexicon.lemmatizer).__name__ == "WordNetLemmatizer" else "rules"
        return {"tagger": self.lexicon.tagger_name, "lemmatizer": lemmatizer, "question_parser": self.binner.method}

    def _is_noun(self, word: str) -> bool:
        return bool(self.lexicon.tag((word,)).nouns)

    def _tag_text(self, text: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        toks = tuple(tokenize(text, "vqa"))
        tagged = self.lexicon.tag(toks)
        return toks, tuple(dict.fromkeys(tagged.nouns)), tuple(dict.fromkeys(tagged.adjectives))

    def tag(self, text: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """(tokens, lemmatised nouns, lemmatised adjectives) of a question or an answer."""
        return self._tag(text)

    def question(self, question: str, choices: Sequence[str], *, question_id: int = 0, image_id: int = 0,
                 correct: int = 0, question_type: str = "", answer_type: str = "",
                 answers: Sequence[str] = ()) -> MCQuestion:
        """A multiple-choice question pre-processed for SVLR (bins, nouns, adjectives, choice words)."""
        toks, nouns, adjs = self.tag(question)
        bins = self.binner(question, toks)
        choice = [self.tag(c) for c in choices]
        return MCQuestion(
            question_id=question_id, image_id=image_id, question=question, question_type=question_type,
            answer_type=answer_type, answers=tuple(answers), choices=tuple(choices), correct=correct,
            bins=tuple(tuple(b) for b in bins.as_lists()), nouns=nouns, adjectives=adjs,
            choice_words=tuple(c[0] for c in choice), choice_nouns=tuple(c[1] for c in choice),
            choice_adjectives=tuple(c[2] for c in choice))


    def questions(self, items: Iterable[tuple[int, int, str, Sequence[str], int, str, str, Sequence[str]]]
                  ) -> MCQuestions:
        """Many questions, as `question` makes each, into columns: `items` are (question_id,
        image_id, question, choices, correct, question_type, answer_type, answers)."""
        strings, terms, choices = _Table(), _Table(), _Table()
        tags: list[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = []
        qids, images, correct, qtypes, atypes = array("q"), array("q"), array("i"), array("i"), array("i")
        answer_offsets, answer_ids = array("q", [0]), array("i")
        choice_offsets, choice_ids = array("q", [0]), array("i")
        term_offsets, term_ids = array("q", [0]), array("i")
        texts: list[str] = []
        for question_id, image_id, question, options, right, question_type, answer_type, answers in items:
            toks, nouns, adjs = self._tag_text(question)  # not through the bounded cache: each question once
            bins = self.binner(question, toks)
            for part in (*bins.as_lists(), nouns, adjs):
                terms.add(part, term_ids)
                term_offsets.append(len(term_ids))
            for option in options:
                k = choices.one(option)
                if k == len(tags):
                    tags.append(self.tag(option))
                choice_ids.append(k)
            choice_offsets.append(len(choice_ids))
            strings.add(answers, answer_ids)
            answer_offsets.append(len(answer_ids))
            qids.append(question_id)
            images.append(image_id)
            correct.append(right)
            qtypes.append(strings.one(question_type))
            atypes.append(strings.one(answer_type))
            texts.append(question)
        columns: dict[str, np.ndarray] = {
                   "question_ids": np.array(qids, dtype=np.int64), "image_ids": np.array(images, dtype=np.int64),
                   "correct": np.array(correct, dtype=np.int32), "question_types": np.array(qtypes, dtype=np.int32),
                   "answer_types": np.array(atypes, dtype=np.int32),
                   "answer_offsets": np.array(answer_offsets, dtype=np.int64),
                   "answer_ids": np.array(answer_ids, dtype=np.int32),
                   "choice_offsets": np.array(choice_offsets, dtype=np.int64),
                   "choice_ids": np.array(choice_ids, dtype=np.int32),
                   "term_offsets": np.array(term_offsets, dtype=np.int64),
                   "term_ids": np.array(term_ids, dtype=np.int32)}
        return MCQuestions(columns, texts, strings.strings(), terms.strings(), choices.strings(), tags)


def _tool(name: str) -> tuple[str, str | None]:
    """("spacy", model) for a resolved "spacy:<model>", else (name, None)."""
    kind, _, model = name.partition(":")
    return kind, (model or None)
