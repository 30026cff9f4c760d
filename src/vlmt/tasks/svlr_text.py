"""How SVLR reads text: a question and its choices pre-processed into what the model needs (the
4 question bins, the lemmatised nouns and adjectives, the words of every choice; `SVLRText`), and
the word vectors of words and multi-word terms (`WordTable`, with fixed random vectors when no
vector file is configured). Part of the SVLR family's preprocessing (`vlmt.tasks.svlr_data`)."""

from __future__ import annotations

import functools
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

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
            save_file({"vectors": np.ascontiguousarray(matrix, dtype=np.float32)}, str(tmp),
                      metadata={"words": json.dumps(words), "source": self.source, "fallback": str(self.fallback),
                                "coverage": json.dumps(self.coverage)})
        return path

    @classmethod
    def load(cls, folder: Path) -> WordTable:
        from safetensors import safe_open

        path = folder / cls.FILE
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata()
                matrix = f.get_tensor("vectors")
            words = json.loads(meta["words"])
            fallback = meta["fallback"] == "True"
        except FileNotFoundError:
            raise DataError(path, "file not found") from None
        except Exception as e:  # safetensors raises its own error types for damaged files
            raise DataError(path, f"not a word-vector table: {e}") from None
        if len(words) != len(matrix):
            raise DataError(path, f"{len(words)} words for {len(matrix)} vectors")
        return cls(dict(zip(words, matrix)), int(matrix.shape[1]), source=meta.get("source", str(path)),
                   coverage=json.loads(meta.get("coverage", "null")), fallback=fallback)


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
            raise ConfigError(f"data.tagger / data.lemmatizer: {e}") from None
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


def _tool(name: str) -> tuple[str, str | None]:
    """("spacy", model) for a resolved "spacy:<model>", else (name, None)."""
    kind, _, model = name.partition(":")
    return kind, (model or None)
