from __future__ import annotations

import pytest

from vlmt.data.text import RuleLemmatizer, make_lemmatizer
from vlmt.data.text.optional import nltk_wordnet

NOUNS = {
    "dogs": "dog", "boxes": "box", "dishes": "dish", "benches": "bench", "glasses": "glass",
    "houses": "house", "horses": "horse", "berries": "berry", "flies": "fly", "ties": "tie",
    "cookies": "cookie", "shoes": "shoe", "toes": "toe", "tomatoes": "tomato", "gloves": "glove",
    "leaves": "leaf", "knives": "knife", "wolves": "wolf", "men": "man", "women": "woman",
    "firemen": "fireman", "people": "person", "children": "child", "teeth": "tooth", "feet": "foot",
    "mice": "mouse", "buses": "bus", "skis": "ski", "boys": "boy", "bananas": "banana",
    "giraffes": "giraffe", "sheep": "sheep", "jeans": "jeans", "grass": "grass", "bus": "bus",
    "tennis": "tennis", "cactus": "cactus", "dog": "dog", "traffic lights": "traffic light",
    "t-shirts": "t-shirt", "Dogs": "dog",
}


@pytest.mark.parametrize("word,lemma", NOUNS.items())
def test_rule_lemmatizer_reduces_noun_plurals(word, lemma):
    assert RuleLemmatizer().lemmatize(word, "n") == lemma


def test_known_words_win_over_rules():
    # a label that looks plural stays itself; a known singular guides an ambiguous plural
    lem = RuleLemmatizer(known_nouns=["glasses", "niche"])
    assert lem.lemmatize("glasses") == "glasses"
    assert lem.lemmatize("niches") == "niche"
    assert RuleLemmatizer().lemmatize("niches") == "nich"  # the default rule's known limit


def test_adjectives_are_reduced_only_when_safe_or_known():
    plain = RuleLemmatizer()
    assert plain.lemmatize("happier", "a") == "happy"
    assert plain.lemmatize("better", "a") == "good"
    for word in ("silver", "bigger", "striped", "wooden", "larger"):
        assert plain.lemmatize(word, "a") == word
    known = RuleLemmatizer(known_adjectives=["big", "large", "tall", "striped"])
    assert known.lemmatize("bigger", "a") == "big"
    assert known.lemmatize("biggest", "a") == "big"
    assert known.lemmatize("larger", "a") == "large"
    assert known.lemmatize("tallest", "a") == "tall"
    assert known.lemmatize("striped", "a") == "striped"


@pytest.mark.parametrize(
    "word,lemma",
    [("running", "run"), ("sitting", "sit"), ("making", "make"), ("riding", "ride"), ("eating", "eat"),
     ("rolling", "roll"), ("parked", "park"), ("carried", "carry"), ("holds", "hold"),
     ("watches", "watch"), ("is", "be"), ("flew", "fly")],
)
def test_rule_lemmatizer_verbs(word, lemma):
    assert RuleLemmatizer().lemmatize(word, "v") == lemma


def test_bad_pos_and_backend_are_rejected():
    with pytest.raises(ValueError):
        RuleLemmatizer().lemmatize("dogs", "x")
    with pytest.raises(ValueError):
        make_lemmatizer("porter")


def test_auto_backend_falls_back_to_rules_without_wordnet():
    lem = make_lemmatizer("auto", known_nouns=["glasses"])
    assert lem.name == ("wordnet" if nltk_wordnet() is not None else "rules")
    assert lem.lemmatize("glasses") == "glasses"
    assert lem.lemmatize("dogs") == "dog"


@pytest.mark.skipif(nltk_wordnet() is None, reason="NLTK WordNet data not installed")
@pytest.mark.parametrize("word", ["dogs", "boxes", "leaves", "women", "berries", "buses"])
def test_rules_agree_with_wordnet_on_common_plurals(word):
    assert make_lemmatizer("wordnet").lemmatize(word, "n") == RuleLemmatizer().lemmatize(word, "n")
