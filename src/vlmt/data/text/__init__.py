"""Text pipeline: tokenisation, vocabulary, pretrained word vectors, lemmatisation, the POS
lexicon of recognition labels, and hypernyms. spaCy and NLTK are used when installed."""

from __future__ import annotations

from vlmt.data.text.hypernyms import HypernymMap
from vlmt.data.text.lemmatize import RuleLemmatizer, WordNetLemmatizer, make_lemmatizer
from vlmt.data.text.lexicon import PosLexicon, TaggedTokens, WordMatch
from vlmt.data.text.tokenize import WordAlignment, align_words, tokenize
from vlmt.data.text.vocab import PAD, UNK, Vocabulary, pad_indices
from vlmt.data.text.word_vectors import WordVectors, load_word_vectors, save_word_vectors_text

__all__ = [
    "PAD",
    "UNK",
    "HypernymMap",
    "PosLexicon",
    "RuleLemmatizer",
    "TaggedTokens",
    "Vocabulary",
    "WordAlignment",
    "WordMatch",
    "WordNetLemmatizer",
    "WordVectors",
    "align_words",
    "load_word_vectors",
    "make_lemmatizer",
    "pad_indices",
    "save_word_vectors_text",
    "tokenize",
]
