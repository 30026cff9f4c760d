"""POS lexicon: find the nouns and adjectives of a question or answer.

SVLR attends to image regions with the nouns and adjectives of a question/answer pair. The
lexicon knows the recognition label sets: object names are nouns, attribute names are
adjectives, and labels of several words (``tennis racket``, ``light blue``) are matched as one
unit. Matching lemmatises the last token of a candidate span first, so ``rackets`` finds
``racket``.

Part-of-speech tagging, when a tagger is installed (spaCy, else NLTK, as in the SVLR paper),
adds the nouns and adjectives that are not labels and decides words that are labels of both
kinds (``orange``). Without a tagger such words go to both lists, except right before a noun,
where they are adjectives (``orange shirt``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from vlmt.data.text.lemmatize import Lemmatizer, Pos, make_lemmatizer
from vlmt.data.text.optional import DEFAULT_SPACY_MODEL, nltk_pos_tagger, spacy_pipeline
from vlmt.data.text.tokenize import TokenizerStyle, tokenize

TaggerBackend = Literal["auto", "lexicon", "spacy", "nltk"]
# a custom tagger: tokens -> one coarse tag per token, "n" (noun), "a" (adjective) or None
CoarseTagger = Callable[[Sequence[str]], Sequence["str | None"]]
# a tagging backend: tokens -> (one coarse tag per token, the tagger's lemmas or None)
_TagFunction = Callable[[tuple[str, ...]], "tuple[Sequence[str | None], Sequence[str | None] | None]"]
NOUN: Literal["n"] = "n"
ADJECTIVE: Literal["a"] = "a"


@dataclass(frozen=True)
class WordMatch:
    """A noun or adjective found at tokens ``start:end`` (several tokens for multi-word labels);
    `lemma` is its base form, words joined by single spaces."""

    start: int
    end: int
    lemma: str
    pos: str  # "n" or "a"
    from_label: bool = True  # False when found by the tagger only

    @property
    def positions(self) -> range:
        return range(self.start, self.end)


@dataclass(frozen=True)
class TaggedTokens:
    """The nouns and adjectives found in one token list."""

    tokens: tuple[str, ...]
    matches: tuple[WordMatch, ...]

    def _positions(self, pos: str) -> list[int]:
        return sorted({i for m in self.matches if m.pos == pos for i in m.positions})

    @property
    def noun_positions(self) -> list[int]:
        return self._positions(NOUN)

    @property
    def adjective_positions(self) -> list[int]:
        return self._positions(ADJECTIVE)

    @property
    def nouns(self) -> list[str]:
        """Lemmas of the nouns, in sentence order."""
        return [m.lemma for m in self.matches if m.pos == NOUN]

    @property
    def adjectives(self) -> list[str]:
        return [m.lemma for m in self.matches if m.pos == ADJECTIVE]


def _label_key(label: str, style: TokenizerStyle) -> tuple[str, ...]:
    key = tuple(tokenize(label, style))
    if not key:
        raise ValueError(f"label {label!r} has no tokens")
    return key


class PosLexicon:
    """Nouns and adjectives known from the recognition label sets, plus an optional tagger."""

    def __init__(
        self,
        *,
        nouns: Iterable[str],
        adjectives: Iterable[str],
        lemmatizer: Lemmatizer | Literal["auto", "rules", "wordnet"] = "auto",
        tagger: TaggerBackend | CoarseTagger = "auto",
        style: TokenizerStyle = "vqa",
        spacy_model: str = DEFAULT_SPACY_MODEL,
    ):
        self.style = style
        self.nouns = {_label_key(w, style) for w in nouns}
        self.adjectives = {_label_key(w, style) for w in adjectives}
        self.max_words = max((len(k) for k in self.nouns | self.adjectives), default=1)
        if isinstance(lemmatizer, str):
            lemmatizer = make_lemmatizer(
                lemmatizer,
                known_nouns={k[-1] for k in self.nouns},
                known_adjectives={k[-1] for k in self.adjectives},
            )
        self.lemmatizer = lemmatizer
        self._tagger: _TagFunction | None
        if callable(tagger):
            custom = tagger
            self.tagger_name = getattr(custom, "__name__", "custom")
            self._tagger = lambda tokens: (list(custom(tokens)), None)
        else:
            self.tagger_name, self._tagger = _load_tagger(tagger, spacy_model)

    @classmethod
    def from_labels(
        cls, *, objects: Iterable[str], attributes: Iterable[str], **kwargs
    ) -> PosLexicon:
        """Object names become nouns, attribute names adjectives."""
        return cls(nouns=objects, adjectives=attributes, **kwargs)

    # -- tagging ------------------------------------------------------------------------------

    def tag(self, tokens: Sequence[str]) -> TaggedTokens:
        """Find nouns and adjectives in `tokens` (as produced by :func:`tokenize`)."""
        tokens = tuple(tokens)
        tags, tagger_lemmas = self._tagger(tokens) if self._tagger else (None, None)
        if tags is not None and len(tags) != len(tokens):
            raise ValueError(f"the tagger gave {len(tags)} tags for {len(tokens)} tokens")
        label_matches = self._match_labels(tokens)
        matches: list[WordMatch] = []
        covered: set[int] = set()
        for k, (start, end, kinds) in enumerate(label_matches):
            covered.update(range(start, end))
            if len(kinds) == 2:
                kinds = self._disambiguate(kinds, end, tags, label_matches[k + 1 :])
            for pos, lemma in kinds.items():
                matches.append(WordMatch(start, end, lemma, pos))
        if tags is not None:
            for i, tag in enumerate(tags):
                if i in covered or tag not in (NOUN, ADJECTIVE):
                    continue
                coarse: Pos = NOUN if tag == NOUN else ADJECTIVE
                lemma = (tagger_lemmas[i] if tagger_lemmas else None) or self.lemmatizer.lemmatize(tokens[i], coarse)
                matches.append(WordMatch(i, i + 1, lemma, coarse, from_label=False))
        matches.sort(key=lambda m: (m.start, m.pos))
        return TaggedTokens(tokens=tokens, matches=tuple(matches))

    def lookup(self, tokens: Sequence[str]) -> tuple[list[int], list[int]]:
        """(noun positions, adjective positions) of `tokens`."""
        tagged = self.tag(tokens)
        return tagged.noun_positions, tagged.adjective_positions

    def _match_labels(self, tokens: tuple[str, ...]) -> list[tuple[int, int, dict[str, str]]]:
        """Greedy longest matches of label spans: (start, end, {pos: lemma})."""
        out = []
        i = 0
        while i < len(tokens):
            for n in range(min(self.max_words, len(tokens) - i), 0, -1):
                kinds = self._kinds(tokens[i : i + n])
                if kinds:
                    out.append((i, i + n, kinds))
                    i += n
                    break
            else:
                i += 1
        return out

    def _kinds(self, span: tuple[str, ...]) -> dict[str, str]:
        kinds: dict[str, str] = {}
        head, last = span[:-1], span[-1]
        pos: Pos
        for pos, labels in ((NOUN, self.nouns), (ADJECTIVE, self.adjectives)):
            for form in dict.fromkeys((last, self.lemmatizer.lemmatize(last, pos))):
                if head + (form,) in labels:
                    kinds[pos] = " ".join(head + (form,))
                    break
        return kinds

    @staticmethod
    def _disambiguate(
        kinds: dict[str, str],
        end: int,
        tags: Sequence[str | None] | None,
        following: Sequence[tuple[int, int, dict[str, str]]],
    ) -> dict[str, str]:
        """A label that is both noun and adjective: the tagger decides; without one, it is an
        adjective right before a noun label and both otherwise."""
        tag = tags[end - 1] if tags is not None else None
        if tag is not None and tag in kinds:
            return {tag: kinds[tag]}
        if tags is None and following and following[0][0] == end and NOUN in following[0][2]:
            return {ADJECTIVE: kinds[ADJECTIVE]}
        return kinds


def _load_tagger(backend: TaggerBackend, spacy_model: str) -> tuple[str, _TagFunction | None]:
    """(name, function tokens -> (coarse tags, lemmas or None)) for the chosen backend."""
    if backend not in ("auto", "lexicon", "spacy", "nltk"):
        raise ValueError(f"unknown tagger {backend!r}; expected auto, lexicon, spacy or nltk")
    if backend in ("auto", "spacy"):
        nlp = spacy_pipeline(spacy_model)
        if nlp is not None:
            return "spacy", _spacy_tagger(nlp)
        if backend == "spacy":
            raise RuntimeError(f"spaCy with the model {spacy_model!r} is not installed")
    if backend in ("auto", "nltk"):
        pos_tag = nltk_pos_tagger()
        if pos_tag is not None:
            return "nltk", _nltk_tagger(pos_tag)
        if backend == "nltk":
            raise RuntimeError("NLTK with its averaged perceptron tagger data is not installed")
    return "lexicon", None


def _penn_to_coarse(tag: str) -> str | None:
    if tag.startswith("NN"):
        return NOUN
    if tag.startswith("JJ"):
        return ADJECTIVE
    return None


def _nltk_tagger(pos_tag) -> _TagFunction:
    def tag(tokens: tuple[str, ...]) -> tuple[list[str | None], None]:
        return [_penn_to_coarse(t) for _, t in pos_tag(list(tokens))], None

    return tag


def _spacy_tagger(nlp) -> _TagFunction:
    from spacy.tokens import Doc

    def tag(tokens: tuple[str, ...]) -> tuple[list[str | None], list[str | None]]:
        doc = Doc(nlp.vocab, words=list(tokens))
        for _, component in nlp.pipeline:
            doc = component(doc)
        tags = [_penn_to_coarse(t.tag_) if t.tag_ else None for t in doc]
        lemmas = [t.lemma_.lower() or None for t in doc]  # None: the pipeline has no lemmatiser
        return tags, lemmas

    return tag
