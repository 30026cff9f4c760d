from __future__ import annotations

import pytest

from vlmt.data.text import PosLexicon, tokenize
from vlmt.data.text.optional import nltk_pos_tagger, spacy_pipeline

OBJECTS = ["dog", "tennis racket", "shirt", "orange", "traffic light", "man", "glasses"]
ATTRIBUTES = ["orange", "light blue", "fluffy", "big", "striped", "white"]


@pytest.fixture(scope="module")
def lexicon():
    return PosLexicon.from_labels(objects=OBJECTS, attributes=ATTRIBUTES, lemmatizer="rules", tagger="lexicon")


def test_nouns_and_adjectives_with_multi_word_labels(lexicon):
    tokens = tokenize("Is the fluffy dog next to two tennis rackets?")
    tagged = lexicon.tag(tokens)
    assert tagged.nouns == ["dog", "tennis racket"]
    assert tagged.adjectives == ["fluffy"]
    nouns, adjectives = lexicon.lookup(tokens)
    assert nouns == [3, 7, 8]  # "tennis rackets" covers two tokens
    assert adjectives == [2]
    match = next(m for m in tagged.matches if m.lemma == "tennis racket")
    assert (match.start, match.end) == (7, 9)


def test_lemmatisation_before_lookup(lexicon):
    tagged = lexicon.tag(tokenize("What are the men with the bigger dogs wearing over their glasses?"))
    assert tagged.nouns == ["man", "dog", "glasses"]
    assert tagged.adjectives == ["big"]


def test_multi_word_adjective_beats_single_word_noun(lexicon):
    tagged = lexicon.tag(tokenize("a light blue shirt near the traffic lights"))
    assert tagged.adjectives == ["light blue"]
    assert tagged.nouns == ["shirt", "traffic light"]


def test_word_of_both_label_sets(lexicon):
    before_noun = lexicon.tag(tokenize("the orange shirt"))
    assert before_noun.adjectives == ["orange"] and before_noun.nouns == ["shirt"]
    alone = lexicon.tag(tokenize("is the fruit an orange"))
    assert alone.adjectives == ["orange"] and alone.nouns == ["orange"]
    assert alone.noun_positions == alone.adjective_positions == [4]


def test_unknown_words_are_not_tagged_without_a_tagger(lexicon):
    tagged = lexicon.tag(tokenize("what colour is the zebra"))
    assert tagged.matches == ()
    assert lexicon.tagger_name == "lexicon"


def test_empty_label_is_rejected():
    with pytest.raises(ValueError, match="no tokens"):
        PosLexicon(nouns=["dog", "?"], adjectives=[], tagger="lexicon")


@pytest.mark.skipif(spacy_pipeline() is None and nltk_pos_tagger() is None, reason="no POS tagger installed")
def test_tagger_adds_nouns_outside_the_label_sets():
    lex = PosLexicon.from_labels(objects=OBJECTS, attributes=ATTRIBUTES, tagger="auto")
    tagged = lex.tag(tokenize("is the zebra next to the fluffy dog"))
    assert "zebra" in tagged.nouns and "dog" in tagged.nouns and "fluffy" in tagged.adjectives
    assert any(not m.from_label for m in tagged.matches)


def penn_like(tokens):
    """A stand-in tagger for a fixed vocabulary (the real ones need spaCy or NLTK data)."""
    table = {"zebra": "n", "orange": "n", "tall": "a", "fluffy": "a", "dog": "n", "fruit": "n"}
    return [table.get(t) for t in tokens]


def test_a_tagger_adds_open_vocabulary_words_and_decides_ambiguous_labels():
    lex = PosLexicon.from_labels(objects=OBJECTS, attributes=ATTRIBUTES, lemmatizer="rules", tagger=penn_like)
    tagged = lex.tag(tokenize("is the tall zebra eating an orange"))
    assert tagged.nouns == ["zebra", "orange"]  # "orange" decided by the tagger: noun only
    assert tagged.adjectives == ["tall"]
    assert [m.from_label for m in tagged.matches] == [False, False, True]
    assert lex.tagger_name == "penn_like"


def test_a_tagger_with_the_wrong_number_of_tags_is_an_error():
    lex = PosLexicon(nouns=["dog"], adjectives=[], lemmatizer="rules", tagger=lambda tokens: ["n"])
    with pytest.raises(ValueError, match="1 tags for 2 tokens"):
        lex.tag(["the", "dog"])


def _tiny_spacy_pipeline(path):
    """A real spaCy pipeline whose attribute ruler assigns Penn tags to a few words (no trained
    model is needed, so the spaCy code path runs wherever spaCy itself is installed)."""
    spacy_mod = pytest.importorskip("spacy")
    nlp = spacy_mod.blank("en")
    ruler = nlp.add_pipe("attribute_ruler")
    for word, tag in [("zebra", "NN"), ("zebras", "NNS"), ("orange", "NN"), ("tall", "JJ")]:
        ruler.add(patterns=[[{"LOWER": word}]], attrs={"TAG": tag})
    nlp.to_disk(path)
    return str(path)


def test_spacy_tagger_path_with_a_real_pipeline(tmp_path):
    model = _tiny_spacy_pipeline(tmp_path / "tiny_spacy")
    lex = PosLexicon.from_labels(
        objects=OBJECTS, attributes=ATTRIBUTES, lemmatizer="rules", tagger="spacy", spacy_model=model
    )
    assert lex.tagger_name == "spacy"
    tagged = lex.tag(tokenize("are the tall zebras eating an orange"))
    assert tagged.nouns == ["zebra", "orange"]  # lemma from the rules: the pipeline has no lemmatiser
    assert tagged.adjectives == ["tall"]
