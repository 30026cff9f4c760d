"""Attention pictures in the manner of Fig. 2 of the hierarchical paper.

Three primitives, each drawing onto a matplotlib axis, and two whole-figure helpers that write PNGs
atomically:

- regions' attention on the image: every pixel is lit in proportion to the attention mass of the
  regions covering it (the rest is dimmed), and the top-k regions are outlined with their weight;
- words' attention as text: each word on a background whose colour strength is its weight;
- grounding: the top-1 region of each noun phrase, one colour per phrase (ground truth dashed).

The pixel work (`region_heat`, `attention_overlay`) is plain numpy so it can be tested without
looking at a picture. Figures are `matplotlib.figure.Figure` objects drawn without pyplot, so
library code never touches pyplot's global state (backend, current figure): safe in notebooks,
threads and servers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from vlmt.io import atomic_path

# distinct colours for phrases (tab10 without grey)
PHRASE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                  "#bcbd22", "#17becf")


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float],
               layout: Literal["constrained", "compressed", "tight"] | None = None, **subplots: Any
               ) -> tuple[Figure, Any]:
    """A figure and its grid of axes (`Figure.subplots`), outside pyplot, drawn by the Agg canvas
    (which text measurement needs before saving)."""
    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **subplots)


def as_rgb_array(image) -> np.ndarray:
    """(H, W, 3) float array in [0, 1] from a PIL image, a path, or a uint8/float array."""
    if isinstance(image, (str, Path)):
        from PIL import Image

        with Image.open(image) as im:
            image = np.asarray(im.convert("RGB"))
    elif not isinstance(image, np.ndarray):  # PIL image
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an image of shape (H, W, 3), got {arr.shape}")
    arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return np.clip(arr.astype(np.float32), 0.0, 1.0)


def region_heat(height: int, width: int, boxes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(H, W) attention mass per pixel, scaled to max 1: each region adds its weight to the pixels
    inside its box (x1, y1, x2, y2 in pixels). All zeros when every weight is zero."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(boxes) != len(weights):
        raise ValueError(f"{len(boxes)} boxes but {len(weights)} weights")
    heat = np.zeros((height, width), dtype=np.float64)
    for (x1, y1, x2, y2), w in zip(boxes, weights):
        c1, c2 = int(np.clip(np.floor(x1), 0, width)), int(np.clip(np.ceil(x2), 0, width))
        r1, r2 = int(np.clip(np.floor(y1), 0, height)), int(np.clip(np.ceil(y2), 0, height))
        heat[r1:r2, c1:c2] += max(float(w), 0.0)
    top = heat.max()
    return (heat / top if top > 0 else heat).astype(np.float32)


def attention_overlay(image, boxes: np.ndarray, weights: np.ndarray, *, floor: float = 0.2) -> np.ndarray:
    """(H, W, 3) image lit by its regions' attention: pixel * (floor + (1 - floor) * heat)."""
    rgb = as_rgb_array(image)
    heat = region_heat(rgb.shape[0], rgb.shape[1], boxes, weights)
    return rgb * (floor + (1.0 - floor) * heat)[:, :, None]


