"""Figures of SVLR's analyses (Sec. 5.3-5.4); the interpretable inference of Fig. 4 is the
multiple-choice task's own picture (`vlmt.tasks.svlr_pictures`).

- `draw_transfer_heatmap(grid, out)`: Fig. 5, mean change of per-class recognition accuracy
  per cell of (frequency in VQA) x (frequency in Genome).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlmt.metrics.recognition import FrequencyGrid
from vlmt.pictures import new_figure, save_figure


def draw_transfer_heatmap(grid: FrequencyGrid, out: str | Path, *, title: str,
                          row_name: str = "occurrences in VQA train questions",
                          col_name: str = "regions in Genome train") -> None:
    """Fig. 5: cell colour = mean change of per-class accuracy (points); text = baseline mean
    +/- change (classes). Rows: VQA frequency, most frequent on top; columns: Genome frequency."""
    change = grid.mean_change[::-1]  # most frequent VQA range on top, as in the paper
    base, counts = grid.baseline_mean[::-1], grid.counts[::-1]
    finite = np.abs(change[np.isfinite(change)])
    limit = max(float(finite.max()) if finite.size else 1.0, 1.0)
    fig, ax = new_figure(figsize=(1.9 * change.shape[1] + 2, 1.3 * change.shape[0] + 1.5))
    im = ax.imshow(np.where(np.isfinite(change), change, np.nan), cmap="RdBu", vmin=-limit, vmax=limit)
    for i in range(change.shape[0]):
        for j in range(change.shape[1]):
            text = "no classes" if counts[i, j] == 0 else f"{base[i, j]:.1f}\n{change[i, j]:+.1f}\n({counts[i, j]})"
            dark = np.isfinite(change[i, j]) and abs(change[i, j]) > 0.6 * limit
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")

    def ranges(edges: tuple[float, ...]) -> list[str]:
        return [f"[{edges[k]:g}, {edges[k + 1]:g})" for k in range(len(edges) - 1)]

    ax.set_xticks(range(change.shape[1]), ranges(grid.col_edges), fontsize=8)
    ax.set_yticks(range(change.shape[0]), ranges(grid.row_edges)[::-1], fontsize=8)
    ax.set_xlabel(col_name)
    ax.set_ylabel(row_name)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="mean change in accuracy (points)")
    save_figure(fig, out)


def draw_attention_agreement(curves: dict[str, list[float | None]], thresholds: list[float], counts: list[int],
                             out: str | Path, *, title: str) -> None:
    """Fig. 7: one line per model (and the centre baseline) of the mean Spearman correlation with
    human attention over the questions whose human map correlates with the centre map at most the
    threshold (x); the grey bars (right axis) are how many questions each subset holds."""
    fig, ax = new_figure(figsize=(6.8, 4.2))
    width = 0.8 * (thresholds[1] - thresholds[0]) if len(thresholds) > 1 else 0.1
    share = ax.twinx()
    share.bar(thresholds, counts, width=width, color="0.88", zorder=0)
    share.set_ylabel("questions in the subset", color="0.45")
    share.tick_params(axis="y", colors="0.45")
    ax.set_zorder(share.get_zorder() + 1)
    ax.patch.set_visible(False)
    for k, (label, values) in enumerate(curves.items()):
        xs = [t for t, v in zip(thresholds, values) if v is not None]
        ys = [v for v in values if v is not None]
        style = {"color": "black", "linestyle": "--"} if label.lower().startswith("centre") else {"color": f"C{k}"}
        ax.plot(xs, ys, marker="o", markersize=3.5, label=label, **style)
    ax.axhline(0.0, color="0.6", linewidth=0.6)
    ax.set_xlabel("threshold t: questions whose human map has rho <= t with the centre map")
    ax.set_ylabel("mean Spearman rho with human attention")
    shown = [t for t, n in zip(thresholds, counts) if n] or list(thresholds)  # from the first non-empty subset
    ax.set_xlim(min(shown) - width, max(shown) + width)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=9)
    save_figure(fig, out)
