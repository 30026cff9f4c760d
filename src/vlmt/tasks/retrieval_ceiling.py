"""The retrieval ceiling of the synthetic world: an oracle that knows every test picture's true
scene and matches a caption to the pictures that make it true.

Why: a caption of the world ("a red square is left of a circle", "three shapes on a gray
background") is often true of several pictures, so no retriever can reach R@1 = 100 %. The
oracle measures what is reachable: it rebuilds the world's scenes and captions from the size
and seed that `world.json` records (every scene and caption comes from its image id's own
random stream, `vlmt.data.synth.world.build`), checks that the captions are the ones the
caption file holds, reads each caption's claims with the generator's own grammar
(`vlmt.data.synth.language`, `vlmt.data.synth.taxonomy`) and scores a pair 1 when the scene
satisfies every claim, else 0.

Two readings of a caption:

- `literal`: what the words say. A singular noun phrase ("a big striped square") is true of some
  object with those properties (the noun may be a synonym or a more general word, as
  `taxonomy.is_a` allows); the phrases of one caption name different objects; a relation holds
  between the objects named, by the scene's geometry (`scene.relation_holds`); a counted phrase
  ("three shapes", "two red squares") is exact: the picture holds that many objects (of that
  shape and colour); a background phrase names the background.
- `generated` (the default ceiling): also the generator's presupposition that a singular phrase
  picks out exactly one object of the picture (`language.unique_description` only writes such
  phrases). A retriever that has learned how the world's captions are written can use it.

A third oracle, `generator_scores`, goes beyond truth: it estimates how likely the generator
is to write each caption for each picture, P(c | i), by drawing the picture's captions many
times from fresh random streams, and scores a pair by P(c | i) / sum over the split's pictures
i' of P(c | i'): the posterior that the caption was written for that picture. Ranked this way
both directions are Bayes-optimal for a uniform prior over the split's pictures, so no scorer of
pairs can expect more; a scorer trained with an in-batch softmax learns the same quantity (up
to the caption's marginal, which it can learn from training data). It is an estimate: pairs the
draws never produced keep a small floor when the caption is true of the picture.

Ties are many (the scores are 0 or 1), and the official metric counts a tie against the query
(`vlmt.metrics.retrieval`), which would make the ceiling depend on an arbitrary rule. The
ceiling's Recall@K is instead the expected recall when tied items are put in a uniformly random
order (`expected_recall`), computed exactly, not sampled.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from math import comb
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vlmt.data.synth import taxonomy as tx
from vlmt.data.synth.language import Caption, captions
from vlmt.data.synth.scene import Scene, SceneObject, relation_holds
from vlmt.data.synth.world import DATASET_NAME, WorldSize, build, world_size
from vlmt.errors import DataError
from vlmt.metrics.retrieval import t2i_ranks

READINGS = ("generated", "literal")
ARTICLES = ("a", "an")
COUNT_NOUNS = ("shapes", "objects", "figures")

# word(s) -> (attribute kind, canonical value); multi-word synonyms ("medium sized") are matched first
_ADJECTIVES: dict[str, tuple[str, str]] = {
    **{c: ("colour", c) for c in tx.COLOURS},
    **{w: ("size", s) for s, ws in tx.SIZE_SYNONYMS.items() for w in ws},
    **{w: ("texture", t) for t, ws in tx.TEXTURE_SYNONYMS.items() for w in ws},
}
_NOUNS: frozenset[str] = frozenset(
    {w for ws in tx.SHAPE_SYNONYMS.values() for w in ws} | set(tx.HYPERNYM_PARENTS)
    | {h for s in tx.SHAPES for h in tx.hypernyms(s)})
_PLURAL_SHAPES: dict[str, str] = {tx.plural(s): s for s in tx.SHAPES}
_NUMBERS: dict[str, int] = {w: n for n, w in enumerate(tx.NUMBER_WORDS)}


@dataclass(frozen=True)
class Description:
    """A singular noun phrase: its noun (any word `taxonomy.is_a` accepts) and the attributes it
    states (None: not said)."""

    noun: str
    colour: str | None = None
    size: str | None = None
    texture: str | None = None

    def fits(self, obj: SceneObject) -> bool:
        return (tx.is_a(obj.shape, self.noun) and (self.colour is None or obj.colour == self.colour)
                and (self.size is None or obj.size == self.size)
                and (self.texture is None or obj.texture == self.texture))


@dataclass(frozen=True)
class Count:
    """A counted phrase: `number` objects in all (shape None), or of one shape (and colour)."""

    number: int
    shape: str | None = None
    colour: str | None = None

    def members(self, scene: Scene) -> list[SceneObject]:
        return [o for o in scene.objects if (self.shape is None or o.shape == self.shape)
                and (self.colour is None or o.colour == self.colour)]


@dataclass(frozen=True)
class Claims:
    """Everything a caption states. `relations` link phrase indices of `descriptions` (object
    side) to a subject: ("object", i) a description or ("group", i) a count."""

    descriptions: tuple[Description, ...] = ()
    counts: tuple[Count, ...] = ()
    background: str | None = None
    relations: tuple[tuple[tuple[str, int], str, int], ...] = ()


def _words(phrase_words: Sequence[str]) -> list[str]:
    return [w.lower() for w in phrase_words]


def parse_description(words: Sequence[str]) -> Description:
    """The properties of a singular noun phrase ("a big striped square", "an oval"): article,
    adjectives (size, texture, colour synonyms of the taxonomy), then a noun."""
    ws = _words(words)
    if ws and ws[0] in ARTICLES:
        ws = ws[1:]
    noun = next((" ".join(ws[i:]) for i in range(len(ws)) if " ".join(ws[i:]) in _NOUNS), None)
    if noun is None:
        raise ValueError(f"no shape noun at the end of {' '.join(words)!r}")
    rest = ws[:len(ws) - len(noun.split())]
    props: dict[str, str] = {}
    i = 0
    while i < len(rest):
        for span in (2, 1):
            word = " ".join(rest[i:i + span])
            if len(rest[i:i + span]) == span and word in _ADJECTIVES:
                kind, value = _ADJECTIVES[word]
                if kind in props:
                    raise ValueError(f"two {kind} words in {' '.join(words)!r}")
                props[kind] = value
                i += span
                break
        else:
            raise ValueError(f"unknown word {rest[i]!r} in {' '.join(words)!r}")
    return Description(noun=noun, **props)


def parse_count(words: Sequence[str]) -> Count:
    """A counted phrase: "four shapes", "three colorful objects" (all objects) or "two red
    squares" (the objects of one shape, and colour when said)."""
    ws = _words(words)
    if not ws or ws[0] not in _NUMBERS:
        raise ValueError(f"a counted phrase starts with a number word: {' '.join(words)!r}")
    number, rest = _NUMBERS[ws[0]], ws[1:]
    if rest and rest[-1] in COUNT_NOUNS and all(w == "colorful" for w in rest[:-1]):
        return Count(number)
    noun = next((" ".join(rest[i:]) for i in range(len(rest)) if " ".join(rest[i:]) in _PLURAL_SHAPES), None)
    if noun is None:
        raise ValueError(f"no plural shape noun in {' '.join(words)!r}")
    colours = rest[:len(rest) - len(noun.split())]
    if len(colours) > 1 or (colours and colours[0] not in tx.COLOURS):
        raise ValueError(f"a group is named by at most one colour: {' '.join(words)!r}")
    return Count(number, _PLURAL_SHAPES[noun], colours[0] if colours else None)


