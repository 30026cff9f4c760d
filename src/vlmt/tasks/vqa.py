"""Task `vqa` (H Sec. 3.3.2): open-ended VQA over the answer pool of the `vl` family's data.

Head: `VQAHead` (image and question summaries -> two-layer MLP -> one logit per pool answer) on
the encoder layer `layer` (paper: 5). Training: the sigmoid answer scores against the VQA soft
scores (min(1, #humans who gave the answer / 3), or the 10-choose-9 average of it) with binary
cross-entropy, `vqa_loss`. Evaluation: the top-scoring pool answer of every question, scored with
the official VQA accuracy (`vlmt.metrics.vqa`): `accuracy`, `atype/<answer type>` and
`qtype/<question type>`, in percent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from vlmt import pictures as P
from vlmt.config import register_task
from vlmt.data.answers import soft_scores
from vlmt.errors import ConfigError, DataError, InvalidInput
from vlmt.metrics.vqa import breakdown, evaluate_vqa
from vlmt.models.encoders import WordRegionEncoder
from vlmt.models.heads.vqa import VQAHead
from vlmt.tasks.base import EvalMode, move_to
from vlmt.tasks.capabilities import IMAGE, Picture, Runtime, capability, evenly_spaced, integer, text
from vlmt.tasks.collate import gather_regions, pad_tokens
from vlmt.tasks.encoder_task import EncoderTask, EncoderTaskConfig
from vlmt.tasks.vl_data import question_tokens


class VQATask(EncoderTask):
    primary_metric = "accuracy"
    higher_is_better = True
    kind = "vqa"
    decoder_name = "VQA decoder"

    def __init__(self, *, name: str, config: VQATaskConfig, data: Any, model: WordRegionEncoder, seed: int):
        super().__init__(name=name, config=config, data=data, seed=seed)
        c = model.config
        if self.assets.answers is None:
            raise ConfigError(f"tasks.{name}: the data has no VQA answer pool")
        self.pool = self.assets.answers
        self.head = VQAHead(dim=c.dim, num_answers=len(self.pool), heads=c.heads, dropout=c.fc_dropout)
        self._splits: dict[str, dict[str, Any]] = {}
        if self.has_examples:
            self.store = self.data.store("vqa")
            for split in self.data.vqa:
                self._splits[split] = self._prepare(split)
            train = [self._splits[s] for s in self.data.cfg.vqa.train_splits]
            self._train = {key: [x for part in train for x in part[key]] for key in ("tokens", "image_ids", "targets")}

    def _prepare(self, split: str) -> dict[str, Any]:
        s = self.data.vqa_split(split)
        tokens, image_ids, targets = [], [], []
        for e in s.examples:
            ids = self.data.encode_words(self.data.question_tokens(e))
            if len(ids) == 0:
                raise DataError(s.path, "question has no word", record=f"question_id {e.question_id}", field="question")
            tokens.append(ids)
            image_ids.append(e.image_id)
            scores = soft_scores(e.answers, self.pool) if e.answers else {}
            targets.append((np.fromiter(scores.keys(), np.int64, len(scores)),
                            np.fromiter(scores.values(), np.float32, len(scores))))
        return {"examples": s.examples, "tokens": tokens, "image_ids": image_ids, "targets": targets,
                "annotated": s.annotated, "path": s.path}

    def trains_on(self, split: str) -> bool:
        """Whether `split` is among the splits this task trains on (data.datasets.vqa.train_splits)."""
        return self.has_examples and split in self.data.cfg.vqa.train_splits

    def _part(self, split: str) -> dict[str, Any]:
        # training joins data.datasets.vqa.train_splits (_split raises for a task loaded without its data)
        return self._train if split == "train" and self.has_examples else self._split(split)

    def _split(self, split: str) -> dict[str, Any]:
        if split not in self._splits:
            self.data.vqa_split(split)  # raises the ConfigError naming the missing file
        return self._splits[split]

    def _collate(self, part: dict[str, Any], rows: list[int]) -> dict[str, Tensor]:
        tokens, lengths = pad_tokens([part["tokens"][r] for r in rows])
        batch = {"tokens": tokens, "lengths": lengths}
        batch.update(gather_regions(self.store, [part["image_ids"][r] for r in rows]))
        targets = torch.zeros(len(rows), len(self.pool))
        for i, r in enumerate(rows):
            index, score = part["targets"][r]
            targets[i, torch.from_numpy(index)] = torch.from_numpy(score)
        batch["targets"] = targets
        batch["index"] = torch.tensor(rows, dtype=torch.int64)
        return batch

    def logits(self, model: WordRegionEncoder, batch: dict[str, Tensor]) -> Tensor:
        """(B, A) answer logits (Eq. 8 before the sigmoid)."""
        encoded = self.encode(model, batch)
        return self.head(encoded.words, encoded.regions, encoded.word_mask, encoded.region_mask)

    def forward(self, model: WordRegionEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = self.logits(model, batch)  # (B, A)
        loss = vqa_loss(logits, batch["targets"])
        with torch.no_grad():  # soft accuracy of the top answer, a cheap training signal to log
            score = batch["targets"].gather(1, logits.argmax(dim=1, keepdim=True)).mean()
        return {"loss": loss, "score": score}

    @torch.no_grad()
    def predict(self, model: WordRegionEncoder, split: str, *, device: torch.device) -> dict[int, str]:
        """Question id -> the top-scoring pool answer, for every question of `split`."""
        part = self._split(split)
        out: dict[int, str] = {}
        with EvalMode(model, self):
            for batch in self.batches(split):
                best = self.logits(model, move_to(batch, device)).argmax(dim=1).cpu().tolist()
                for row, a in zip(batch["index"].tolist(), best):
                    out[part["examples"][row].question_id] = self.pool.answers[a]
        return out

    def evaluate(self, model: WordRegionEncoder, split: str, *, device: torch.device) -> dict[str, float]:
        part = self._split(split)
        if not part["annotated"]:
            raise DataError(part["path"], f"the {split} split has no annotation file, so it cannot be scored here "
                                          f"(submit predictions to the VQA evaluation server)")
        results = self.predict(model, split, device=device)
        return self._score(part, results)

    @staticmethod
    def _score(part: dict[str, Any], results: dict[int, str]) -> dict[str, float]:
        annotations = [{"question_id": e.question_id, "question_type": e.question_type or "",
                        "answer_type": e.answer_type or "", "answers": list(e.answers)} for e in part["examples"]]
        return breakdown(evaluate_vqa(annotations, results))

    def majority_baseline(self, split: str) -> dict[str, float]:
        """The metrics of answering every question with the most frequent training answer."""
        best = self.pool.answers[0]  # the pool is ordered by training frequency, most frequent first
        part = self._split(split)
        return self._score(part, {e.question_id: best for e in part["examples"]})

    @torch.no_grad()
    def attention_maps(self, model: WordRegionEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """What the head looks at (pictures, `vlmt visualize`): the summary attention averaged over
        its K maps, "regions" (B, T) and "words" (B, N), each row summing to 1 over real positions.
        Runs in eval mode."""
        with EvalMode(model, self):
            encoded = self.encode(model, batch)
            return {"regions": self.head.image_summary.attention(encoded.regions, encoded.region_mask),
                    "words": self.head.question_summary.attention(encoded.words, encoded.word_mask)}

    @torch.no_grad()
    def explain(self, model: WordRegionEncoder, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """`logits` and `attention_maps` from one pass of the encoder (what `vlmt.load(...).details("answer", ...)`
        and the served page show). Runs in eval mode."""
        with EvalMode(model, self):
            encoded = self.encode(model, batch)
            logits = self.head(encoded.words, encoded.regions, encoded.word_mask, encoded.region_mask)
            return logits, {"regions": self.head.image_summary.attention(encoded.regions, encoded.region_mask),
                            "words": self.head.question_summary.attention(encoded.words, encoded.word_mask)}

    @capability("answer", summary="the top answers of the VQA head, with the attention behind them",
                inputs=(IMAGE, text("question", "the question"), integer("top_k", 5, "how many answers")),
                returns="[{answer, score in [0, 1]}], best first (details: words, unknown_words, boxes, "
                        "region_attention, word_attention)",
                example='model.answer("picture.png", "what color is the square?", top_k=5)',
                result=lambda full: full["answers"], tab="Ask (VQA)", batch="answer_batch")
    @torch.no_grad()
    def answer(self, runtime: Runtime, image: Any = None, question: str = "", *, top_k: int = 5,
               regions: Any = None, boxes: Any = None) -> dict[str, Any]:
        """The `top_k` pool answers for a picture and a question, the words the model never saw, the
        regions and the head's attention over regions and words."""
        if top_k < 1:
            raise InvalidInput(f"top_k: must be >= 1, got {top_k}")
        feats, box, pixels = runtime.regions(image, regions=regions, boxes=boxes)
        words = question_tokens(question)
        tokens, lengths, unknown = self.tokens(words, runtime.device, what="question")
        features, mask = self.region_batch([feats], runtime.device)
        logits, maps = self.explain(runtime.model, {"tokens": tokens, "lengths": lengths,
                                                    "region_features": features, "region_mask": mask})
        scores = torch.sigmoid(logits)[0].float().cpu()
        order = scores.argsort(descending=True)[:top_k].tolist()
        return {"question": question, "words": words, "unknown_words": unknown,
                "answers": [{"answer": self.pool.answers[a], "score": float(scores[a])} for a in order],
                "boxes": box, "region_attention": maps["regions"][0].cpu().numpy(),
                "word_attention": maps["words"][0].cpu().numpy(), "pixels": pixels}

    @torch.no_grad()
    def answer_batch(self, runtime: Runtime, pictures: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
                     question: Sequence[str], *, top_k: int = 5) -> list[dict[str, Any]]:
        """`answer` for many (picture, question) pairs in one pass of the encoder: `pictures[i]` is the
        (features, boxes, pixels) of the picture of `question[i]`; the results in the pairs' order."""
        if top_k < 1:
            raise InvalidInput(f"top_k: must be >= 1, got {top_k}")
        words = [question_tokens(q) for q in question]
        unknown = [self.tokens(w, runtime.device, what="question")[2] for w in words]
        tokens, lengths = self.sentence_batch(words, runtime.device)
        features, mask = self.region_batch([p[0] for p in pictures], runtime.device)
        logits, maps = self.explain(runtime.model, {"tokens": tokens, "lengths": lengths,
                                                    "region_features": features, "region_mask": mask})
        scores = torch.sigmoid(logits).float().cpu()
        out = []
        for i, ((feats, box, pixels), q) in enumerate(zip(pictures, question)):
            order = scores[i].argsort(descending=True)[:top_k].tolist()
            out.append({"question": q, "words": words[i], "unknown_words": unknown[i],
                        "answers": [{"answer": self.pool.answers[a], "score": float(scores[i, a])} for a in order],
                        "boxes": box, "region_attention": maps["regions"][i, :len(feats)].cpu().numpy(),
                        "word_attention": maps["words"][i, :len(words[i])].cpu().numpy(), "pixels": pixels})
        return out

    @torch.no_grad()
    def pictures(self, model: WordRegionEncoder, split: str, *, count: int, out: Path, peers: Mapping[str, Any]
                 ) -> list[Picture]:
        """Fig. 2 of the hierarchical paper for `count` questions of `split`: the top-1 region of each
        noun phrase of the question (when a peer grounds phrases), and the summary attention over
        regions and words of every decoder of the run (peers with a `decoder_name`), with the
        predicted and the annotated answers."""
        grounder = next((p for p in peers.values() if hasattr(p, "phrase_regions")), None)
        decoders = sorted((p for p in peers.values() if getattr(p, "decoder_name", "")),
                          key=lambda p: p.config.layer)
        out_pictures = []
        for index in evenly_spaced(self.num_examples(split), count):
            batch, info = self.example_batch(split, index)
            out_pictures.append(self._question_picture(model, batch, info, grounder, decoders, out, index))
        return out_pictures

    def _question_picture(self, model: WordRegionEncoder, batch: dict, info: dict, grounder: Any,
                          decoders: Sequence[Any], out: Path, index: int) -> Picture:
        words = list(info["words"])
        real = int(batch["region_mask"][0].sum())
        boxes = batch["region_boxes"][0, :real].numpy()
        lexicon = self.assets.phrases
        spans = lexicon.chunks(words) if grounder is not None and lexicon is not None else []
        phrase_boxes = None
        if spans:
            scores = grounder.phrase_regions(model, batch, spans)
            phrase_boxes = boxes[scores[0, :, :real].argmax(dim=1).numpy()]  # (P, 4) top-1 region per phrase
        rows = []
        answer = None
        for decoder in decoders:
            maps = decoder.attention_maps(model, batch)
            note = ""
            if decoder is self:
                answer = self.pool.answers[int(self.logits(model, batch)[0].argmax())]
                truth = _majority(info.get("answers") or [])
                note = f"predicted: {answer}" + (f"   annotated: {truth}" if truth else "")
            rows.append(P.DecoderAttention(decoder.decoder_name, maps["regions"][0, :real].numpy(),
                                           maps["words"][0, :len(words)].numpy(), note))
        question = info.get("question") or " ".join(words)
        path = P.fig2_figure(out / f"question_{index:05d}.png", image=info["image_path"], boxes=boxes, words=words,
                             phrase_spans=spans, phrase_boxes=phrase_boxes, decoders=rows,
                             title=f"image {info['image_id']}: {question}")
        caption = (f"Question {info.get('question_id', index)} (image {info['image_id']}): \"{question}\" - "
                   f"{'grounding of its noun phrases, ' if spans else ''}attention of the "
                   f"{' and '.join(d.name for d in rows)}; predicted answer {answer!r}")
        return Picture(path, caption)

    def example_batch(self, split: str, index: int) -> tuple[dict[str, Tensor], dict[str, Any]]:
        part = self._part(split)
        batch = move_to(self._collate(part, [index]), torch.device("cpu"))  # features, not store rows
        info: dict[str, Any] = {"image_id": part["image_ids"][index],
                                "image_path": self.data.image_path(part["image_ids"][index], "vqa"),
                                "words": self.data.vocab.decode(part["tokens"][index].tolist(), skip_specials=False)}
        if split != "train":
            e = part["examples"][index]
            info.update(question_id=e.question_id, question=e.question, answers=list(e.answers))
        return batch, info


