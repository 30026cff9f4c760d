"""Pictures of SVLR results: the interpretable inference of Fig. 4 and the transfer heatmap of
Fig. 5 of the SVLR paper (Sec. 5.3-5.4).

- `draw_interpretable_inference(model, vqa_task, question, out)`: one multiple-choice question. The
  region relevance a(R) of the chosen answer (Eq. 4) is projected back to the pixels each
  region covers (a pixel's relevance is the sum of a(R) over the boxes holding it) and shown as
  a mask over the image; the most relevant region is outlined and its top object and attribute
  predictions (s_o, s_a over the label sets) are listed beside it.
- `draw_examples(run_dir, out_dir, split=, count=)`: the same for a trained run's first
  `count` correctly answered questions of a split (what `vlmt visualize` draws for SVLR runs).
- `draw_transfer_heatmap(grid, out)`: Fig. 5, mean change of per-class recognition accuracy
  per cell of (frequency in VQA) x (frequency in Genome).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.patches import Rectangle

from vlmt.data.svlr_datasets import MCQuestion
from vlmt.errors import ConfigError
from vlmt.metrics.recognition import FrequencyGrid
from vlmt.models.svlr import SVLR
from vlmt.reports.pictures import new_figure, save_figure
from vlmt.tasks.base import EvalMode
from vlmt.tasks.svlr_collate import vqa_batch
from vlmt.tasks.svlr_vqa_mc import SVLRVQATask
from vlmt.training.build import rebuild


@torch.no_grad()
def explain_question(model: SVLR, vqa: SVLRVQATask, question: MCQuestion, *, top_k: int = 3,
                     device: str | torch.device = "cpu") -> dict:
    """The numbers behind Fig. 4 for one question: chosen answer, a(R) of that answer, the most
    relevant region with its top-k objects (raw scores f_o·g) and attributes (sigmoid of f_a·g,
    the probability Eq. 2 trains)."""
    data = vqa.data
    with EvalMode(model, vqa):
        out = vqa.outputs(model, vqa_batch(data, [question]).inputs.to(device))
    choice = int(out.scores[0].argmax())
    record = data.store.read(question.image_id)
    T = record.boxes.shape[0]
    attention = out.attention[0, choice, :T].float().cpu().numpy()  # (T,)
    best = int(attention.argmax())
    s_o = out.object_scores[0, best].float().cpu().numpy()
    s_a = torch.sigmoid(out.attribute_scores[0, best].float()).cpu().numpy()
    objs = [(data.object_labels[i], float(s_o[i])) for i in np.argsort(-s_o)[:top_k]]
    atrs = [(data.attribute_labels[i], float(s_a[i])) for i in np.argsort(-s_a)[:top_k]]
    return {"question_id": question.question_id, "image_id": question.image_id, "question": question.question,
            "answer": question.choices[choice], "correct_answer": question.choices[question.correct],
            "is_correct": choice == question.correct, "attention": attention.tolist(),
            "boxes": record.boxes.tolist(), "width": record.width, "height": record.height,
            "most_relevant_region": best, "top_objects": objs, "top_attributes": atrs}


def relevance_mask(boxes: np.ndarray, attention: np.ndarray, width: int, height: int) -> np.ndarray:
    """(height, width) map: each pixel sums a(R) over the boxes that contain it, scaled to max 1."""
    mask = np.zeros((height, width), dtype=np.float64)
    for (x1, y1, x2, y2), a in zip(boxes, attention):
        xa, xb = int(np.floor(max(x1, 0))), int(np.ceil(min(x2, width)))
        ya, yb = int(np.floor(max(y1, 0))), int(np.ceil(min(y2, height)))
        mask[ya:yb, xa:xb] += a
    peak = mask.max()
    return mask / peak if peak > 0 else mask


def draw_interpretable_inference(model: SVLR, vqa: SVLRVQATask, question: MCQuestion, out: str | Path, *,
                                 top_k: int = 3, device: str | torch.device = "cpu") -> dict:
    """Draw Fig. 4 for one question into the PNG `out`; returns `explain_question`'s numbers."""
    data = vqa.data
    info = explain_question(model, vqa, question, top_k=top_k, device=device)
    w, h = info["width"], info["height"]
    path = data.image_path(question.image_id)
    if path is not None:
        from PIL import Image

        with Image.open(path) as im:
            pixels = np.asarray(im.convert("RGB").resize((w, h)), dtype=np.float64) / 255.0
    else:  # no pixels available: show the mask on grey
        pixels = np.full((h, w, 3), 0.6)
    boxes = np.asarray(info["boxes"], dtype=np.float64)
    mask = relevance_mask(boxes, np.asarray(info["attention"]), w, h)
    fig, axes = new_figure(1, 3, figsize=(10.5, 3.8), gridspec_kw={"width_ratios": [1, 1, 1.1]})
    axes[0].imshow(pixels)
    axes[0].set_title("image" if path is not None else "image (file not found)", fontsize=9)
    axes[1].imshow(pixels * (0.15 + 0.85 * mask[..., None]))
    axes[1].set_title("relevance a(R) of the chosen answer", fontsize=9)
    x1, y1, x2, y2 = boxes[info["most_relevant_region"]]
    axes[1].add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="yellow", linewidth=2))
    for ax in axes[:2]:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[2].axis("off")
    mark = "correct" if info["is_correct"] else f"wrong (right: {info['correct_answer']})"
    lines = [f"Q: {info['question']}", f"A: {info['answer']}  [{mark}]", "",
             f"most relevant region (a = {max(info['attention']):.2f}):", "  objects (f_o·g):"]
    lines += [f"    {name}  {score:.2f}" for name, score in info["top_objects"]]
    lines += ["  attributes (sigmoid f_a·g):"]
    lines += [f"    {name}  {p:.2f}" for name, p in info["top_attributes"]]
    axes[2].text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=9, family="monospace",
                 transform=axes[2].transAxes, wrap=True)
    fig.suptitle(f"SVLR interpretable inference (question {info['question_id']}, image {info['image_id']})",
                 fontsize=10)
    save_figure(fig, out)
    return info