def caption_claims(caption: Caption) -> Claims:
    """What a generated caption states, read from its phrases with the world's grammar: object
    phrases, counted phrases, the background, and the relations between phrases."""
    counted = dict(caption.counts)
    descriptions: list[Description] = []
    counts: list[Count] = []
    background = None
    slot: dict[int, tuple[str, int]] = {}
    for k, p in enumerate(caption.phrases):
        if p.scene:  # "a light blue background"
            ws = _words(p.words)
            if ws[0] in ARTICLES:
                ws = ws[1:]
            if ws[-1:] != ["background"]:
                raise ValueError(f"a scene phrase names a background: {' '.join(p.words)!r}")
            background = " ".join(ws[:-1])
        elif k in counted:
            count = parse_count(p.words)
            if count.number != counted[k]:
                raise ValueError(f"{' '.join(p.words)!r} says {count.number}, its record {counted[k]}")
            slot[k] = ("group", len(counts))
            counts.append(count)
        elif p.objects:
            slot[k] = ("object", len(descriptions))
            descriptions.append(parse_description(p.words))
        # else: "the picture", "a drawing": an entity without a box states nothing
    relations = []
    for a, rel, b in caption.relations:
        kind, index = slot[b]
        if kind != "object":
            raise ValueError(f"the object of a relation is a singular phrase (caption {caption.text!r})")
        relations.append((slot[a], rel, index))
    return Claims(tuple(descriptions), tuple(counts), background, tuple(relations))


