"""Draw a scene to pixels with PIL: filled shapes with a texture and an outline, drawn in the
scene's order so later objects may partly cover earlier ones. Drawn at twice the size and
downsampled, so edges are anti-aliased like a photo rather than a bitmap."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw

from vlmt.data.synth import taxonomy as tx
from vlmt.data.synth.scene import BACKGROUNDS, Box, Scene, SceneObject

SUPERSAMPLE = 2


def _unit_outline(shape: str, rotation: float) -> list[tuple[float, float]]:
    """Outline points of a shape in [0, 1]^2 (rotated, then stretched to fill the unit square
    so the object's box is tight)."""
    pts: list[tuple[float, float]]
    if shape in ("square", "rectangle"):
        pts = [(0, 0), (1, 0), (1, 1), (0, 1)]
    elif shape in ("circle", "ellipse"):
        pts = [(0.5 + 0.5 * math.cos(t), 0.5 + 0.5 * math.sin(t))
               for t in np.linspace(0, 2 * math.pi, 48, endpoint=False)]
    elif shape == "cross":
        a, b = 0.33, 0.67
        pts = [(a, 0), (b, 0), (b, a), (1, a), (1, b), (b, b), (b, 1), (a, 1), (a, b), (0, b), (0, a), (a, a)]
    elif shape == "heart":
        pts = []
        for t in np.linspace(0, 2 * math.pi, 60, endpoint=False):
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((x, -y))
    else:
        sides = {"triangle": 3, "pentagon": 5, "hexagon": 6, "star": 10}[shape]
        pts = []
        for k in range(sides):
            t = -math.pi / 2 + 2 * math.pi * k / sides + math.radians(rotation)
            radius = 0.42 if shape == "star" and k % 2 else 1.0
            pts.append((radius * math.cos(t), radius * math.sin(t)))
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    return [((x - x0) / (x1 - x0), (y - y0) / (y1 - y0)) for x, y in pts]


def outline(obj: SceneObject, scale: float = 1.0) -> list[tuple[float, float]]:
    """The object's outline in pixel coordinates (times `scale`)."""
    x1, y1, x2, y2 = (v * scale for v in obj.box)
    return [(x1 + u * (x2 - x1), y1 + v * (y2 - y1)) for u, v in _unit_outline(obj.shape, obj.rotation)]


def _shade(rgb: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    """Darker (amount < 0) or lighter (amount > 0) version of a colour."""
    target = 255 if amount > 0 else 0
    a = abs(amount)
    return tuple(int(round(c + (target - c) * a)) for c in rgb)  # type: ignore[return-value]


def _texture_layer(obj: SceneObject, size: tuple[int, int], box: Box) -> Image.Image:
    base = tx.COLOURS[obj.colour]
    mark = _shade(base, 0.55) if sum(base) < 200 else _shade(base, -0.45)
    layer = Image.new("RGB", size, base)
    if obj.texture == "plain":
        return layer
    draw = ImageDraw.Draw(layer)
    x1, y1, x2, y2 = box
    step = max(6.0, min(x2 - x1, y2 - y1) / 4)
    if obj.texture == "striped":
        width = max(2, int(step / 2.5))
        t = x1 - (y2 - y1)
        while t < x2:
            draw.line([(t, y2), (t + (y2 - y1), y1)], fill=mark, width=width)
            t += step
    elif obj.texture == "dotted":
        r = step / 4.5
        y = y1 + step / 2
        while y < y2:
            x = x1 + step / 2
            while x < x2:
                draw.ellipse([x - r, y - r, x + r, y + r], fill=mark)
                x += step
            y += step
    elif obj.texture == "checkered":
        cell = step / 1.5
        ny, nx = int((y2 - y1) / cell) + 1, int((x2 - x1) / cell) + 1
        for i in range(ny):
            for j in range(nx):
                if (i + j) % 2:
                    cx, cy = x1 + j * cell, y1 + i * cell
                    draw.rectangle([cx, cy, cx + cell, cy + cell], fill=mark)
    return layer


def render(scene: Scene) -> Image.Image:
    """The scene as an RGB image of size (scene.width, scene.height)."""
    s = SUPERSAMPLE
    size = (scene.width * s, scene.height * s)
    rng = np.random.default_rng(scene.image_id)  # faint sensor noise, fixed per image
    bg = np.array(BACKGROUNDS[scene.background], dtype=np.float32)
    noise = rng.normal(0, 4, (scene.height, scene.width, 1)).astype(np.float32)
    canvas = Image.fromarray(np.clip(bg + noise, 0, 255).astype(np.uint8), "RGB")
    canvas = canvas.resize(size, Image.Resampling.NEAREST)  # noise in 1x pixels
    for obj in scene.objects:
        # draw each object on a patch the size of its box (cheaper than full-canvas layers)
        x0, y0 = int(obj.box[0] * s) - 1, int(obj.box[1] * s) - 1
        x1, y1 = int(math.ceil(obj.box[2] * s)) + 2, int(math.ceil(obj.box[3] * s)) + 2
        patch = (x1 - x0, y1 - y0)
        pts = [(x - x0, y - y0) for x, y in outline(obj, s)]
        mask = Image.new("L", patch, 0)
        ImageDraw.Draw(mask).polygon(pts, fill=255)
        box = (obj.box[0] * s - x0, obj.box[1] * s - y0, obj.box[2] * s - x0, obj.box[3] * s - y0)
        layer = _texture_layer(obj, patch, box)
        edge = _shade(tx.COLOURS[obj.colour], -0.6) if obj.colour != "black" else (90, 90, 90)
        ImageDraw.Draw(layer).line(pts + [pts[0]], fill=edge, width=s)
        ImageDraw.Draw(mask).line(pts + [pts[0]], fill=255, width=s)
        canvas.paste(layer, (x0, y0), mask)
    return canvas.reduce(s)  # box filter: anti-aliased edges


def png_bytes(image: Image.Image) -> bytes:
    """Deterministic PNG encoding (no timestamps or metadata)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()
