"""The vocabulary of the synthetic world: shape nouns with an is-a taxonomy, adjectives
(colours, sizes, textures), their synonyms, WordNet-style synset names and rarity weights.

Everything the generator says is drawn from these tables, and every test checks text against
them, so this file is the single source of truth of what a word means in the world.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- nouns -------------------------------------------------------------------------------------

SHAPES: tuple[str, ...] = (
    "square", "rectangle", "circle", "ellipse", "triangle",
    "pentagon", "hexagon", "star", "heart", "cross",
)

# direct is-a parents (child -> parents); shape nouns and their more general words
HYPERNYM_PARENTS: dict[str, tuple[str, ...]] = {
    "square": ("rectangle",),
    "rectangle": ("quadrilateral",),
    "quadrilateral": ("polygon",),
    "triangle": ("polygon",),
    "pentagon": ("polygon",),
    "hexagon": ("polygon",),
    "star": ("polygon",),
    "cross": ("figure",),
    "heart": ("figure",),
    "circle": ("ellipse",),
    "ellipse": ("round shape",),
    "round shape": ("shape",),
    "polygon": ("shape",),
    "figure": ("shape",),
    "shape": ("object",),
}

# words people use for a shape (first = canonical name); used in captions and noisy answers
SHAPE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "square": ("square", "box"),
    "rectangle": ("rectangle", "oblong"),
    "circle": ("circle", "disc", "disk"),
    "ellipse": ("ellipse", "oval"),
    "triangle": ("triangle",),
    "pentagon": ("pentagon",),
    "hexagon": ("hexagon",),
    "star": ("star",),
    "heart": ("heart",),
    "cross": ("cross", "plus sign"),
}

IRREGULAR_PLURALS = {"box": "boxes", "cross": "crosses", "plus sign": "plus signs", "disk": "disks"}

# --- adjectives --------------------------------------------------------------------------------

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 220, 40),
    "purple": (140, 50, 180),
    "orange": (250, 140, 20),
    "pink": (250, 150, 200),
    "brown": (130, 80, 40),
    "white": (250, 250, 250),
    "black": (20, 20, 20),
}
COLOUR_SYNONYMS: dict[str, tuple[str, ...]] = {
    "red": ("red", "dark red", "crimson"),
    "green": ("green", "dark green", "lime"),
    "blue": ("blue", "dark blue", "navy"),
    "yellow": ("yellow", "gold"),
    "purple": ("purple", "violet"),
    "orange": ("orange", "dark orange"),
    "pink": ("pink", "light pink"),
    "brown": ("brown", "tan"),
    "white": ("white", "off white"),
    "black": ("black", "dark"),
}
# colours annotators confuse (for wrong noisy answers)
COLOUR_CONFUSIONS: dict[str, tuple[str, ...]] = {
    "red": ("orange", "pink"), "green": ("yellow", "blue"), "blue": ("purple", "black"),
    "yellow": ("orange", "white"), "purple": ("blue", "pink"), "orange": ("red", "yellow"),
    "pink": ("red", "purple"), "brown": ("orange", "black"), "white": ("yellow",),
    "black": ("brown", "blue"),
}

SIZES: tuple[str, ...] = ("small", "medium", "large")
# object side length range in pixels for a 128-pixel image (scaled with the image)
SIZE_RANGES: dict[str, tuple[float, float]] = {"small": (0.12, 0.17), "medium": (0.21, 0.27), "large": (0.32, 0.40)}
SIZE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium", "medium sized", "mid sized"),
    "large": ("large", "big", "huge"),
}

TEXTURES: tuple[str, ...] = ("plain", "striped", "dotted", "checkered")
TEXTURE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "plain": ("plain", "solid"),
    "striped": ("striped", "stripy"),
    "dotted": ("dotted", "spotted", "polka dot"),
    "checkered": ("checkered", "checked"),
}

ADJECTIVES: tuple[str, ...] = tuple(COLOURS) + SIZES + TEXTURES

# --- synsets (Visual Genome names objects and attributes with WordNet synset names) ------------

SHAPE_SYNSETS: dict[str, str] = {
    "square": "square.n.01", "rectangle": "rectangle.n.01", "circle": "circle.n.01",
    "ellipse": "ellipse.n.01", "triangle": "triangle.n.01", "pentagon": "pentagon.n.01",
    "hexagon": "hexagon.n.01", "star": "star.n.03", "heart": "heart.n.07", "cross": "cross.n.01",
}
ADJECTIVE_SYNSETS: dict[str, str] = {
    **{c: f"{c}.s.01" for c in COLOURS},
    "small": "small.a.01", "medium": "medium.s.01", "large": "large.a.01",
    "plain": "plain.a.01", "striped": "striped.s.01", "dotted": "dotted.s.01",
    "checkered": "checkered.s.01",
}

# --- controlled rarity --------------------------------------------------------------------------


@dataclass(frozen=True)
class Rarity:
    """Sampling weights per split family, so that transfer between the Genome-like split and the
    VQA/caption images has something to measure (SVLR Fig. 5; zero-shot VQA)."""

    main_shape: dict[str, float]
    genome_shape: dict[str, float]
    main_colour: dict[str, float]
    genome_colour: dict[str, float]
    main_texture: dict[str, float]
    genome_texture: dict[str, float]
    # (colour, shape) pairs that never occur in the training images of the VQA/caption set
    unseen_in_vqa_train: frozenset[tuple[str, str]]


def _weights(names: tuple[str, ...] | list[str], overrides: dict[str, float]) -> dict[str, float]:
    return {n: overrides.get(n, 1.0) for n in names}


# rare in the Genome-like split, frequent in VQA images
GENOME_RARE_NOUNS = ("hexagon", "heart")
GENOME_RARE_ADJECTIVES = ("pink", "checkered")
# frequent in the Genome-like split, rare in VQA images
VQA_RARE_NOUNS = ("pentagon", "cross")
VQA_RARE_ADJECTIVES = ("brown",)

RARITY = Rarity(
    main_shape=_weights(SHAPES, {**{n: 1.6 for n in GENOME_RARE_NOUNS}, **{n: 0.12 for n in VQA_RARE_NOUNS}}),
    genome_shape=_weights(SHAPES, {**{n: 0.06 for n in GENOME_RARE_NOUNS}, **{n: 1.8 for n in VQA_RARE_NOUNS}}),
    main_colour=_weights(tuple(COLOURS), {"pink": 1.6, "brown": 0.12}),
    genome_colour=_weights(tuple(COLOURS), {"pink": 0.06, "brown": 1.8}),
    main_texture=_weights(TEXTURES, {"checkered": 1.5}),
    genome_texture=_weights(TEXTURES, {"checkered": 0.08}),
    unseen_in_vqa_train=frozenset({("red", "star"), ("blue", "heart"), ("green", "triangle"), ("yellow", "circle")}),
)


def hypernyms(word: str) -> list[str]:
    """All more general words of `word`, nearest first (square -> rectangle, ..., object)."""
    out: list[str] = []
    frontier = list(HYPERNYM_PARENTS.get(word, ()))
    while frontier:
        w = frontier.pop(0)
        if w not in out:
            out.append(w)
            frontier.extend(HYPERNYM_PARENTS.get(w, ()))
    return out


def is_a(shape: str, word: str) -> bool:
    """True when an object of `shape` may be called `word` (itself, a synonym or a hypernym)."""
    return word in SHAPE_SYNONYMS.get(shape, (shape,)) or word == shape or word in hypernyms(shape)


def plural(noun: str) -> str:
    """English plural of a shape word."""
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "x", "sh", "ch")):
        return noun + "es"
    return noun + "s"


NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")


def hypernym_table() -> dict[str, list[str]]:
    """Direct parents per word in the JSON layout of the hypernym file ({"child": ["parent"]})."""
    return {child: list(parents) for child, parents in HYPERNYM_PARENTS.items()}
