"""Scene graphs of the synthetic world: objects with shape, colour, size, texture and a box, and
the spatial relations between them, computed from the boxes (never stored separately, so what
the language says can always be re-checked against geometry)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlmt.data.synth import taxonomy as tx

Box = tuple[float, float, float, float]

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "gray": (190, 190, 190),
    "beige": (225, 212, 185),
    "light blue": (180, 205, 225),
}
RELATIONS = ("left of", "right of", "above", "below", "next to")


@dataclass(frozen=True)
class SceneObject:
    """One drawn object; `box` is the pixel x1, y1, x2, y2 of its outline; objects later in the
    scene's list are drawn on top (they may partly occlude earlier ones)."""

    index: int
    shape: str
    colour: str
    size: str
    texture: str
    box: Box
    rotation: float = 0.0

    @property
    def attributes(self) -> tuple[str, str, str]:
        return (self.colour, self.size, self.texture)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)


@dataclass(frozen=True)
class Scene:
    """One image: its id, size, background and objects (drawing order)."""

    image_id: int
    width: int
    height: int
    background: str
    objects: tuple[SceneObject, ...]

    def matching(self, *, shape: str | None = None, colour: str | None = None, size: str | None = None,
                 texture: str | None = None) -> list[SceneObject]:
        """Objects that fit every given property (`shape` may be any synonym or hypernym)."""
        return [o for o in self.objects
                if (shape is None or tx.is_a(o.shape, shape)) and (colour is None or o.colour == colour)
                and (size is None or o.size == size) and (texture is None or o.texture == texture)]


# --- relations, from geometry only --------------------------------------------------------------

def _overlap_tolerance(a: float, b: float) -> float:
    return 0.2 * min(a, b)


def left_of(a: SceneObject, b: SceneObject) -> bool:
    """`a` lies (almost entirely) to the left of `b`."""
    return a.box[2] <= b.box[0] + _overlap_tolerance(a.width, b.width)


def above(a: SceneObject, b: SceneObject) -> bool:
    """`a` lies (almost entirely) above `b` (image y grows downwards)."""
    return a.box[3] <= b.box[1] + _overlap_tolerance(a.height, b.height)


def box_gap(a: SceneObject, b: SceneObject) -> float:
    """Pixel distance between the two boxes (0 when they touch or overlap)."""
    dx = max(b.box[0] - a.box[2], a.box[0] - b.box[2], 0.0)
    dy = max(b.box[1] - a.box[3], a.box[1] - b.box[3], 0.0)
    return float(max(dx, dy))


def next_to(a: SceneObject, b: SceneObject, image_width: int) -> bool:
    """The boxes touch, overlap, or are at most 6% of the image width apart."""
    return a.index != b.index and box_gap(a, b) <= 0.06 * image_width


def relation_holds(relation: str, a: SceneObject, b: SceneObject, image_width: int) -> bool:
    """Whether `a <relation> b` is true in the picture."""
    if a.index == b.index:
        return False
    if relation == "left of":
        return left_of(a, b)
    if relation == "right of":
        return left_of(b, a)
    if relation == "above":
        return above(a, b)
    if relation == "below":
        return above(b, a)
    if relation == "next to":
        return next_to(a, b, image_width)
    raise ValueError(f"unknown relation {relation!r}")


def relations(scene: Scene) -> list[tuple[int, str, int]]:
    """Every (subject index, relation, object index) that holds in the scene."""
    out = []
    for a in scene.objects:
        for b in scene.objects:
            for r in RELATIONS:
                if relation_holds(r, a, b, scene.width):
                    out.append((a.index, r, b.index))
    return out


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _intersection(a: Box, b: Box) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


# --- sampling -----------------------------------------------------------------------------------

def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _box_for(rng: np.random.Generator, shape: str, size: str, image_size: int) -> Box | None:
    lo, hi = tx.SIZE_RANGES[size]
    side = float(rng.uniform(lo, hi)) * image_size
    w = h = side
    if shape in ("rectangle", "ellipse"):  # elongated, same area as the square of `side`
        long, short = side * 1.35, side / 1.35
        w, h = (long, short) if rng.random() < 0.5 else (short, long)
    if w >= image_size - 2 or h >= image_size - 2:
        return None
    x1 = float(rng.uniform(1, image_size - 1 - w))
    y1 = float(rng.uniform(1, image_size - 1 - h))
    return (round(x1, 1), round(y1, 1), round(x1 + w, 1), round(y1 + h, 1))


def sample_scene(rng: np.random.Generator, *, image_id: int, image_size: int, family: str,
                 banned_pairs: frozenset[tuple[str, str]] = frozenset(),
                 min_objects: int = 2, max_objects: int = 6) -> Scene:
    """Sample a scene. `family` is "main" (VQA / captions / grounding images) or "genome" (the
    disjoint Visual Genome-like images); each draws shapes and adjectives with its own rarity
    weights. `banned_pairs` are (colour, shape) combinations that must not occur.

    Occlusion is allowed but bounded: at most 30% of the smaller of two objects' boxes may be
    covered, so every object stays recognisable, as annotated objects are in real photos."""
    r = tx.RARITY
    shapes_w, colours_w, textures_w = (
        (r.main_shape, r.main_colour, r.main_texture) if family == "main"
        else (r.genome_shape, r.genome_colour, r.genome_texture))
    n = int(rng.integers(min_objects, max_objects + 1))
    objects: list[SceneObject] = []
    for _ in range(n):
        for _attempt in range(40):
            shape = _pick(rng, shapes_w)
            colour = _pick(rng, colours_w)
            if (colour, shape) in banned_pairs:
                continue
            size = tx.SIZES[int(rng.integers(len(tx.SIZES)))]
            texture = _pick(rng, textures_w)
            box = _box_for(rng, shape, size, image_size)
            if box is None:
                continue
            area = (box[2] - box[0]) * (box[3] - box[1])
            ok = all(_intersection(box, o.box) <= 0.3 * min(area, o.area) for o in objects)
            if ok:
                rotation = float(rng.uniform(-12, 12)) if shape in ("triangle", "pentagon", "hexagon", "star") else 0.0
                objects.append(SceneObject(len(objects), shape, colour, size, texture, box, round(rotation, 1)))
                break
    while len(objects) < min_objects:  # crowded draw: restart with a fresh draw of the same rng
        return sample_scene(rng, image_id=image_id, image_size=image_size, family=family,
                            banned_pairs=banned_pairs, min_objects=min_objects, max_objects=max_objects)
    background = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    return Scene(image_id, image_size, image_size, background, tuple(objects))
