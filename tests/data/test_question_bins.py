"""The 4 question bins: opening, nominal subject, other nouns, rest."""

from __future__ import annotations

import pytest

from vlmt.data.question_bins import (
    BIN_NAMES,
    ParsedWord,
    QuestionBinner,
    bins_from_parse,
    heuristic_bins,
    spacy_available,
    tokenize_question,
)
from vlmt.errors import ConfigError

NOUNS = {"color", "man", "hat", "people", "beach", "table", "cat", "bed", "fire", "hydrant", "photo", "hand", "dog"}


def is_noun(word: str) -> bool:
    return word in NOUNS


@pytest.mark.parametrize("question, expected", [
    ("What color is the man's hat?", None),
    ("What color is the hat?", [["what", "color"], ["hat"], [], ["is", "the"]]),
    ("Is the man wearing a hat?", [["is", "the"], ["man"], ["hat"], ["wearing", "a"]]),
    ("How many people are on the beach?", [["how", "many"], ["people"], ["beach"], ["are", "on", "the"]]),
    ("What is on the table?", [["what", "is"], [], ["table"], ["on", "the"]]),
    ("Is there a cat on the bed?", [["is", "there"], ["cat"], ["bed"], ["a", "on", "the"]]),
    ("What color is the fire hydrant in the photo?",
     [["what", "color"], ["hydrant"], ["fire", "photo"], ["is", "the", "in", "the"]]),
    ("Yes?", [["yes"], [], [], []]),
])
def test_heuristic_bins(question, expected):
    bins = heuristic_bins(tokenize_question(question), is_noun)
    if expected is None:  # "man's" is not in the lexicon: hat is the subject, nothing else is a noun
        expected = [["what", "color"], ["hat"], [], ["is", "the", "man's"]]
    assert bins.as_lists() == expected
    assert bins.method == "heuristic"
    # every word lands in exactly one bin, in question order within a bin
    assert sorted(w for b in bins.as_lists() for w in b) == sorted(tokenize_question(question))


def test_bins_from_parse_uses_the_parsers_subject():
    # a parse in which the subject follows another noun phrase, which the heuristic cannot see
    words = [ParsedWord("What", False, False), ParsedWord("hat", True, False), ParsedWord("is", False, False),
             ParsedWord("the", False, False), ParsedWord("photo", True, False), ParsedWord("man", True, True),
             ParsedWord("wearing", False, False)]
    bins = bins_from_parse(words, method="test")
    assert bins.as_lists() == [["what", "hat"], ["man"], ["photo"], ["is", "the", "wearing"]]
    assert len(BIN_NAMES) == 4


def test_binner_picks_parser_at_run_time():
    binner = QuestionBinner(is_noun=is_noun)
    if spacy_available():
        assert binner.method.startswith("spacy:")
        bins = binner("Is the man wearing a hat?")
        assert bins.subject == ("man",)
        assert "hat" in bins.other_nouns
    else:
        assert binner.method == "heuristic"
        assert binner("Is the man wearing a hat?").subject == ("man",)
        with pytest.raises(ConfigError, match="spacy"):
            QuestionBinner(is_noun=is_noun, parser="spacy")
        with pytest.raises(ConfigError, match="noun test"):
            QuestionBinner()


def test_binner_heuristic_uses_given_tokens():
    binner = QuestionBinner(is_noun=is_noun, parser="heuristic")
    assert binner("ignored", tokens=["what", "color", "is", "the", "dog"]).subject == ("dog",)
    with pytest.raises(ConfigError):
        QuestionBinner(is_noun=is_noun, parser="stanford")  # type: ignore[arg-type]
