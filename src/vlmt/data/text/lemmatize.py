"""Lemmatisation of English nouns, adjectives and verbs: plural and inflected forms -> base form.

Two back ends share one interface, ``lemmatize(word, pos)`` with `pos` one of ``"n"``, ``"a"``,
``"v"`` (WordNet's letters):

* :class:`RuleLemmatizer` (always available) works like WordNet's morphy: it proposes base forms
  by suffix rules and an exception table, and takes the first proposal that is a *known word* (for
  vlmt, the recognition labels). When no proposal is known it falls back to a default rule that
  is good for regular noun plurals and conservative for adjectives (see docs/text_pipeline.md
  for what it gets wrong).
* :class:`WordNetLemmatizer` uses NLTK's WordNet lemmatiser when NLTK and its data are installed.

Both return a word that is itself a known word unchanged, so labels such as ``glasses`` or
``striped`` survive lemmatisation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Protocol

from vlmt.data.text.optional import nltk_wordnet

Pos = Literal["n", "a", "v"]
POS_TAGS: tuple[str, ...] = ("n", "a", "v")

# irregular forms -> base form
_NOUN_EXCEPTIONS = {
    "men": "man", "women": "woman", "children": "child", "people": "person", "feet": "foot",
    "teeth": "tooth", "geese": "goose", "mice": "mouse", "lice": "louse", "oxen": "ox",
    "knives": "knife", "wives": "wife", "lives": "life", "leaves": "leaf", "loaves": "loaf",
    "wolves": "wolf", "halves": "half", "calves": "calf", "shelves": "shelf", "scarves": "scarf",
    "elves": "elf", "thieves": "thief", "hooves": "hoof", "selves": "self", "sheaves": "sheaf",
    "buses": "bus", "gases": "gas", "lenses": "lens", "canvases": "canvas", "bonuses": "bonus",
    "cacti": "cactus", "fungi": "fungus", "skis": "ski", "taxis": "taxi", "quizzes": "quiz",
    "tomatoes": "tomato", "potatoes": "potato", "heroes": "hero", "volcanoes": "volcano",
    "mangoes": "mango", "mosquitoes": "mosquito", "torpedoes": "torpedo", "echoes": "echo",
    "buffaloes": "buffalo", "dominoes": "domino", "dice": "die", "indices": "index",
    "matrices": "matrix", "vertices": "vertex", "criteria": "criterion", "phenomena": "phenomenon",
    "data": "datum", "bacteria": "bacterium", "media": "medium",
}
# same in singular and plural, or plural-only: left as they are
_NOUN_INVARIANT = {
    "sheep", "fish", "deer", "moose", "bison", "salmon", "trout", "shrimp", "aircraft",
    "spacecraft", "series", "species", "news", "jeans", "pants", "shorts", "trousers", "scissors",
    "sunglasses", "goggles", "binoculars", "pajamas", "pyjamas", "tongs", "clothes", "leggings",
    "tights", "overalls", "cattle", "police", "physics", "mathematics", "athletics", "electronics",
    "politics", "headquarters", "swiss", "always", "this", "his", "its", "yes", "less", "was", "has",
    "does", "is", "as", "us", "thus", "perhaps", "whereas",
}
# singular nouns ending in -ie, whose plural -ies must not become -y
_IE_NOUNS = {
    "cookie", "movie", "zombie", "calorie", "brownie", "smoothie", "selfie", "goalie", "hoodie",
    "rookie", "veggie", "pie", "tie", "lie", "die", "genie", "pixie", "prairie", "collie", "birdie",
    "beanie", "freebie", "sweetie", "auntie", "hippie", "magpie", "necktie", "bowtie", "lassie",
}
# singular nouns ending in -men, which is not the plural of -man
_MEN_SINGULARS = {"specimen", "abdomen", "semen", "stamen", "omen", "ramen", "hymen", "regimen", "acumen", "amen"}
_ADJ_EXCEPTIONS = {
    "better": "good", "best": "good", "worse": "bad", "worst": "bad", "farther": "far",
    "further": "far", "farthest": "far", "furthest": "far", "less": "little", "least": "little",
    "elder": "old", "eldest": "old",
}
_VERB_EXCEPTIONS = {
    "is": "be", "are": "be", "was": "be", "were": "be", "been": "be", "being": "be", "am": "be",
    "has": "have", "had": "have", "having": "have", "does": "do", "did": "do", "done": "do",
    "went": "go", "gone": "go", "goes": "go", "made": "make", "sat": "sit", "stood": "stand",
    "held": "hold", "ate": "eat", "eaten": "eat", "ran": "run", "flew": "fly", "flown": "fly",
    "wore": "wear", "worn": "wear", "rode": "ride", "ridden": "ride", "lay": "lie", "lying": "lie",
    "taken": "take", "took": "take", "seen": "see", "saw": "see", "grew": "grow", "grown": "grow",
    "drove": "drive", "driven": "drive", "swam": "swim", "hung": "hang", "built": "build",
    "left": "leave", "kept": "keep", "slept": "sleep", "caught": "catch", "thrown": "throw",
    "threw": "throw", "dying": "die", "tying": "tie",
}

_VOWELS = set("aeiou")
_NO_UNDOUBLE = set("lsfz")  # tall-er, kiss-ing, stuff-ed, buzz-ing keep their double letter


class Lemmatizer(Protocol):
    """What the POS lexicon needs from a lemmatiser."""

    name: str

    def lemmatize(self, word: str, pos: Pos = "n") -> str: ...


def _check_pos(pos: str) -> None:
    if pos not in POS_TAGS:
        raise ValueError(f"pos must be one of {POS_TAGS}, got {pos!r}")


def _noun_candidates(w: str) -> list[str]:
    """Possible singulars, most plausible first (morphy's noun rules plus -ves and -ies)."""
    out = []
    if w.endswith("men") and len(w) > 3:
        out.append(w[:-3] + "man")
    if w.endswith("ies") and len(w) > 3:
        out += [w[:-3] + "y", w[:-1]]
    if w.endswith("ves"):
        out += [w[:-1], w[:-3] + "f", w[:-3] + "fe"]
    for suffix in ("sses", "ches", "shes", "xes", "zzes"):
        if w.endswith(suffix):
            out.append(w[:-2])
    if w.endswith("es"):
        out += [w[:-1], w[:-2]]
    if w.endswith("s") and not w.endswith("ss"):
        out.append(w[:-1])
    return [c for c in dict.fromkeys(out) if len(c) >= 2]


def _default_noun(w: str) -> str:
    """Best guess without a dictionary: regular English plurals."""
    if w.endswith("men") and len(w) > 4 and w not in _MEN_SINGULARS:
        return w[:-3] + "man"  # firemen, policemen
    if len(w) <= 3 or not w.endswith("s") or w.endswith(("ss", "us", "is", "ous")):
        return w
    if w.endswith("ies"):
        return w[:-1] if w[:-1] in _IE_NOUNS or len(w) <= 4 else w[:-3] + "y"
    if w.endswith(("sses", "ches", "shes", "xes", "zzes")):
        return w[:-2]
    return w[:-1]


def _undouble(stem: str) -> str | None:
    if len(stem) >= 3 and stem[-1] == stem[-2] and stem[-1] not in _VOWELS | _NO_UNDOUBLE:
        return stem[:-1]
    return None


def _adjective_candidates(w: str) -> list[str]:
    out = []
    for suffix in ("est", "er"):
        if w.endswith(suffix) and len(w) > len(suffix) + 1:
            stem = w[: -len(suffix)]
            if stem.endswith("i"):
                out.append(stem[:-1] + "y")
            undoubled = _undouble(stem)
            if undoubled:
                out.append(undoubled)
            out += [stem, stem + "e"]
    return list(dict.fromkeys(out))


def _default_adjective(w: str) -> str:
    """Without a dictionary only the unambiguous comparative forms are reduced."""
    for suffix in ("iest", "ier"):
        if w.endswith(suffix) and len(w) > len(suffix) + 2:
            return w[: -len(suffix)] + "y"
    return w


def _verb_candidates(w: str) -> list[str]:
    out = []
    if w.endswith("ies"):
        out.append(w[:-3] + "y")
    if w.endswith("es"):
        out += [w[:-2], w[:-1]]
    elif w.endswith("s") and not w.endswith("ss"):
        out.append(w[:-1])
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and len(w) > len(suffix) + 1:
            stem = w[: -len(suffix)]
            if suffix == "ed" and stem.endswith("i"):
                out.append(stem[:-1] + "y")
            undoubled = _undouble(stem)
            if undoubled:
                out.append(undoubled)
            out += [stem, stem + "e"]
    return [c for c in dict.fromkeys(out) if len(c) >= 2]


def _default_verb(w: str) -> str:
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and len(w) > len(suffix) + 2:
            stem = w[: -len(suffix)]
            undoubled = _undouble(stem)
            if undoubled:
                return undoubled
            # a short consonant-vowel-consonant stem lost a silent e: mak-ing, rid-ing, hik-ed
            if len(stem) == 3 and stem[0] not in _VOWELS and stem[1] in _VOWELS and stem[2] not in _VOWELS | set("wxy"):
                return stem + "e"
            if suffix == "ed" and stem.endswith("i"):
                return stem[:-1] + "y"
            return stem
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("sses", "ches", "shes", "xes", "zzes")):
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us", "is")) and len(w) > 3:
        return w[:-1]
    return w


