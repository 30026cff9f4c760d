"""Run-time detection of the optional NLP libraries (spaCy, NLTK and their data).

Neither is required: every caller has a rule-based path. Detection results are cached, since
loading a spaCy model or the WordNet corpus takes seconds.
"""

from __future__ import annotations

import functools
from typing import Any

DEFAULT_SPACY_MODEL = "en_core_web_sm"


@functools.cache
def nltk_wordnet() -> Any | None:
    """NLTK's WordNet corpus reader when NLTK and its ``wordnet`` data are installed, else None."""
    try:
        from nltk.corpus import wordnet
    except ImportError:
        return None
    try:
        wordnet.ensure_loaded()
        wordnet.synsets("dog")
    except (LookupError, OSError, AttributeError):
        return None
    return wordnet


@functools.cache
def nltk_pos_tagger() -> Any | None:
    """``nltk.pos_tag`` when NLTK and its perceptron tagger data are installed, else None."""
    try:
        import nltk
    except ImportError:
        return None
    try:
        nltk.pos_tag(["a", "dog"])
    except (LookupError, OSError):
        return None
    return nltk.pos_tag


@functools.cache
def spacy_pipeline(model: str = DEFAULT_SPACY_MODEL) -> Any | None:
    """A loaded spaCy pipeline (parser and named entities disabled) when spaCy and `model` are
    installed, else None."""
    try:
        import spacy
    except ImportError:
        return None
    try:
        return spacy.load(model, disable=["parser", "ner"])
    except (OSError, ImportError, ValueError):
        return None