def satisfies(claims: Claims, scene: Scene, *, reading: str = "generated") -> bool:
    """Whether every claim holds in the scene under `reading` ("generated" or "literal")."""
    if reading not in READINGS:
        raise ValueError(f"reading must be one of {READINGS}, got {reading!r}")
    if claims.background is not None and scene.background != claims.background:
        return False
    groups = [c.members(scene) for c in claims.counts]
    if any(len(g) != c.number for g, c in zip(groups, claims.counts)):
        return False
    candidates = [[o for o in scene.objects if d.fits(o)] for d in claims.descriptions]
    if reading == "generated" and any(len(c) != 1 for c in candidates):
        return False
    for chosen in itertools.product(*candidates):  # one object per phrase, all different
        if len({o.index for o in chosen}) != len(chosen):
            continue
        if all(_relation(subject, rel, chosen[obj], chosen, groups, scene)
               for subject, rel, obj in claims.relations):
            return True
    return False


def _relation(subject: tuple[str, int], rel: str, obj: SceneObject, chosen: Sequence[SceneObject],
              groups: list[list[SceneObject]], scene: Scene) -> bool:
    kind, index = subject
    members = [chosen[index]] if kind == "object" else groups[index]
    return bool(members) and all(relation_holds(rel, m, obj, scene.width) for m in members)


def oracle_scores(scenes: Sequence[Scene], claims: Sequence[Claims], *, reading: str = "generated") -> np.ndarray:
    """(images, captions) matrix: 1.0 where the scene satisfies the caption's claims, else 0.0."""
    return np.array([[float(satisfies(c, s, reading=reading)) for c in claims] for s in scenes], dtype=np.float64)


def _tied_recall(above: int, tied: int, true_tied: int, k: int) -> float:
    """P(at least one of `true_tied` items among `tied` equal-scored ones lands in the top k) when
    `above` items score higher and the tied ones are in a uniformly random order."""
    room = k - above
    if room <= 0 or true_tied == 0:
        return 0.0
    if room >= tied:
        return 1.0
    return 1.0 - comb(tied - true_tied, room) / comb(tied, room)


def expected_recall(scores: np.ndarray, captions_per_image: int, ks: Sequence[int] = (1, 5, 10)
                    ) -> dict[str, dict[str, float]]:
    """Recall@K in percent both ways, expected over a uniformly random order of tied scores;
    caption j belongs to image j // captions_per_image (as `vlmt.metrics.retrieval`)."""
    scores = np.asarray(scores)
    n_img, n_cap = scores.shape
    if n_cap != n_img * captions_per_image:
        raise ValueError(f"{n_cap} captions for {n_img} images x {captions_per_image}")
    owner = np.arange(n_cap) // captions_per_image
    i2t = {k: 0.0 for k in ks}
    for i in range(n_img):
        row, own = scores[i], scores[i, owner == i]
        best = own.max()
        above, tied = int((row > best).sum()), int((row == best).sum())
        for k in ks:
            i2t[k] += _tied_recall(above, tied, int((own == best).sum()), k)
    t2i = {k: 0.0 for k in ks}
    for j in range(n_cap):
        col, best = scores[:, j], scores[owner[j], j]
        above, tied = int((col > best).sum()), int((col == best).sum())
        for k in ks:
            t2i[k] += _tied_recall(above, tied, 1, k)
    return {"i2t": {f"r{k}": 100.0 * v / n_img for k, v in i2t.items()},
            "t2i": {f"r{k}": 100.0 * v / n_cap for k, v in t2i.items()}}


CAPTION_KINDS = ("relation", "count", "objects")


def caption_kind(claims: Claims) -> str:
    """What a world caption asks of a picture: "relation" (two things placed relative to each
    other), "count" (how many shapes, of a kind or in all), or "objects" (which objects are there)."""
    if claims.relations:
        return "relation"
    return "count" if claims.counts else "objects"