def draw_region_attention(ax, image, boxes: np.ndarray, weights: np.ndarray, *, top_k: int = 3,
                          title: str | None = None) -> None:
    """Regions' attention on the image, the `top_k` strongest regions outlined with their weight."""
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ax.imshow(attention_overlay(image, boxes, weights))
    cmap = colormaps["autumn"]
    order = np.argsort(-weights)[:top_k]
    for rank, t in enumerate(order):
        x1, y1, x2, y2 = boxes[t]
        colour = cmap(rank / max(top_k - 1, 1))
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=2))
        ax.text(x1 + 1, y1 + 1, f"{weights[t]:.2f}", color="black", fontsize=7, va="top",
                bbox=dict(facecolor=colour, edgecolor="none", pad=1, alpha=0.9))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def _draw_words(ax, words: Sequence[str], backgrounds: Sequence[Any], foregrounds: Sequence[str], *,
                fontsize: int, top: float = 0.85) -> None:
    """Words left to right on coloured backgrounds, wrapping onto new lines at the axis' edge."""
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    renderer = ax.figure.canvas.get_renderer()
    ax_box = ax.get_window_extent(renderer)
    x, y, line_h = 0.01, top, 0.0
    for word, bg, fg in zip(words, backgrounds, foregrounds):
        text = ax.text(x, y, word, fontsize=fontsize, va="top", ha="left", color=fg,
                       bbox=dict(facecolor=bg, edgecolor="none", pad=2))
        extent = text.get_window_extent(renderer)
        width = extent.width / max(ax_box.width, 1.0)
        line_h = max(line_h, extent.height / max(ax_box.height, 1.0))
        if x + width > 0.99 and x > 0.01:  # wrap
            x, y = 0.01, y - line_h * 1.6
            text.set_position((x, y))
        x += width + 0.015


def draw_word_attention(ax, words: Sequence[str], weights: np.ndarray, *, cmap: str = "Reds",
                        title: str | None = None, fontsize: int = 10) -> None:
    """Words as text on backgrounds coloured by their weight (strongest = full colour)."""
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(words) != len(weights):
        raise ValueError(f"{len(words)} words but {len(weights)} weights")
    colours = colormaps[cmap]
    top = weights.max() if len(weights) and weights.max() > 0 else 1.0
    strength = [float(w / top) for w in weights]
    _draw_words(ax, words, [colours(0.05 + 0.9 * s) for s in strength],
                ["white" if s > 0.6 else "black" for s in strength], fontsize=fontsize)
    if title:
        ax.set_title(title, fontsize=9)


def draw_phrase_words(ax, words: Sequence[str], spans: Sequence[tuple[int, int]], *, title: str | None = None,
                      fontsize: int = 10) -> None:
    """Words with each phrase (inclusive word span) on its phrase colour, as in `draw_grounding`."""
    backgrounds: list[Any] = ["#f0f0f0"] * len(words)
    foregrounds = ["black"] * len(words)
    for p, (first, last) in enumerate(spans):
        for i in range(max(first, 0), min(last, len(words) - 1) + 1):
            backgrounds[i], foregrounds[i] = PHRASE_COLOURS[p % len(PHRASE_COLOURS)], "white"
    _draw_words(ax, words, backgrounds, foregrounds, fontsize=fontsize)
    if title:
        ax.set_title(title, fontsize=9)


