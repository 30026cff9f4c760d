"""Fig. 4 of the SVLR paper, the picture of the multiple-choice VQA task (`SVLRVQATask.pictures`).

One multiple-choice question: the region relevance a(R) of the chosen answer (Eq. 4) is projected
back to the pixels each region covers (a pixel's relevance is the sum of a(R) over the boxes holding
it) and shown as a mask over the image; the most relevant region is outlined and its top object and
attribute predictions (s_o, s_a over the label sets) are listed beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.patches import Rectangle

from vlmt.models.svlr import SVLR
from vlmt.pictures import new_figure, save_figure
from vlmt.tasks.base import EvalMode
from vlmt.tasks.capabilities import evenly_spaced
from vlmt.tasks.svlr_batches import vqa_batch
from vlmt.tasks.svlr_text import MCQuestion


@torch.no_grad()
def explain_question(model: SVLR, vqa: Any, question: MCQuestion, *, top_k: int = 3,
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


def draw_interpretable_inference(model: SVLR, vqa: Any, question: MCQuestion, out: str | Path, *,
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


def pick_examples(model: SVLR, vqa: Any, split: str, count: int, *, device: str | torch.device = "cpu",
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


@torch.no_grad()
def spread_examples(model: Any, vqa: Any, split: str, count: int) -> list[Any]:
    """`count` questions with an "other" answer (colours, shapes: the ones Fig. 4 explains), taken
    across the split, one per image, that the model answers correctly (topped up with wrong ones)."""
    data = vqa.data
    questions = [q for q in data.vqa[split] if q.answer_type == "other"] or list(data.vqa[split])
    order = [questions[i] for i in evenly_spaced(len(questions), max(8 * count, 50))]
    right: list[Any] = []
    wrong: list[Any] = []
    images: set[int] = set()
    with EvalMode(model, vqa):
        for start in range(0, len(order), 100):
            chunk = order[start:start + 100]
            chosen = vqa.choice_scores(model, vqa_batch(data, chunk).inputs).argmax(1).tolist()
            for q, k in zip(chunk, chosen):
                if q.image_id in images:
                    continue
                (right if k == q.correct else wrong).append(q)
                if k == q.correct:
                    images.add(q.image_id)
            if len(right) >= count:
                break
    return (right + wrong)[:count]
