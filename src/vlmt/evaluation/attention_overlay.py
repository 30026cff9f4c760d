"""A picture of attention over image regions: the image, dimmed where no attended region covers
it, the box of every region holding at least `MIN_SHARE` of the strongest weight outlined (line
width by weight) and labelled with its weight, and a caption underneath.

Weights are spread over the pixels of their boxes (overlapping boxes add up) and the map is
scaled so that its maximum is fully lit; the strongest region's box is drawn in red.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vlmt.io import atomic_path

MIN_SIDE = 320  # small images (easy-VQA is 64 x 64) are enlarged so boxes and labels stay legible
MIN_SHARE = 0.05  # boxes of weaker regions are not outlined (they would only hide the picture)


def attention_heat(boxes: np.ndarray, weights: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) float map in [0, 1]: sum over regions of weight x box indicator, divided by its max."""
    heat = np.zeros((height, width), dtype=np.float32)
    for (x1, y1, x2, y2), w in zip(np.asarray(boxes, dtype=np.float64), np.asarray(weights, dtype=np.float64)):
        c1, r1 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
        c2, r2 = min(width, int(np.ceil(x2))), min(height, int(np.ceil(y2)))
        heat[r1:r2, c1:c2] += w
    top = heat.max()
    return heat / top if top > 0 else heat


def draw_region_attention(image: np.ndarray, boxes: np.ndarray, weights: np.ndarray, *,
                          caption: Sequence[str] = ()) -> Image.Image:
    """The picture (see the module docstring) of (T,) `weights` over (T, 4) pixel `boxes` of an
    (H, W, 3) uint8 `image`, with `caption` lines under it."""
    h, w = image.shape[:2]
    heat = attention_heat(boxes, weights, h, w)
    lit = image.astype(np.float32) * (0.25 + 0.75 * heat[..., None])
    scale = max(1, int(np.ceil(MIN_SIDE / max(1, min(h, w)))))
    picture = Image.fromarray(lit.clip(0, 255).astype(np.uint8)).resize((w * scale, h * scale), Image.NEAREST)
    font = ImageFont.load_default()
    line_h = 14
    canvas = Image.new("RGB", (picture.width, picture.height + line_h * len(caption) + 8), "white")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    weights = np.asarray(weights, dtype=np.float64)
    best = int(weights.argmax()) if len(weights) else -1
    top = max(float(weights.max()) if len(weights) else 0.0, 1e-9)
    for t in np.argsort(weights):  # strongest drawn last, on top
        if weights[t] < MIN_SHARE * top:
            continue
        x1, y1, x2, y2 = (float(v) * scale for v in boxes[t])
        colour = (220, 30, 30) if t == best else (40, 90, 230)
        width = 1 + int(round(4 * weights[t] / top))
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=colour, width=width)
        label = f"{weights[t]:.2f}"
        left, upper, right, lower = draw.textbbox((x1 + width + 2, y1 + width + 1), label, font=font)
        draw.rectangle([left - 2, upper - 1, right + 2, lower + 1], fill="white")
        draw.text((x1 + width + 2, y1 + width + 1), label, fill=colour, font=font)
    for k, text in enumerate(caption):
        draw.text((4, picture.height + 4 + k * line_h), text, fill="black", font=font)
    return canvas


def save_png(picture: Image.Image, path: str | os.PathLike) -> None:
    """Write a PIL image as PNG atomically."""
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
