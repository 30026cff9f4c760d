from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vlmt.data.text import align_words, tokenize


def test_vqa_style_matches_bottom_up_question_preprocessing():
    # lowercase, ',' and '?' deleted, "'s" split off, every other character kept in its token
    assert tokenize("What's the man's T-shirt colour, is it red?") == [
        "what", "'s", "the", "man", "'s", "t-shirt", "colour", "is", "it", "red",
    ]
    assert tokenize("Is this a 3.5-inch disk/drive?") == ["is", "this", "a", "3.5-inch", "disk/drive"]
    assert tokenize("  How many\tdogs?\n") == ["how", "many", "dogs"]


def test_caption_style_matches_karpathy_tokens():
    # lowercase and every ASCII punctuation character deleted
    assert tokenize("A man's T-shirt, red.", "caption") == ["a", "mans", "tshirt", "red"]
    assert tokenize('Two dogs "play" (outside) !', "caption") == ["two", "dogs", "play", "outside"]


# published (raw, tokens) pairs of the first test image of the Karpathy COCO split file
KARPATHY_COCO_391895 = [
    ("A man with a red helmet on a small moped on a dirt road. ",
     "a man with a red helmet on a small moped on a dirt road"),
    ("Man riding a motor bike on a dirt road on the countryside.",
     "man riding a motor bike on a dirt road on the countryside"),
    ("A man riding on the back of a motorcycle.", "a man riding on the back of a motorcycle"),
]


@pytest.mark.parametrize("raw,tokens", KARPATHY_COCO_391895)
def test_caption_style_reproduces_published_karpathy_tokens(raw, tokens):
    assert tokenize(raw, "caption") == tokens.split()


def test_unknown_style_is_rejected():
    with pytest.raises(ValueError, match="tokenizer style"):
        tokenize("a dog", "bert")


def test_flickr30k_phrase_span_maps_to_tokens():
    sentence = "A little girl in a pink dress , climbs a tree ."
    aligned = align_words(sentence, "caption")
    # "a pink dress" starts at whitespace word 4 and has 3 words
    span = aligned.span(4, 3)
    assert [aligned.tokens[i] for i in span] == ["a", "pink", "dress"]
    # after the deleted "," every later word shifts one token to the left
    assert [aligned.tokens[i] for i in aligned.span(8, 2)] == ["climbs", "a"]
    assert list(aligned.span(7, 1)) == []  # a lone punctuation word has no token


def test_span_splits_possessive_in_vqa_style():
    aligned = align_words("the man's dog", "vqa")
    assert [aligned.tokens[i] for i in aligned.span(1, 1)] == ["man", "'s"]
    assert [aligned.tokens[i] for i in aligned.span(2, 1)] == ["dog"]


@pytest.mark.parametrize("first,count", [(-1, 1), (2, 2), (0, 0), (3, 1)])
def test_span_outside_sentence_is_an_error(first, count):
    with pytest.raises(ValueError):
        align_words("a red ball").span(first, count)


words = st.text(alphabet=st.sampled_from(list("abAB,.?'s-!  \t")), max_size=40)


@given(words, st.sampled_from(["vqa", "caption"]))
def test_alignment_agrees_with_whole_sentence_tokenization(sentence, style):
    aligned = align_words(sentence, style)
    assert list(aligned.tokens) == tokenize(sentence, style)
    assert len(aligned.word_starts) == len(sentence.split()) + 1
    # the words' token ranges tile the token list in order
    rebuilt = [aligned.tokens[i] for w in range(len(aligned.words)) for i in aligned.word_tokens(w)]
    assert rebuilt == list(aligned.tokens)
    for w, word in enumerate(aligned.words):
        assert [aligned.tokens[i] for i in aligned.word_tokens(w)] == tokenize(word, style)
