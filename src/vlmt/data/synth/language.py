"""Language about a scene: captions whose noun phrases are linked to objects (Flickr30k Entities
style), and questions with 10 noisy human-style answers (VQA v2) plus 18 choices (VQA v1 MC).

Every statement is generated from the scene graph and keeps a structured record of what it
claims (which objects a phrase names, which relation holds between which phrases, what the true
answer is), so tests can re-check every claim against geometry rather than against text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Sequence, TypeVar

import numpy as np

from vlmt.data.synth import taxonomy as tx
from vlmt.data.synth.scene import RELATIONS, Scene, SceneObject, box_gap, relation_holds

RELATION_WORDS: dict[str, tuple[str, ...]] = {
    "left of": ("to the left of", "left of", "on the left side of"),
    "right of": ("to the right of", "right of", "on the right side of"),
    "above": ("above", "over", "higher than"),
    "below": ("below", "under", "beneath", "lower than"),
    "next to": ("next to", "beside", "near", "close to"),
}
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
GENERIC_NOUNS = ("object", "thing", "shape")
SCENE_PHRASES = ("the picture", "the image", "this picture")

_T = TypeVar("_T")


@dataclass(frozen=True)
class PhraseSpan:
    """A noun phrase of a caption: its words' position and the objects it names (none for a
    scene or background phrase, which is written as a nobox entity)."""

    entity_id: int
    phrase_type: str
    start: int          # index of the first word in the caption's words
    words: tuple[str, ...]
    objects: tuple[int, ...]
    scene: bool = False


@dataclass(frozen=True)
class Caption:
    """A caption as words (punctuation as separate words), its phrases and the relations it
    states between phrases (subject phrase index, relation, object phrase index)."""

    words: tuple[str, ...]
    phrases: tuple[PhraseSpan, ...]
    relations: tuple[tuple[int, str, int], ...] = ()
    counts: tuple[tuple[int, int], ...] = ()  # (phrase index, number said) for counted phrases

    @property
    def text(self) -> str:
        """The plain sentence (COCO / Karpathy `raw`)."""
        out = ""
        for w in self.words:
            out += w if (w in ".,?" or not out) else " " + w
        return out

    def markup(self) -> str:
        """The sentence with Flickr30k Entities markup `[/EN#<id>/<type> words]`."""
        starts = {p.start: p for p in self.phrases}
        out: list[str] = []
        i = 0
        while i < len(self.words):
            p = starts.get(i)
            if p is not None:
                out.append(f"[/EN#{p.entity_id}/{p.phrase_type} " + " ".join(p.words) + "]")
                i += len(p.words)
            else:
                out.append(self.words[i])
                i += 1
        return " ".join(out)


@dataclass(frozen=True)
class Question:
    """An open-ended question with its true answer, 10 annotator answers and 18 choices."""

    text: str
    kind: str             # colour | shape | count | exists | relation | size
    answer: str           # the true answer (canonical word)
    question_type: str
    answer_type: str      # "yes/no" | "number" | "other"
    answers: tuple[str, ...] = ()
    confidences: tuple[str, ...] = ()
    multiple_choice_answer: str = ""
    choices: tuple[str, ...] = ()
    claim: dict = field(default_factory=dict, compare=False)


# --- referring expressions ----------------------------------------------------------------------

ATTRIBUTE_ORDER = ("size", "texture", "colour")


def _article(next_word: str) -> str:
    return "an" if next_word[0] in "aeiou" else "a"


def _adjective_word(kind: str, value: str, rng: np.random.Generator, *, vary: bool) -> str:
    if kind == "colour" or not vary:
        return value
    table = tx.SIZE_SYNONYMS if kind == "size" else tx.TEXTURE_SYNONYMS
    options = table[value][:2]  # the common synonym only; rarer ones are left to annotators
    return options[int(rng.integers(len(options)))]


def unique_description(obj: SceneObject, scene: Scene, rng: np.random.Generator, *,
                       without: str | None = None, generic_noun: bool = False) -> list[str] | None:
    """Words (adjectives + noun, no article) that pick out `obj` alone in the scene, or None.

    `without` leaves one property out (the one a question asks about); `generic_noun` uses
    "object"/"thing" instead of the shape noun (for "what shape is the red thing?")."""
    kinds = [k for k in ATTRIBUTE_ORDER if k != without]
    subsets = [s for n in range(len(kinds) + 1) for s in combinations(kinds, n)]
    order = sorted(range(len(subsets)), key=lambda i: (len(subsets[i]), float(rng.random())))
    if generic_noun:
        noun, noun_filter = GENERIC_NOUNS[int(rng.integers(2))], None
    elif without == "shape":
        return None
    else:
        synonyms = tx.SHAPE_SYNONYMS[obj.shape]
        noun = synonyms[int(rng.integers(len(synonyms)))] if rng.random() < 0.3 else obj.shape
        general = [h for h in tx.hypernyms(obj.shape) if h not in tx.SHAPES and h != "object"]
        if rng.random() < 0.12:  # a more general word ("polygon", "shape"), never another shape noun
            noun = general[int(rng.integers(len(general)))]
        noun_filter = noun
    for i in order:
        chosen = subsets[i]
        if generic_noun and not chosen:
            continue
        props = {k: getattr(obj, k) for k in chosen}
        if scene.matching(shape=noun_filter, **props) == [obj]:
            words = [_adjective_word(k, getattr(obj, k), rng, vary=True) for k in ATTRIBUTE_ORDER if k in chosen]
            return " ".join(words + [noun]).split()
    return None


# --- captions -----------------------------------------------------------------------------------

class _CaptionBuilder:
    def __init__(self, entity_ids: dict, id_base: int = 0):
        self.id_base = id_base
        self.words: list[str] = []
        self.phrases: list[PhraseSpan] = []
        self.relations: list[tuple[int, str, int]] = []
        self.counts: list[tuple[int, int]] = []
        self.entity_ids = entity_ids

    def word(self, *ws: str) -> None:
        for w in ws:
            self.words.extend(w.split())

    def phrase(self, words: list[str], objects: tuple[int, ...], *, kind: str = "object") -> int:
        """Add a phrase; `kind` is "object" (boxed), "scene" (the background: a scene entity) or
        "picture" ("the picture": an entity without a box)."""
        key = (kind,) if kind != "object" else tuple(sorted(objects))
        if key not in self.entity_ids:
            self.entity_ids[key] = self.id_base + len(self.entity_ids) + 1
        self.phrases.append(PhraseSpan(self.entity_ids[key], "scene" if kind == "scene" else "other",
                                       len(self.words), tuple(words), tuple(sorted(objects)), kind == "scene"))
        self.words.extend(words)
        return len(self.phrases) - 1

    def build(self) -> Caption:
        words = list(self.words)
        words[0] = words[0][0].upper() + words[0][1:]
        phrases = tuple(p if p.start else PhraseSpan(p.entity_id, p.phrase_type, 0, (words[0],) + p.words[1:],
                                                     p.objects, p.scene) for p in self.phrases)
        return Caption(tuple(words), phrases, tuple(self.relations), tuple(self.counts))


def _indefinite(desc: list[str]) -> list[str]:
    return [_article(desc[0])] + desc


def _relation_pairs(scene: Scene) -> list[tuple[SceneObject, str, SceneObject]]:
    return [(a, r, b) for a in scene.objects for b in scene.objects for r in RELATIONS
            if relation_holds(r, a, b, scene.width)]


def _groups(scene: Scene) -> list[tuple[str, str | None, tuple[int, ...]]]:
    """(shape, colour or None, object indices) for every shape with 2+ objects, and same-colour
    subgroups of them: the plural noun phrases a caption may use."""
    out: list[tuple[str, str | None, tuple[int, ...]]] = []
    for shape in tx.SHAPES:
        objs = [o for o in scene.objects if o.shape == shape]
        if len(objs) >= 2:
            out.append((shape, None, tuple(o.index for o in objs)))
            for colour in {o.colour for o in objs}:
                same = [o.index for o in objs if o.colour == colour]
                if len(same) >= 2:
                    out.append((shape, colour, tuple(same)))
    return out


def _caption_relation(scene: Scene, rng: np.random.Generator, ids: dict) -> Caption | None:
    pairs = _relation_pairs(scene)
    rng.shuffle(pairs)
    for a, rel, b in pairs:
        da, db = unique_description(a, scene, rng), unique_description(b, scene, rng)
        if da is None or db is None:
            continue
        c = _CaptionBuilder(ids, scene.image_id * 100)
        rw = RELATION_WORDS[rel][int(rng.integers(len(RELATION_WORDS[rel])))]
        form = int(rng.integers(4))
        if form == 0:
            c.word("there is")
        pa = c.phrase(_indefinite(da), (a.index,))
        c.word("is " + rw if form in (1, 2) else rw)
        pb = c.phrase(_indefinite(db), (b.index,))
        if form == 2:
            c.word("in")
            c.phrase(SCENE_PHRASES[int(rng.integers(len(SCENE_PHRASES)))].split(), (), kind="picture")
        c.word(".")
        c.relations.append((pa, rel, pb))
        return c.build()
    return None


def _caption_count(scene: Scene, rng: np.random.Generator, ids: dict) -> Caption:
    c = _CaptionBuilder(ids, scene.image_id * 100)
    n = len(scene.objects)
    noun = ("shapes", "objects", "figures")[int(rng.integers(2))]
    if rng.random() < 0.5:
        c.word("there are")
        p = c.phrase([tx.NUMBER_WORDS[n], noun], tuple(o.index for o in scene.objects))
    else:
        p = c.phrase([tx.NUMBER_WORDS[n], "colorful", noun], tuple(o.index for o in scene.objects))
    c.counts.append((p, n))
    c.word("on")
    c.phrase([_article(scene.background), *scene.background.split(), "background"], (), kind="scene")
    c.word(".")
    return c.build()


def _caption_list(scene: Scene, rng: np.random.Generator, ids: dict) -> Caption | None:
    order = list(scene.objects)
    rng.shuffle(order)
    descs = []
    for o in order[:3]:
        d = unique_description(o, scene, rng)
        if d is not None:
            descs.append((o, d))
    if len(descs) < 2:
        return None
    c = _CaptionBuilder(ids, scene.image_id * 100)
    if rng.random() < 0.5:  # "a picture" is a noun phrase too: an entity without a box
        opener, link = (("a picture", "of"), ("an image", "showing"), ("a drawing", "with"))[int(rng.integers(3))]
        c.phrase(opener.split(), (), kind="picture")
        c.word(link)
    for k, (o, d) in enumerate(descs):
        if k == len(descs) - 1:
            c.word("and")
        elif k > 0:
            c.word(",")
        c.phrase(_indefinite(d), (o.index,))
    c.word(".")
    return c.build()


def _caption_group(scene: Scene, rng: np.random.Generator, ids: dict) -> Caption | None:
    groups = _groups(scene)
    if not groups:
        return None
    shape, colour, members = groups[int(rng.integers(len(groups)))]
    c = _CaptionBuilder(ids, scene.image_id * 100)
    words = [tx.NUMBER_WORDS[len(members)]] + ([colour] if colour else []) + [tx.plural(shape)]
    p = c.phrase(words, members)
    c.counts.append((p, len(members)))
    # a relation every member shares with one other object, when there is one
    others = [o for o in scene.objects if o.index not in members]
    rng.shuffle(others)
    for b in others:
        for rel in RELATIONS:
            if all(relation_holds(rel, scene.objects[m], b, scene.width) for m in members):
                db = unique_description(b, scene, rng)
                if db is None:
                    continue
                c.word("are " + RELATION_WORDS[rel][int(rng.integers(len(RELATION_WORDS[rel])))])
                pb = c.phrase(_indefinite(db), (b.index,))
                c.relations.append((p, rel, pb))
                c.word(".")
                return c.build()
    c.word("are in")
    c.phrase(SCENE_PHRASES[int(rng.integers(len(SCENE_PHRASES)))].split(), (), kind="picture")
    c.word(".")
    return c.build()


def captions(scene: Scene, rng: np.random.Generator, count: int = 5) -> list[Caption]:
    """`count` distinct captions; the same object keeps one entity id across them (the
    coreference chains of Flickr30k Entities)."""
    ids: dict = {}
    makers = [_caption_relation, _caption_list, _caption_group, _caption_count]
    out: list[Caption] = []
    seen: set[str] = set()
    for _attempt in range(60):
        if len(out) == count:
            break
        weights = np.array([0.45, 0.25, 0.15, 0.15])
        maker = makers[int(rng.choice(len(makers), p=weights))]
        cap = maker(scene, rng, ids)
        if cap is not None and cap.text not in seen:
            seen.add(cap.text)
            out.append(cap)
    while len(out) < count:  # scenes with little to say: numbered variants of the count caption
        cap = _caption_count(scene, rng, ids)
        words = ("in", "total", ",") + cap.words if len(out) % 2 else cap.words
        shift = len(words) - len(cap.words)
        cap = Caption(words, tuple(PhraseSpan(p.entity_id, p.phrase_type, p.start + shift, p.words, p.objects, p.scene)
                                   for p in cap.phrases), cap.relations, cap.counts)
        if cap.text in seen:
            words = cap.words[:-1] + ("here", ".")
            cap = Caption(words, cap.phrases, cap.relations, cap.counts)
        seen.add(cap.text)
        out.append(Caption((cap.words[0][0].upper() + cap.words[0][1:],) + cap.words[1:], cap.phrases,
                           cap.relations, cap.counts))
    return out


# --- questions ----------------------------------------------------------------------------------

def _q(text_words: list[str]) -> str:
    s = " ".join(text_words)
    return s[0].upper() + s[1:] + "?"


def _pick(rng: np.random.Generator, seq: Sequence[_T]) -> _T:
    return seq[int(rng.integers(len(seq)))]


def _colour_question(scene: Scene, rng: np.random.Generator) -> Question | None:
    o = _pick(rng, scene.objects)
    d = unique_description(o, scene, rng, without="colour")
    if d is None:
        return None
    form = int(rng.integers(3))
    if form == 0:
        text, qtype = _q(["what color is the", *d]), "what color is the"
    elif form == 1:
        text, qtype = _q(["what is the color of the", *d]), "what is the color of the"
    else:
        text, qtype = _q(["what color is the", *d, "in the picture"]), "what color is the"
    return Question(text, "colour", o.colour, qtype, "other", claim={"object": o.index})


def _shape_question(scene: Scene, rng: np.random.Generator) -> Question | None:
    o = _pick(rng, scene.objects)
    d = unique_description(o, scene, rng, generic_noun=True)
    if d is None:
        return None
    if rng.random() < 0.6:
        text, qtype = _q(["what shape is the", *d]), "what shape is the"
    else:
        text, qtype = _q(["what is the", *d]), "what is the"
    return Question(text, "shape", o.shape, qtype, "other", claim={"object": o.index})


def _count_question(scene: Scene, rng: np.random.Generator) -> Question:
    if rng.random() < 0.8:
        shape = _pick(rng, scene.objects).shape
    else:
        shape = _pick(rng, tx.SHAPES)
    if rng.random() < 0.15:
        shape = _pick(rng, ["polygon", "shape"])
    colour = _pick(rng, scene.objects).colour if rng.random() < 0.35 else None
    n = len(scene.matching(shape=shape, colour=colour))
    plural = ([colour] if colour else []) + tx.plural(shape).split()
    form = int(rng.integers(3))
    tail = [["are there"], ["are in the picture"], ["can you see"]][form]
    text = _q(["how many", *plural, *tail])
    return Question(text, "count", str(n), "how many", "number", claim={"shape": shape, "colour": colour})


def _exists_question(scene: Scene, rng: np.random.Generator) -> Question:
    want_yes = rng.random() < 0.5
    for _attempt in range(20):
        shape = _pick(rng, tx.SHAPES) if not want_yes else _pick(rng, scene.objects).shape
        colour = _pick(rng, list(tx.COLOURS)) if not want_yes else None
        if want_yes and rng.random() < 0.6:
            colour = _pick(rng, [o.colour for o in scene.objects if o.shape == shape])
        present = bool(scene.matching(shape=shape, colour=colour))
        if present == want_yes:
            break
    words = ([colour] if colour else []) + [shape]
    if rng.random() < 0.6:
        text, qtype = _q(["is there", _article(words[0]), *words]), "is there a"
    else:
        text, qtype = _q(["are there any", *words[:-1], tx.plural(shape)]), "are there any"
    return Question(text, "exists", "yes" if present else "no", qtype, "yes/no",
                    claim={"shape": shape, "colour": colour})


def _relation_question(scene: Scene, rng: np.random.Generator) -> Question | None:
    a, b = (scene.objects[int(i)] for i in rng.choice(len(scene.objects), 2, replace=False))
    rel = _pick(rng, RELATIONS)
    da, db = unique_description(a, scene, rng), unique_description(b, scene, rng)
    if da is None or db is None:
        return None
    if rng.random() < 0.65:
        holds = relation_holds(rel, a, b, scene.width)
        if rel == "next to":  # a clear "no": far apart, not merely outside the next-to margin
            opposite = not holds and box_gap(a, b) > 0.2 * scene.width
        else:
            opposite = relation_holds(OPPOSITE[rel], a, b, scene.width) and not holds
        if not (holds or opposite):
            return None
        text = _q(["is the", *da, _pick(rng, RELATION_WORDS[rel]), "the", *db])
        return Question(text, "relation", "yes" if holds else "no", "is the", "yes/no",
                        claim={"subject": a.index, "relation": rel, "object": b.index})
    # "what shape is left of the blue square?": exactly one object may satisfy it
    subjects = [o for o in scene.objects if relation_holds(rel, o, b, scene.width)]
    if len(subjects) != 1:
        return None
    text = _q(["what shape is", _pick(rng, RELATION_WORDS[rel]), "the", *db])
    return Question(text, "relation", subjects[0].shape, "what shape is", "other",
                    claim={"subject": subjects[0].index, "relation": rel, "object": b.index})


def _size_question(scene: Scene, rng: np.random.Generator) -> Question | None:
    if rng.random() < 0.6:
        o = _pick(rng, scene.objects)
        d = unique_description(o, scene, rng, without="size")
        if d is None:
            return None
        return Question(_q(["what size is the", *d]), "size", o.size, "what size is the", "other",
                        claim={"object": o.index})
    a, b = (scene.objects[int(i)] for i in rng.choice(len(scene.objects), 2, replace=False))
    ratio = a.area / b.area
    if 1 / 1.6 < ratio < 1.6:
        return None
    da, db = unique_description(a, scene, rng), unique_description(b, scene, rng)
    if da is None or db is None:
        return None
    word = _pick(rng, ["bigger", "larger"])
    return Question(_q(["is the", *da, word, "than the", *db]), "size", "yes" if ratio > 1 else "no",
                    "is the", "yes/no", claim={"bigger": a.index, "than": b.index})


QUESTION_MAKERS = {
    "colour": _colour_question, "shape": _shape_question, "count": _count_question,
    "exists": _exists_question, "relation": _relation_question, "size": _size_question,
}


# --- annotator noise and multiple choice --------------------------------------------------------

def _synonyms(q: Question) -> tuple[str, ...]:
    if q.kind == "colour":
        return tx.COLOUR_SYNONYMS[q.answer][1:]
    if q.kind in ("shape", "relation") and q.answer in tx.SHAPE_SYNONYMS:
        return tx.SHAPE_SYNONYMS[q.answer][1:] + tuple(tx.hypernyms(q.answer)[:1])
    if q.kind == "size" and q.answer in tx.SIZE_SYNONYMS:
        return tx.SIZE_SYNONYMS[q.answer][1:]
    if q.answer_type == "number":
        return (tx.NUMBER_WORDS[int(q.answer)],) if int(q.answer) < len(tx.NUMBER_WORDS) else ()
    return ()


def _wrong(q: Question, rng: np.random.Generator) -> str:
    if q.answer_type == "yes/no":
        return "no" if q.answer == "yes" else "yes"
    if q.answer_type == "number":
        return str(max(0, int(q.answer) + _pick(rng, [-1, 1, 1])))
    if q.kind == "colour":
        return _pick(rng, tx.COLOUR_CONFUSIONS[q.answer])
    if q.kind == "size":
        return _pick(rng, [s for s in tx.SIZES if s != q.answer])
    return _pick(rng, [s for s in tx.SHAPES if s != q.answer])


def annotate(q: Question, rng: np.random.Generator) -> Question:
    """Ten annotator answers: mostly the true answer, some synonyms (`oval`, `big`, `two`), a few
    mistakes; at least 5 agree exactly, so the majority answer is the true one."""
    n_exact = int(rng.choice([5, 6, 7, 8, 9, 10], p=[0.05, 0.1, 0.15, 0.25, 0.25, 0.2]))
    answers, conf = [q.answer] * n_exact, ["yes"] * n_exact
    syn = _synonyms(q)
    wrong = 0
    for _ in range(10 - n_exact):
        if syn and rng.random() < 0.6:
            answers.append(_pick(rng, syn))
            conf.append("yes")
        elif wrong < 3:  # mistakes stay a minority, as among careful annotators
            answers.append(_wrong(q, rng))
            conf.append(_pick(rng, ["maybe", "no", "yes"]))
            wrong += 1
        else:
            answers.append(q.answer)
            conf.append("yes")
    order = rng.permutation(10)
    return Question(q.text, q.kind, q.answer, q.question_type, q.answer_type,
                    tuple(answers[i] for i in order), tuple(conf[i] for i in order), q.answer, (), q.claim)


POPULAR_ANSWERS = ("yes", "no", "1", "2", "3", "red", "blue", "green", "circle", "square",
                   "large", "small", "4", "yellow", "triangle")
ALL_ANSWERS = (("yes", "no") + tuple(str(i) for i in range(7)) + tuple(tx.COLOURS) + tx.SHAPES + tx.SIZES)


def add_choices(q: Question, rng: np.random.Generator, num_choices: int = 18) -> Question:
    """The VQA v1 multiple-choice list: the correct answer, plausible answers of the same kind,
    popular answers and random ones, shuffled."""
    if q.answer_type == "yes/no":
        plausible = ["yes", "no"]
    elif q.answer_type == "number":
        plausible = [str(i) for i in range(7)]
    elif q.kind == "colour":
        plausible = list(tx.COLOURS)
    elif q.kind == "size":
        plausible = list(tx.SIZES)
    else:
        plausible = list(tx.SHAPES)
    choices = [q.multiple_choice_answer]
    for group, k in ((plausible, 3), (list(POPULAR_ANSWERS), 10), (list(ALL_ANSWERS), num_choices)):
        cand = [a for a in group if a not in choices]
        rng.shuffle(cand)
        choices.extend(cand[:min(k, num_choices - len(choices))])
    rng.shuffle(choices)
    return Question(q.text, q.kind, q.answer, q.question_type, q.answer_type, q.answers, q.confidences,
                    q.multiple_choice_answer, tuple(choices), q.claim)


def questions(scene: Scene, rng: np.random.Generator, count: int) -> list[Question]:
    """Up to `count` distinct questions of mixed kinds, each with answers and choices."""
    kinds = list(QUESTION_MAKERS)
    out: list[Question] = []
    seen: set[str] = set()
    for _attempt in range(count * 8):
        if len(out) == count:
            break
        kind = kinds[len(out) % len(kinds)] if rng.random() < 0.5 else _pick(rng, kinds)
        q = QUESTION_MAKERS[kind](scene, rng)
        if q is None or q.text in seen:
            continue
        seen.add(q.text)
        out.append(add_choices(annotate(q, rng), rng))
    return out