_RULES = {
    "n": (_NOUN_EXCEPTIONS, _noun_candidates, _default_noun),
    "a": (_ADJ_EXCEPTIONS, _adjective_candidates, _default_adjective),
    "v": (_VERB_EXCEPTIONS, _verb_candidates, _default_verb),
}


class RuleLemmatizer:
    """Suffix rules checked against known words (WordNet morphy's idea, with our labels as the
    dictionary), with a default rule when no candidate is known. Input is lowercased."""

    name = "rules"

    def __init__(
        self,
        *,
        known_nouns: Iterable[str] = (),
        known_adjectives: Iterable[str] = (),
        known_verbs: Iterable[str] = (),
    ):
        self.known = {
            "n": {w.lower() for w in known_nouns},
            "a": {w.lower() for w in known_adjectives},
            "v": {w.lower() for w in known_verbs},
        }

    def lemmatize(self, word: str, pos: Pos = "n") -> str:
        """Base form of `word` used as part of speech `pos`."""
        _check_pos(pos)
        w = word.lower()
        known = self.known[pos]
        if w in known:
            return w
        exceptions, candidates, default = _RULES[pos]
        if w in exceptions:
            return exceptions[w]
        if pos == "n" and w in _NOUN_INVARIANT:
            return w
        if not w.isalpha():
            # multi-word or hyphenated: lemmatise the last part (traffic lights -> traffic light)
            head, sep, last = _split_last(w)
            if sep:
                return head + sep + self.lemmatize(last, pos)
            return w
        for candidate in candidates(w):
            if candidate in known:
                return candidate
        return default(w)