def caption_hits(scores: np.ndarray, captions_per_image: int, k: int, *, expected: bool = False) -> np.ndarray:
    """(captions,) caption -> image Recall@k of each caption query, in [0, 1]: with the official
    metric (a tied competitor ranks above the true image) or, `expected`, over a uniformly random
    order of tied scores (the oracle's reading). Their mean x 100 is t2i R@k."""
    scores = np.asarray(scores)
    n_img, n_cap = scores.shape
    if n_cap != n_img * captions_per_image:
        raise ValueError(f"{n_cap} captions for {n_img} images x {captions_per_image}")
    if not expected:
        return (t2i_ranks(scores, captions_per_image) < k).astype(np.float64)
    own = scores[np.arange(n_cap) // captions_per_image, np.arange(n_cap)]
    above = (scores > own).sum(axis=0)
    tied = (scores == own).sum(axis=0)
    return np.array([_tied_recall(int(a), int(t), 1, k) for a, t in zip(above, tied)])


def generator_scores(scenes: Sequence[Scene], texts: Sequence[str], truth: np.ndarray, *, samples: int = 200,
                     seed: int = 0) -> np.ndarray:
    """(images, captions) posterior that caption j was written for picture i, from `samples`
    fresh draws of each picture's 5 captions (streams [seed, 99, image_id, k], apart from the
    world's own): P(c | i) is the share of draws that wrote c, plus 0.5 / samples where the
    caption is true of the picture (`truth`, the generated reading), normalised over pictures."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    columns: dict[str, list[int]] = {}
    for j, text in enumerate(texts):
        columns.setdefault(text, []).append(j)
    counts = np.zeros((len(scenes), len(texts)), dtype=np.float64)
    for row, scene in enumerate(scenes):
        for k in range(samples):
            for cap in captions(scene, np.random.default_rng([seed, 99, scene.image_id, k])):
                for j in columns.get(cap.text, ()):
                    counts[row, j] += 1.0
    likelihood = (counts + 0.5 * truth) / samples
    return likelihood / np.maximum(likelihood.sum(axis=0, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Ceiling:
    """The oracle's expected Recall@K (percent) on one split of one world, per reading, with the
    mean number of pictures each caption is true of and of captions each picture makes true."""

    world: str
    seed: int
    split: str
    images: int
    captions: int
    recall: dict[str, dict[str, dict[str, float]]]   # reading -> i2t / t2i -> rK
    images_per_caption: dict[str, float]             # reading -> mean pictures a caption is true of
    captions_per_picture: dict[str, float]           # reading -> mean captions a picture makes true

    def to_json(self) -> dict:
        return {"world": self.world, "seed": self.seed, "split": self.split, "images": self.images,
                "captions": self.captions, "recall": self.recall, "images_per_caption": self.images_per_caption,
                "captions_per_picture": self.captions_per_picture,
                "ties": "expected recall under a uniformly random order of equal scores"}


def world_ceiling(size: str | WorldSize, seed: int = 0, *, split: str = "test", captions_per_image: int = 5,
                  name: str | None = None, generator_samples: int = 0) -> Ceiling:
    """The ceiling on `split` of the world of this size and seed: both truth readings, and with
    `generator_samples` > 0 the generator posterior too (as reading "generator")."""
    spec = world_size(size) if isinstance(size, str) else size
    w = build(spec, seed)
    ids = w.main_ids(split)
    scenes = [w.scenes[i] for i in ids]
    kept = [c for i in ids for c in w.captions[i][:captions_per_image]]
    claims = [caption_claims(c) for c in kept]
    recall, per_caption, per_picture = {}, {}, {}
    for reading in READINGS:
        scores = oracle_scores(scenes, claims, reading=reading)
        recall[reading] = expected_recall(scores, captions_per_image)
        per_caption[reading] = round(float(scores.sum(axis=0).mean()), 3)
        per_picture[reading] = round(float(scores.sum(axis=1).mean()), 3)
        if reading == "generated" and generator_samples > 0:
            posterior = generator_scores(scenes, [c.text for c in kept], scores, samples=generator_samples)
            recall["generator"] = expected_recall(posterior, captions_per_image)
    label = name or (size if isinstance(size, str) else "custom")
    return Ceiling(label, seed, split, len(scenes), len(claims), recall, per_caption, per_picture)


def folder_ceiling(root: str | Path, *, split: str = "test", captions_per_image: int = 5,
                   generator_samples: int = 0) -> Ceiling:
    """The ceiling of a generated world folder: size and seed from its `world.json`; the rebuilt
    captions must be the ones its caption file holds (else the folder was made by other code,
    and its scenes cannot be known)."""
    root = Path(root)
    manifest_path = root / "world.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in manifest["spec"].items()}
        spec = WorldSize(**fields)
        seed = int(manifest["seed"])
    except OSError as e:
        raise DataError(manifest_path, f"cannot be read ({e.strerror or e})") from None
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(manifest_path, f"is not a world manifest ({e})", field="spec / seed") from None
    w = build(spec, seed)
    captions_path = root / f"dataset_{DATASET_NAME}.json"
    try:
        images = json.loads(captions_path.read_text(encoding="utf-8"))["images"]
    except OSError as e:
        raise DataError(captions_path, f"cannot be read ({e.strerror or e})") from None
    except (ValueError, KeyError) as e:
        raise DataError(captions_path, f"is not a caption file ({e})") from None
    for image in images:
        image_id = image.get("cocoid")
        if image.get("split") != split:
            continue
        rebuilt = [c.text for c in w.captions.get(image_id, [])]
        raw = [s.get("raw") for s in image.get("sentences", [])]
        if raw != rebuilt:
            raise DataError(captions_path, "its captions are not those the world's size and seed generate "
                                           "(made by another version of the generator?)",
                            record=f"image {image_id}", field="sentences")
    return world_ceiling(spec, seed, split=split, captions_per_image=captions_per_image,
                         name=str(manifest.get("size", "custom")), generator_samples=generator_samples)