def draw_grounding(ax, image, phrases: Sequence[str], predicted: np.ndarray, *,
                   truth: Sequence[np.ndarray | None] | None = None, title: str | None = None) -> None:
    """The top-1 region of each noun phrase as a coloured box (the phrases named in a legend below
    the image); the phrase's ground-truth box (when given) dashed in the same colour."""
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1, 4)
    if len(predicted) != len(phrases):
        raise ValueError(f"{len(phrases)} phrases but {len(predicted)} predicted boxes")
    ax.imshow(as_rgb_array(image))
    seen: dict[tuple, int] = {}
    for p, (phrase, box) in enumerate(zip(phrases, predicted)):
        colour = PHRASE_COLOURS[p % len(PHRASE_COLOURS)]
        if truth is not None and truth[p] is not None:
            tx1, ty1, tx2, ty2 = np.asarray(truth[p], dtype=np.float64)
            ax.add_patch(Rectangle((tx1, ty1), tx2 - tx1, ty2 - ty1, fill=False, edgecolor=colour,
                                       linewidth=1.2, linestyle="--"))
        key = tuple(np.round(box, 1))
        inset = 2.0 * seen.get(key, 0)  # phrases sharing a region: nested outlines, all visible
        seen[key] = seen.get(key, 0) + 1
        x1, y1, x2, y2 = box + np.array([inset, inset, -inset, -inset])
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=2.2))
    handles = [Line2D([], [], color=PHRASE_COLOURS[p % len(PHRASE_COLOURS)], linewidth=2.2, label=phrase)
               for p, phrase in enumerate(phrases)]
    if truth is not None and any(t is not None for t in truth):
        handles.append(Line2D([], [], color="grey", linewidth=1.2, linestyle="--", label="annotated box"))
    if handles:  # names below the image: labels on the boxes would hide small objects
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), fontsize=7, frameon=False,
                  ncol=1 if len(handles) <= 3 else 2)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 110) -> Path:
    """Write a figure as PNG atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return path


def attention_figure(path: str | Path, *, image, boxes: np.ndarray, region_weights: np.ndarray,
                     words: Sequence[str], word_weights: np.ndarray, title: str = "",
                     caption: str = "") -> Path:
    """One decoder's summary attention for one example: regions on the image (left) and words as
    coloured text (right); `caption` (e.g. the predicted answer) goes under the words."""
    fig, (left, right) = new_figure(1, 2, figsize=(7.0, 3.2), gridspec_kw={"width_ratios": [1, 1.3]})
    draw_region_attention(left, image, boxes, region_weights, title="attention over regions")
    draw_word_attention(right, words, word_weights, title="attention over words")
    if caption:
        right.text(0.01, 0.05, caption, fontsize=9, va="bottom", ha="left", transform=right.transAxes)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def grounding_figure(path: str | Path, *, image, phrases: Sequence[str], predicted: np.ndarray,
                     truth: Sequence[np.ndarray | None] | None = None, sentence: str = "",
                     title: str = "") -> Path:
    """Grounding of one sentence: the top-1 region per noun phrase, with the sentence below."""
    fig, ax = new_figure(1, 1, figsize=(4.0, 4.4))
    draw_grounding(ax, image, phrases, predicted, truth=truth)
    if sentence:
        ax.set_title(_wrap(sentence, 48), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


@dataclass(frozen=True)
class DecoderAttention:
    """One decoder's summary attention for the figure: weights over regions (T,) and words (N,)."""

    name: str
    regions: np.ndarray
    words: np.ndarray
    note: str = ""


def fig2_figure(path: str | Path, *, image, boxes: np.ndarray, words: Sequence[str],
                phrase_spans: Sequence[tuple[int, int]] = (), phrase_boxes: np.ndarray | None = None,
                decoders: Sequence[DecoderAttention] = (), title: str = "") -> Path:
    """Fig. 2 of the hierarchical paper for one sentence: a grounding row (the top-1 region of
    each noun phrase, phrases coloured in the sentence) when phrases are given, then one row per
    decoder (regions' attention on the image, words' attention as coloured text)."""
    rows = (1 if len(phrase_spans) else 0) + len(decoders)
    if rows == 0:
        raise ValueError("nothing to draw: no phrases and no decoders")
    fig, axes = new_figure(rows, 2, figsize=(7.0, 2.9 * rows), gridspec_kw={"width_ratios": [1, 1.3]},
                           squeeze=False)
    fig.subplots_adjust(hspace=0.4)  # room for the grounding legend under the first row
    r = 0
    if len(phrase_spans):
        phrases = [" ".join(words[a:b + 1]) for a, b in phrase_spans]
        draw_grounding(axes[0, 0], image, phrases, np.asarray(phrase_boxes).reshape(-1, 4),
                       title="grounding: top-1 region")
        draw_phrase_words(axes[0, 1], words, phrase_spans, title="noun phrases")
        r = 1
    for dec in decoders:
        draw_region_attention(axes[r, 0], image, boxes, dec.regions, title=f"{dec.name}: regions")
        draw_word_attention(axes[r, 1], words, dec.words, title=f"{dec.name}: words")
        if dec.note:
            axes[r, 1].text(0.01, 0.05, dec.note, fontsize=9, va="bottom", ha="left", transform=axes[r, 1].transAxes)
        r += 1
    if title:
        fig.suptitle(_wrap(title, 70), fontsize=10)
    return save_figure(fig, path)
