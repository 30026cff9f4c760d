"""Attention pictures of a trained run (`vlmt visualize`).

Hierarchical runs, as in Fig. 2 of the hierarchical paper, for evenly spaced questions of a split:
one picture per question with a row for the grounding decoder (the top-1 region of each noun
phrase of the question), one for the retrieval decoder and one for the VQA decoder (the
decoders' summary attention over regions drawn on the image and over words as coloured text,
with the predicted and the annotated answers). Grounding is also drawn on the grounding task's
own sentences, with the annotated boxes dashed, so its pictures can be checked against truth.

Noun phrases of a question: the paper takes NP chunks from a parser. vlmt learns which words
occur inside the grounding task's training phrases and which end them, and takes every maximal
run of phrase words that ends on a phrase-ending word: no tagger needed, and on the synthetic
world it finds exactly the "the small red star" chunks.

SVLR runs: the Fig. 4 picture of the SVLR paper (`vlmt.reports.svlr_figures`): the region
relevance of the chosen answer and the most relevant region's object and attribute predictions.

`visualize_run(run, out)` returns the pictures written (path + caption) and writes index.html.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from vlmt.data.svlr_datasets import SVLRData
from vlmt.errors import ConfigError
from vlmt.io import atomic_write
from vlmt.models.hierarchical import HierarchicalVL
from vlmt.models.svlr import SVLR
from vlmt.reports import pictures as P
from vlmt.reports.svlr_figures import draw_interpretable_inference
from vlmt.tasks.base import EvalMode
from vlmt.tasks.svlr_collate import vqa_batch
from vlmt.tasks.svlr_vqa_mc import SVLRVQATask
from vlmt.training.build import rebuild


@dataclass(frozen=True)
class Picture:
    path: Path
    caption: str


def evenly_spaced(n: int, count: int) -> list[int]:
    """`count` distinct indices spread over range(n) (all of them when count >= n)."""
    if n <= 0 or count <= 0:
        return []
    if count >= n:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, count)})


# --------------------------------------------------------------------------- noun phrases


@dataclass(frozen=True)
class PhraseLexicon:
    """Words seen inside grounding phrases (`inside`) and words that end them (`ends`)."""

    inside: frozenset[str]
    ends: frozenset[str]

    def chunks(self, words: Sequence[str]) -> list[tuple[int, int]]:
        """Inclusive (first, last) word spans of the noun phrases in `words`."""
        spans, i = [], 0
        while i < len(words):
            if words[i] not in self.inside:
                i += 1
                continue
            j = i
            while j + 1 < len(words) and words[j + 1] in self.inside:
                j += 1
            last = max((k for k in range(i, j + 1) if words[k] in self.ends), default=None)
            if last is not None:
                spans.append((i, last))
            i = j + 1
        return spans


def phrase_lexicon(phrases: Sequence[Sequence[str]]) -> PhraseLexicon:
    """Learn the lexicon from tokenised phrases (e.g. the grounding task's training phrases)."""
    inside = frozenset(w for p in phrases for w in p)
    ends = frozenset(p[-1] for p in phrases if p)
    return PhraseLexicon(inside, ends)


def grounding_phrases(task: Any, split: str = "train", limit: int = 400) -> list[list[str]]:
    """Tokenised phrases of up to `limit` evenly spread sentences of a grounding task."""
    out = []
    for index in evenly_spaced(task.num_examples(split), limit):
        batch, info = task.example_batch(split, index)
        words = info["words"]
        for first, last in batch["spans"][0].tolist():
            out.append(words[first:last + 1])
    return out


# --------------------------------------------------------------------------- hierarchical runs


def _tasks_by_kind(tasks: dict[str, Any]) -> dict[str, Any]:
    """{"vqa"|"retrieval"|"grounding": task} of a hierarchical run."""
    out: dict[str, Any] = {}
    for task in tasks.values():
        kind = getattr(task, "kind", "")
        if kind in ("vqa", "retrieval", "grounding") and kind not in out:
            out[kind] = task
    return out


@torch.no_grad()
def hierarchical_pictures(model: Any, tasks: dict[str, Any], out: Path, *, split: str, count: int,
                          say: Callable[[str], None]) -> list[Picture]:
    """Fig. 2-like pictures for `count` questions, and grounding pictures for `count` sentences."""
    by_kind = _tasks_by_kind(tasks)
    pictures: list[Picture] = []
    lexicon = None
    if "grounding" in by_kind:
        lexicon = phrase_lexicon(grounding_phrases(by_kind["grounding"]))
    model.eval()
    if "vqa" in by_kind:
        vqa = by_kind["vqa"]
        for index in evenly_spaced(vqa.num_examples(split), count):
            batch, info = vqa.example_batch(split, index)
            pictures.append(_question_picture(model, by_kind, batch, info, lexicon, out, index))
    if "grounding" in by_kind:
        task = by_kind["grounding"]
        for index in evenly_spaced(task.num_examples(split), count):
            batch, info = task.example_batch(split, index)
            pictures.append(_grounding_picture(model, task, batch, info, out, index))
    say(f"      {len(pictures)} attention pictures in {out}")
    return pictures


def _question_picture(model: Any, by_kind: dict[str, Any], batch: dict, info: dict, lexicon: PhraseLexicon | None,
                      out: Path, index: int) -> Picture:
    words = list(info["words"])
    real = int(batch["region_mask"][0].sum())
    boxes = batch["region_boxes"][0, :real].numpy()
    spans: list[tuple[int, int]] = lexicon.chunks(words) if lexicon is not None and "grounding" in by_kind else []
    phrase_boxes = None
    if spans:
        scores = by_kind["grounding"].attention_maps(model, {**batch, "spans": torch.tensor([spans])})["phrase_regions"]
        phrase_boxes = boxes[scores[0, :, :real].argmax(dim=1).numpy()]  # (P, 4) top-1 region per phrase
    decoders = []
    answer = None
    for kind, label in (("retrieval", "ICR decoder"), ("vqa", "VQA decoder")):
        if kind not in by_kind:
            continue
        maps = by_kind[kind].attention_maps(model, batch)
        note = ""
        if kind == "vqa":
            vqa = by_kind["vqa"]
            logits = vqa.logits(model, batch)[0]
            answer = vqa.pool.answers[int(logits.argmax())]
            truth = _majority(info.get("answers") or [])
            note = f"predicted: {answer}" + (f"   annotated: {truth}" if truth else "")
        decoders.append(P.DecoderAttention(label, maps["regions"][0, :real].numpy(),
                                           maps["words"][0, :len(words)].numpy(), note))
    question = info.get("question") or " ".join(words)
    path = P.fig2_figure(out / f"question_{index:05d}.png", image=info["image_path"], boxes=boxes, words=words,
                         phrase_spans=spans, phrase_boxes=phrase_boxes, decoders=decoders,
                         title=f"image {info['image_id']}: {question}")
    caption = (f"Question {info.get('question_id', index)} (image {info['image_id']}): \"{question}\" - "
               f"{'grounding of its noun phrases, ' if spans else ''}attention of the "
               f"{' and '.join(d.name for d in decoders)}; predicted answer {answer!r}")
    return Picture(path, caption)


def _majority(answers: Sequence[Any]) -> str | None:
    texts = [a["answer"] if isinstance(a, dict) else str(a) for a in answers]
    if not texts:
        return None
    values, counts = np.unique(texts, return_counts=True)
    return str(values[int(np.argmax(counts))])


def _grounding_picture(model: Any, task: Any, batch: dict, info: dict, out: Path, index: int) -> Picture:
    real = int(batch["region_mask"][0].sum())
    boxes = batch["region_boxes"][0, :real].numpy()
    spans = batch["spans"][0]
    scores = task.attention_maps(model, batch)["phrase_regions"]
    predicted = boxes[scores[0, :, :real].argmax(dim=1).numpy()]
    truth = [np.asarray(b) if b is not None else None for b in info["phrase_boxes"]]
    phrases = list(info["phrases"])
    if len(phrases) != len(predicted):  # fall back to the words the model saw
        words = info["words"]
        phrases = [" ".join(words[a:b + 1]) for a, b in spans.tolist()]
        truth = [b for b in batch["phrase_boxes"][0].numpy()]
    path = P.grounding_figure(out / f"grounding_{index:05d}.png", image=info["image_path"], phrases=phrases,
                              predicted=predicted, truth=truth, sentence=info["sentence"],
                              title=f"grounding, image {info['image_id']}")
    return Picture(path, f"Grounding of \"{info['sentence']}\" (image {info['image_id']}): top-1 region per "
                         f"phrase (solid) and the annotated box (dashed)")


# --------------------------------------------------------------------------- any run


def write_index(out: Path, pictures: Sequence[Picture], *, title: str) -> Path:
    """index.html showing every picture with its caption (relative links)."""
    items = "\n".join(f"<figure><img src='{html.escape(p.path.relative_to(out).as_posix())}'>"
                      f"<figcaption>{html.escape(p.caption)}</figcaption></figure>" for p in pictures)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto}"
            "img{max-width:100%}figcaption{color:#555;font-size:.9em}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>\n{items}\n</body></html>\n")
    path = out / "index.html"
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def visualize_run(run_dir: str | Path, out: str | Path, *, split: str = "val", count: int = 3,
                  checkpoint: str = "best", say: Callable[[str], None] | None = None) -> list[Picture]:
    """Pictures of a checkpoint of the run (best, or last) for `count` examples of `split`, plus
    index.html."""
    say = say or (lambda msg: None)
    run_dir, out = Path(run_dir), Path(out)
    if count < 1:
        raise ConfigError(f"--count: must be >= 1, got {count}")
    _, parts = rebuild(run_dir, checkpoint, device="cpu")
    model, tasks = parts.model, parts.tasks
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, HierarchicalVL):
        pictures = hierarchical_pictures(model, tasks, out, split=split, count=count, say=say)
    elif isinstance(model, SVLR):
        pictures = svlr_pictures(model, tasks, out, split=split, count=count, say=say)
    else:
        raise ConfigError(f"{run_dir}: no pictures for a {type(model).__name__} model "
                          f"(vlmt visualize draws hierarchical and SVLR runs)")
    write_index(out, pictures, title=f"Attention pictures of {run_dir.name} ({split})")
    return pictures


