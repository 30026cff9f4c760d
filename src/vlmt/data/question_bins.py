"""The 4-bin question representation SVLR takes from Shih et al. ("Where To Look", CVPR 2016).

SVLR (Sec. 3.3) represents a question as 4 x 300: its words are split into four bins, the
g(w) of each bin's words are averaged, and the four means are concatenated; an empty bin is a
zero vector. The bins, as in Shih et al.:

1. opening     - the first two words (they usually say what kind of question it is:
                 "what color", "how many", "is the")
2. subject     - the question's nominal subject, from a dependency parse
3. other_nouns - every other noun
4. rest        - every remaining word

Each word goes to the first bin that claims it. The paper parses with the Stanford
dependency parser. vlmt uses spaCy's parser when spaCy and an English model are installed
(detected at run time; `pip install spacy` and `python -m spacy download en_core_web_sm`),
and otherwise a heuristic that needs only a noun test (the POS lexicon of the text
pipeline):

- the subject is the last noun of the first run of consecutive nouns after the opening
  (the head of a compound: "fire hydrant" -> "hydrant"; "fire" goes to other_nouns),
- unless a preposition comes before that run, in which case the first noun is a
  prepositional object ("what is on the table?") and the subject bin stays empty, as a
  parser would leave it (the subject there is the wh-word, already in the opening).

The heuristic is right for the common VQA question shapes ("what color is the X", "is the X
Y-ing", "how many X are", "is there a X") and wrong where the subject follows another noun
phrase (questions with fronted objects); the parser path exists for those.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

from vlmt.errors import ConfigError

BIN_NAMES = ("opening", "subject", "other_nouns", "rest")
NUM_BINS = len(BIN_NAMES)

# Closed-class words that start a prepositional phrase (used by the heuristic only).
PREPOSITIONS = frozenset(
    "about above across after against along among around at before behind below beneath beside besides "
    "between beyond by down during for from in inside into near next of off on onto out outside over "
    "through throughout to toward towards under underneath until up upon via with within without".split()
)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class QuestionBins:
    """The words of one question in the four bins (lower-cased, not lemmatised)."""

    opening: tuple[str, ...]
    subject: tuple[str, ...]
    other_nouns: tuple[str, ...]
    rest: tuple[str, ...]
    method: str  # "heuristic" or "spacy:<model>"

    def as_lists(self) -> list[list[str]]:
        """[opening, subject, other_nouns, rest] - the order of the model's 4 x 300 vector."""
        return [list(self.opening), list(self.subject), list(self.other_nouns), list(self.rest)]


@dataclass(frozen=True)
class ParsedWord:
    """One word of a parsed question: the only facts the bins need from a parser."""

    text: str
    is_noun: bool  # NOUN / PROPN
    is_subject: bool  # dependency label nsubj / nsubjpass


def tokenize_question(question: str) -> list[str]:
    """Lower-cased word tokens without punctuation (used when the caller has no tokens)."""
    return _WORD.findall(question.lower())


def bins_from_parse(words: Sequence[ParsedWord], *, method: str = "parser") -> QuestionBins:
    """Bins from a dependency parse: first two words; nominal subject(s); other nouns; rest."""
    bins: list[list[str]] = [[], [], [], []]
    for i, w in enumerate(words):
        text = w.text.lower()
        if i < 2:
            bins[0].append(text)
        elif w.is_subject:
            bins[1].append(text)
        elif w.is_noun:
            bins[2].append(text)
        else:
            bins[3].append(text)
    opening, subject, other_nouns, rest = (tuple(b) for b in bins)
    return QuestionBins(opening, subject, other_nouns, rest, method=method)


def heuristic_bins(tokens: Sequence[str], is_noun: Callable[[str], bool]) -> QuestionBins:
    """Bins without a parser (see the module docstring for the subject rule)."""
    tokens = [t.lower() for t in tokens]
    subject_at = None
    i = 2
    while i < len(tokens):
        if tokens[i] in PREPOSITIONS:
            break  # the first noun after here is inside a prepositional phrase
        if is_noun(tokens[i]):
            while i + 1 < len(tokens) and is_noun(tokens[i + 1]) and tokens[i + 1] not in PREPOSITIONS:
                i += 1
            subject_at = i
            break
        i += 1
    words = [ParsedWord(text=t, is_noun=is_noun(t), is_subject=(k == subject_at)) for k, t in enumerate(tokens)]
    return bins_from_parse(words, method="heuristic")


def spacy_available(model: str = "en_core_web_sm") -> bool:
    """True when spaCy and the named model package can be imported."""
    if importlib.util.find_spec("spacy") is None:
        return False
    return importlib.util.find_spec(model) is not None


@functools.lru_cache(maxsize=4)
def _load_spacy(model: str):  # pragma: no cover - exercised only where spaCy is installed
    import spacy

    return spacy.load(model, disable=["ner"])


def spacy_bins(question: str, model: str = "en_core_web_sm") -> QuestionBins:
    """Bins from spaCy's dependency parse of the question text."""
    doc = _load_spacy(model)(question)
    words = [ParsedWord(text=t.text, is_noun=t.pos_ in ("NOUN", "PROPN"), is_subject=t.dep_ in ("nsubj", "nsubjpass"))
             for t in doc if not (t.is_punct or t.is_space)]
    return bins_from_parse(words, method=f"spacy:{model}")


class QuestionBinner:
    """Splits questions into the 4 bins with spaCy when available, else the heuristic.

    parser: "auto" (spaCy if installed with `spacy_model`, else heuristic), "spacy" (required;
    ConfigError if missing) or "heuristic". The heuristic needs `is_noun` (e.g. the POS
    lexicon's noun test); without spaCy and without `is_noun` a ConfigError says what to do.
    """

    def __init__(self, *, is_noun: Callable[[str], bool] | None = None,
                 parser: Literal["auto", "spacy", "heuristic"] = "auto", spacy_model: str = "en_core_web_sm"):
        if parser not in ("auto", "spacy", "heuristic"):
            raise ConfigError(f"question bins: parser must be auto, spacy or heuristic, got {parser!r}")
        use_spacy = parser == "spacy" or (parser == "auto" and spacy_available(spacy_model))
        if use_spacy and not spacy_available(spacy_model):
            raise ConfigError(f"question bins: parser 'spacy' needs spaCy and the model {spacy_model!r} "
                              f"(pip install spacy; python -m spacy download {spacy_model})")
        if not use_spacy and is_noun is None:
            raise ConfigError("question bins: the heuristic binner needs a noun test (the POS lexicon); "
                              "pass is_noun=... or install spaCy with an English model")
        self.is_noun = is_noun
        self.spacy_model = spacy_model
        self.method = f"spacy:{spacy_model}" if use_spacy else "heuristic"

    def __call__(self, question: str, tokens: Sequence[str] | None = None) -> QuestionBins:
        """Bin one question. `tokens` (the text pipeline's tokens) are used by the heuristic;
        the parser path parses the raw text."""
        if self.method != "heuristic":
            return spacy_bins(question, self.spacy_model)
        assert self.is_noun is not None
        return heuristic_bins(tokens if tokens is not None else tokenize_question(question), self.is_noun)