@register_task("vqa")
@dataclass
class VQATaskConfig(EncoderTaskConfig):
    """Open-ended VQA on the data section's VQA files; the head reads encoder layer `layer`
    (paper: 5)."""

    stream_offset: ClassVar[int] = 1  # its batch order's seed offset, as documented results were drawn

    layer: int = 5

    def build(self, *, name: str, data: Any, model: Any, seed: int) -> VQATask:
        data, model = self.check(name=name, kind="vqa", dataset="vqa", data=data, model=model)
        return VQATask(name=name, config=self, data=data, model=model, seed=seed)


def _majority(answers: Sequence[Any]) -> str | None:
    texts = [a["answer"] if isinstance(a, dict) else str(a) for a in answers]
    if not texts:
        return None
    values, counts = np.unique(texts, return_counts=True)
    return str(values[int(np.argmax(counts))])


def vqa_loss(logits: Tensor, soft_scores: Tensor) -> Tensor:
    """BCE with soft targets, summed over the answer pool and averaged over questions.

    logits, soft_scores: (B, A), scores in [0, 1]. Summing over answers (rather than averaging)
    keeps the gradient per answer independent of the pool size, as in the bottom-up VQA models
    this decoder follows.
    """
    if logits.shape != soft_scores.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and soft_scores {tuple(soft_scores.shape)} differ")
    if soft_scores.numel() and (float(soft_scores.min()) < 0.0 or float(soft_scores.max()) > 1.0):
        raise ValueError("soft_scores must lie in [0, 1]")
    loss = F.binary_cross_entropy_with_logits(logits.float(), soft_scores.float(), reduction="sum")
    return loss / max(logits.shape[0], 1)
