"""Tokenisation matching the two preprocessing conventions most VQA and captioning work uses.

* ``"vqa"``: the question tokenisation of the widely used bottom-up-attention VQA code base:
  lowercase, delete every ``,`` and ``?``, put a space before each ``'s`` (so ``man's`` becomes
  ``man 's``), then split on whitespace. Every other character (``.``, ``-``, ``/``, ``"`` ...)
  stays inside its token.
* ``"caption"``: the caption tokenisation of Karpathy's neuraltalk2 preprocessing: lowercase,
  delete every ASCII punctuation character (Python's ``string.punctuation``), then split on
  whitespace. Hyphenated and possessive words are joined (``t-shirt`` -> ``tshirt``, ``man's``
  -> ``mans``). It reproduces the ``tokens`` of the Karpathy split files on ordinary captions,
  but users report captions where those differ, so readers keep a file's own ``tokens``.

Both rules act on each whitespace-separated word independently, so a sentence's tokens are the
concatenation of its words' tokens. :func:`align_words` relies on this to map spans of the
whitespace-split sentence (Flickr30k Entities phrases) to token indices.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Literal

TokenizerStyle = Literal["vqa", "caption"]
STYLES: tuple[str, ...] = ("vqa", "caption")

_CAPTION_DELETE = str.maketrans("", "", string.punctuation)


def _vqa_word(word: str) -> list[str]:
    word = word.lower().replace(",", "").replace("?", "").replace("'s", " 's")
    return word.split()


def _caption_word(word: str) -> list[str]:
    return word.lower().translate(_CAPTION_DELETE).split()


_WORD_RULES = {"vqa": _vqa_word, "caption": _caption_word}
# what a model folder records of its tokenizer (config.json, "preprocess")
RULES = {"vqa": "questions: lowercase, delete , and ?, a space before 's, split on whitespace",
         "caption": "captions and phrases: lowercase, delete ASCII punctuation, split on whitespace",
         "unknown_words": "a word outside the vocabulary becomes <unk>; answers list such words"}


def _rule(style: str):
    try:
        return _WORD_RULES[style]
    except KeyError:
        raise ValueError(f"unknown tokenizer style {style!r}; expected one of {', '.join(STYLES)}") from None


def tokenize(text: str, style: TokenizerStyle = "vqa") -> list[str]:
    """Tokens of `text` under the named convention (see the module docstring)."""
    rule = _rule(style)
    return [token for word in text.split() for token in rule(word)]


@dataclass(frozen=True)
class WordAlignment:
    """Tokens of a sentence together with where each whitespace-split word went.

    `word_starts[i]` is the index of the first token of word i and `word_starts[-1]` (one entry
    more than there are words) is the token count, so word i owns tokens
    ``word_starts[i]:word_starts[i + 1]`` (empty when the word was pure punctuation).
    """

    words: tuple[str, ...]
    tokens: tuple[str, ...]
    word_starts: tuple[int, ...]

    def word_tokens(self, word_index: int) -> range:
        """Token indices produced by one word."""
        return range(self.word_starts[word_index], self.word_starts[word_index + 1])

    def span(self, first_word_index: int, num_words: int) -> range:
        """Token indices covering words ``first_word_index .. first_word_index + num_words - 1``.

        Raises ValueError when the span leaves the sentence. The range may be empty when every
        word of the span is punctuation that the tokenizer deletes; callers decide what that means.
        """
        if num_words < 1:
            raise ValueError(f"a word span needs at least one word, got {num_words}")
        end_word = first_word_index + num_words
        if first_word_index < 0 or end_word > len(self.words):
            raise ValueError(
                f"words {first_word_index}..{end_word - 1} are outside a sentence of "
                f"{len(self.words)} words"
            )
        return range(self.word_starts[first_word_index], self.word_starts[end_word])


def align_words(sentence: str, style: TokenizerStyle = "vqa") -> WordAlignment:
    """Tokenize `sentence` and record which tokens each whitespace-split word produced."""
    rule = _rule(style)
    words = sentence.split()
    tokens: list[str] = []
    starts = [0]
    for word in words:
        tokens.extend(rule(word))
        starts.append(len(tokens))
    return WordAlignment(words=tuple(words), tokens=tuple(tokens), word_starts=tuple(starts))