def _split_last(w: str) -> tuple[str, str, str]:
    for sep in (" ", "-", "_"):
        if sep in w:
            head, _, last = w.rpartition(sep)
            if last:
                return head, sep, last
    return w, "", ""


class WordNetLemmatizer:
    """NLTK's WordNet lemmatiser; known words are returned unchanged, as with the rules."""

    name = "wordnet"

    def __init__(
        self,
        *,
        known_nouns: Iterable[str] = (),
        known_adjectives: Iterable[str] = (),
        known_verbs: Iterable[str] = (),
    ):
        wordnet = nltk_wordnet()
        if wordnet is None:
            raise RuntimeError("NLTK with its WordNet data is not installed (pip install nltk; "
                               "python -m nltk.downloader wordnet)")
        from nltk.stem import WordNetLemmatizer as _NltkLemmatizer

        self._nltk = _NltkLemmatizer()
        self._rules = RuleLemmatizer(
            known_nouns=known_nouns, known_adjectives=known_adjectives, known_verbs=known_verbs
        )

    def lemmatize(self, word: str, pos: Pos = "n") -> str:
        _check_pos(pos)
        w = word.lower()
        if w in self._rules.known[pos]:
            return w
        head, sep, last = _split_last(w) if " " in w else (w, "", "")
        if sep:
            return head + sep + self.lemmatize(last, pos)
        return self._nltk.lemmatize(w, pos)


def make_lemmatizer(
    backend: Literal["auto", "rules", "wordnet"] = "auto",
    *,
    known_nouns: Iterable[str] = (),
    known_adjectives: Iterable[str] = (),
    known_verbs: Iterable[str] = (),
) -> Lemmatizer:
    """The WordNet lemmatiser when `backend` is "wordnet" (or "auto" and NLTK's data is
    installed), else the rule-based one."""
    if backend not in ("auto", "rules", "wordnet"):
        raise ValueError(f"unknown lemmatizer backend {backend!r}; expected auto, rules or wordnet")
    kwargs = dict(known_nouns=known_nouns, known_adjectives=known_adjectives, known_verbs=known_verbs)
    if backend == "wordnet" or (backend == "auto" and nltk_wordnet() is not None):
        return WordNetLemmatizer(**kwargs)
    return RuleLemmatizer(**kwargs)