def svlr_pictures(model: Any, tasks: dict[str, Any], out: Path, *, split: str, count: int,
                  say: Callable[[str], None]) -> list[Picture]:
    """Fig. 4 of the SVLR paper for `count` questions the model answers correctly (topped up with
    wrong ones): region relevance of the chosen answer and the top region's predictions."""
    vqa = next((t for t in tasks.values() if isinstance(t, SVLRVQATask)), None)
    if vqa is None:
        raise ConfigError("the run has no SVLR multiple-choice VQA task (svlr_vqa_mc) to take questions from")
    data: SVLRData = vqa.data
    if split not in data.vqa:
        raise ConfigError(f"--split: the run's data has no VQA split {split!r} (have {', '.join(data.vqa)})")
    pictures = []
    for q in _spread_examples(model, vqa, split, count):
        path = out / f"svlr_inference_{q.question_id}.png"
        info = draw_interpretable_inference(model, vqa, q, path)
        verdict = "right" if info["is_correct"] else f"wrong; the right one is {info['correct_answer']!r}"
        objects = ", ".join(name for name, _ in info["top_objects"])
        pictures.append(Picture(path, f"SVLR (Fig. 4), question {q.question_id}: \"{info['question']}\" - chosen "
                                      f"answer {info['answer']!r} ({verdict}); relevance of each region for it, "
                                      f"and the most relevant region's top objects: {objects}"))
    say(f"      {len(pictures)} SVLR pictures in {out}")
    return pictures


@torch.no_grad()
def _spread_examples(model: Any, vqa: SVLRVQATask, split: str, count: int) -> list[Any]:
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
