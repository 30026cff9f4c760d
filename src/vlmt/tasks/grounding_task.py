"""Task `grounding` (H Sec. 3.3.3): phrase localisation on Flickr30k Entities.

One example is one sentence with every phrase whose entity has boxes (the union box for
multi-box entities). Training: the region proposals of the feature store with IoU >= 0.5 with a
phrase's box are its positives, `grounding_loss` (BCE over real phrase x proposal pairs).
Evaluation: each phrase ranks the proposals by score; Recall@1/5/10 of the Flickr30k Entities
protocol (`vlmt.metrics.grounding`): keys `r1 r5 r10`, in percent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from vlmt.config import TrainConfig, register_task
from vlmt.data.text import align_words
from vlmt.errors import DataError
from vlmt.metrics.grounding import grounding_recall
from vlmt.tasks.grounding import grounding_loss, grounding_targets
from vlmt.tasks.collate import EvalMode, gather_regions, index_batches, model_inputs, pad_tokens
from vlmt.tasks.encoder_task import VLTask, VLTaskConfig


class GroundingTask(VLTask):
    primary_metric = "r1"
    higher_is_better = True
    kind = "grounding"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.store = self.data.store("entities")
        self._splits = {split: self._prepare(split) for split in self.data.entities}

    def _prepare(self, split: str) -> dict[str, Any]:
        s = self.data.entity_split(split)
        out: dict[str, list] = {"sentences": [], "tokens": [], "image_ids": [], "spans": [], "boxes": [],
                                "entities": []}
        for g in s.sentences:
            boxed = [p for p in g.phrases if p.boxes]
            if not boxed:
                continue
            alignment = align_words(g.sentence, "caption")
            if not alignment.tokens:
                raise DataError(s.path / f"{g.image_id}.txt", "sentence has no word", record=f"sentence {g.sentence_index}")
            spans = []
            for p in boxed:
                try:
                    span = alignment.span(p.first_word_index, p.num_words)
                except ValueError as e:
                    raise DataError(s.path / f"{g.image_id}.txt", str(e), record=f"sentence {g.sentence_index}",
                                    field="phrase") from None
                # a phrase of punctuation only has no token: it is read as the whole sentence
                spans.append((span.start, span.stop - 1) if len(span) else (0, len(alignment.tokens) - 1))
            out["sentences"].append(g)
            out["tokens"].append(self.data.encode_words(alignment.tokens))
            out["image_ids"].append(g.image_id)
            out["spans"].append(np.asarray(spans, dtype=np.int64))
            out["boxes"].append(np.asarray([p.ground_truth_box for p in boxed], dtype=np.float32))
            out["entities"].append([p.entity_id for p in boxed])
        if not out["sentences"]:
            raise DataError(s.path, f"no phrase with a box in the {split} split")
        return out

    def _split(self, split: str) -> dict[str, Any]:
        if split not in self._splits:
            self.data.entity_split(split)
        return self._splits[split]

    def num_examples(self, split: str) -> int:
        return len(self._split(split)["tokens"])

    def _collate(self, part: dict[str, Any], rows: list[int]) -> dict[str, Tensor]:
        tokens, lengths = pad_tokens([part["tokens"][r] for r in rows])
        batch = {"tokens": tokens, "lengths": lengths}
        batch.update(gather_regions(self.store, [part["image_ids"][r] for r in rows]))
        h = max(len(part["spans"][r]) for r in rows)
        spans = torch.zeros(len(rows), h, 2, dtype=torch.int64)
        boxes = torch.zeros(len(rows), h, 4)
        phrase_mask = torch.zeros(len(rows), h, dtype=torch.bool)
        for i, r in enumerate(rows):
            n = len(part["spans"][r])
            spans[i, :n] = torch.from_numpy(part["spans"][r])
            boxes[i, :n] = torch.from_numpy(part["boxes"][r])
            phrase_mask[i, :n] = True
        batch.update(spans=spans, phrase_boxes=boxes, phrase_mask=phrase_mask,
                     index=torch.tensor(rows, dtype=torch.int64))
        return batch

    def batches(self, split: str, *, start: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[dict[str, Tensor]]:
        part = self._split(split)
        size = self.batch_size if split == "train" else self.eval_batch_size
        for rows in index_batches(len(part["tokens"]), size, split=split, seed=self.seed, start=start, rank=rank,
                                  world_size=world_size):
            yield self._collate(part, rows)

    def forward(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = model.forward_grounding(**model_inputs(batch), spans=batch["spans"])  # (B, H, T)
        targets = grounding_targets(batch["phrase_boxes"], batch["region_boxes"], batch["region_mask"])
        loss = grounding_loss(logits, targets, batch["region_mask"], batch["phrase_mask"])
        with torch.no_grad():  # top-1 hit rate of the batch's phrases
            hit = targets.gather(2, logits.argmax(dim=2, keepdim=True)).squeeze(2)
            top1 = hit[batch["phrase_mask"]].mean()
        return {"loss": loss, "top1": top1}

    @torch.no_grad()
    def predict(self, model: nn.Module, split: str, *, device: torch.device) -> dict[tuple[int, int, str], np.ndarray]:
        """(image id, sentence index, entity id) -> proposals (R, 4) ranked best first."""
        part = self._split(split)
        out: dict[tuple[int, int, str], np.ndarray] = {}
        with EvalMode(model, self):
            for batch in self.batches(split):
                inputs = {k: v.to(device) for k, v in model_inputs(batch).items()}
                logits = model.forward_grounding(**inputs, spans=batch["spans"].to(device)).float().cpu()
                order = logits.argsort(dim=2, descending=True, stable=True)
                for i, row in enumerate(batch["index"].tolist()):
                    g = part["sentences"][row]
                    real = int(batch["region_mask"][i].sum())
                    boxes = batch["region_boxes"][i].numpy()
                    for h, entity in enumerate(part["entities"][row]):
                        key = (g.image_id, g.sentence_index, entity)
                        if key not in out:  # an entity mentioned twice keeps its first mention's ranking
                            ranked = order[i, h].numpy()
                            out[key] = boxes[ranked[ranked < real]]
        return out

    def evaluate(self, model: nn.Module, split: str, *, device: torch.device) -> dict[str, float]:
        part = self._split(split)
        predictions = self.predict(model, split, device=device)
        m = grounding_recall(part["sentences"], predictions)
        return {"r1": m.overall.r1, "r5": m.overall.r5, "r10": m.overall.r10}

    def example_batch(self, split: str, index: int) -> tuple[dict[str, Tensor], dict[str, Any]]:
        part = self._split(split)
        batch = self._collate(part, [index])
        g = part["sentences"][index]
        boxed = [p for p in g.phrases if p.boxes]
        return batch, {"image_id": g.image_id, "image_path": self.data.image_path(g.image_id, "entities"),
                       "words": self.data.vocab.decode(part["tokens"][index].tolist(), skip_specials=False),
                       "sentence": g.sentence, "phrases": [p.text for p in boxed],
                       "phrase_boxes": [p.ground_truth_box for p in boxed]}


@register_task("grounding")
@dataclass
class GroundingTaskConfig(VLTaskConfig):
    """Phrase grounding on the data section's Flickr30k Entities folder (decoder layer default 2)."""

    def build(self, *, name: str, data: Any, model: nn.Module, train: TrainConfig) -> GroundingTask:
        layer = self.attach(name=name, kind="grounding", dataset="entities", data=data, model=model)
        return GroundingTask(name=name, data=data, layer=layer, batch_size=self.batch_size,
                             eval_batch_size=self.eval_batch_size, seed=train.seed * 7919 + 3)