def pick_examples(model: SVLR, vqa: SVLRVQATask, split: str, count: int, *, device: str | torch.device = "cpu",
                  answer_type: str | None = "other") -> list[MCQuestion]:
    """The first `count` questions of `split` (of `answer_type`, when given) the model answers
    correctly, topped up with wrong ones when there are too few."""
    data = vqa.data
    questions = [q for q in data.vqa[split] if answer_type is None or q.answer_type == answer_type]
    right: list[MCQuestion] = []
    wrong: list[MCQuestion] = []
    with EvalMode(model, vqa), torch.no_grad():
        for start in range(0, len(questions), 100):
            chunk = questions[start:start + 100]
            scores = vqa.choice_scores(model, vqa_batch(data, chunk).inputs.to(device))
            for q, k in zip(chunk, scores.argmax(1).tolist()):
                (right if k == q.correct else wrong).append(q)
            if len(right) >= count:
                break
    return (right + wrong)[:count]


def draw_examples(run_dir: str | Path, out_dir: str | Path, *, split: str = "val", count: int = 4,
                  which: str = "best", device: str | torch.device = "cpu") -> list[Path]:
    """Fig. 4 for `count` questions of a trained SVLR run (rebuilt from its checkpoint);
    writes out_dir/svlr_inference_<question_id>.png and returns the paths."""
    _, parts = rebuild(run_dir, which, device=device)
    model = parts.model
    if not isinstance(model, SVLR):
        raise ConfigError(f"{run_dir}: not an SVLR run (model {type(model).__name__})")
    vqa = next((t for t in parts.tasks.values() if isinstance(t, SVLRVQATask)), None)
    if vqa is None:
        raise ConfigError(f"{run_dir}: the run has no multiple-choice VQA task (svlr_vqa_mc) to take questions from")
    if split not in vqa.data.vqa:
        raise ConfigError(f"--split: the run's data has no VQA split {split!r} (have {', '.join(vqa.data.vqa)})")
    paths = []
    for q in pick_examples(model, vqa, split, count, device=device):
        path = Path(out_dir) / f"svlr_inference_{q.question_id}.png"
        draw_interpretable_inference(model, vqa, q, path, device=device)
        paths.append(path)
    return paths


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
