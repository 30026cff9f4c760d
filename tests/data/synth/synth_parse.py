"""An independent reader of the world's language, for tests: turns descriptions back into
constraints using only the vocabulary tables, so claims can be checked against the scene graph."""

from __future__ import annotations

import re

from vlmt.data.synth import taxonomy as tx
from vlmt.data.synth.scene import Scene

WORD_TO = {}
for c in tx.COLOURS:
    WORD_TO[c] = ("colour", c)
for s, syns in tx.SIZE_SYNONYMS.items():
    for w in syns:
        WORD_TO[w] = ("size", s)
for t, syns in tx.TEXTURE_SYNONYMS.items():
    for w in syns:
        WORD_TO[w] = ("texture", t)
NOUNS = set()
for s, syns in tx.SHAPE_SYNONYMS.items():
    NOUNS.update(syns)
NOUNS.update(tx.HYPERNYM_PARENTS)
NOUNS.update(p for ps in tx.HYPERNYM_PARENTS.values() for p in ps)
PLURALS = {tx.plural(n): n for n in NOUNS}
GENERIC = {"object", "thing", "shape", "objects", "shapes", "things"}
NUMBERS = {w: i for i, w in enumerate(tx.NUMBER_WORDS)}


def parse_description(text: str) -> dict:
    """'a small striped red square' -> {'size': 'small', 'texture': 'striped', 'colour': 'red',
    'noun': 'square', 'count': None}; raises ValueError on any unknown word."""
    words = text.lower().split()
    out: dict = {"count": None, "noun": None}
    i = 0
    while i < len(words):
        two = " ".join(words[i:i + 2])
        w = words[i]
        if w in ("a", "an", "the", "colorful"):
            i += 1
        elif w in NUMBERS:
            out["count"] = NUMBERS[w]
            i += 1
        elif two in WORD_TO or two in NOUNS or two in PLURALS:
            key = two
            i += 2
            if key in WORD_TO:
                out[WORD_TO[key][0]] = WORD_TO[key][1]
            else:
                out["noun"] = PLURALS.get(key, key)
        elif w in WORD_TO:
            out[WORD_TO[w][0]] = WORD_TO[w][1]
            i += 1
        elif w in NOUNS or w in PLURALS or w in GENERIC:
            out["noun"] = PLURALS.get(w, w) if w not in ("objects", "things") else w[:-1]
            i += 1
        else:
            raise ValueError(f"unknown word {w!r} in {text!r}")
    return out


def fits(obj, d: dict) -> bool:
    """Whether a scene object fits every property of a parsed description."""
    noun = d.get("noun")
    if noun not in (None, "object", "thing", "shape") and not tx.is_a(obj.shape, noun):
        return False
    return all(d.get(k) in (None, getattr(obj, k)) for k in ("colour", "size", "texture"))


def resolve(scene: Scene, text: str) -> list:
    d = parse_description(text)
    return [o for o in scene.objects if fits(o, d)]


REL_WORDS = sorted(((w, r) for r, ws in
                    {"left of": ("to the left of", "left of", "on the left side of"),
                     "right of": ("to the right of", "right of", "on the right side of"),
                     "above": ("above", "over", "higher than"),
                     "below": ("below", "under", "beneath", "lower than"),
                     "next to": ("next to", "beside", "near", "close to")}.items() for w in ws),
                   key=lambda x: -len(x[0]))
REL_RE = "|".join(re.escape(w) for w, _ in REL_WORDS)
REL_OF = dict(REL_WORDS)


def relation_in(text: str) -> str | None:
    """The relation named in a stretch of caption text between two phrases, if any."""
    m = re.search(r"\b(" + REL_RE + r")\b", text.lower())
    return REL_OF[m.group(1)] if m else None
