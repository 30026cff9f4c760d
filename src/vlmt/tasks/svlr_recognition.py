"""Task `svlr_recognition` (S Sec. 3.2): objects and attributes of Visual Genome regions, scored
as inner products of region and word embeddings, f_o(R)·g(w) and f_a(R)·g(w).

Losses: the multi-label margin loss over objects with WordNet hypernyms as positives
(`object_loss`, Eq. 1) and the per-attribute binary cross-entropy weighted by the batch's positive
fraction (`attribute_loss`, Eq. 2); the task's loss is object_weight * L_obj +
attribute_weight * L_atr, and its `loss_weight` scales both (Eq. 10). Evaluation:
`object_accuracy` (top-1 over O), `object_accuracy_hypernym` (top-1 over O, a hypernym of a true
label in O also counts, as Eq. 1 trains it) and `attribute_accuracy` (top-k precision over T), in
percent (`vlmt.metrics.recognition`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vlmt.config import TaskConfig, register_task
from vlmt.metrics import recognition as rec_metrics
from vlmt.models.encoders import WordRegionAligner
from vlmt.models.heads.word_region import recognition_scores
from vlmt.tasks.base import EvalMode
from vlmt.tasks.capabilities import IMAGE, Runtime, capability, integer
from vlmt.tasks.collate import index_batches
from vlmt.tasks.global_batch import global_mean, global_sum
from vlmt.tasks.svlr_base import SVLRTask, need_data, need_model, split_items
from vlmt.tasks.svlr_batches import (
    RecognitionBatch,
    RecognitionColumns,
    hypernym_labels,
)
from vlmt.tasks.svlr_data import GenomeRegion, SVLRAssets, SVLRData


class SVLRRecognitionTask(SVLRTask):
    """Visual recognition on Genome regions: Eq. 1 (objects) + Eq. 2 (attributes).

    evaluate: `object_accuracy` (top-1 over O), `object_accuracy_hypernym` (a label's hypernym in
    O counts too) and `attribute_accuracy` (top-k precision over T), in percent, as defined in
    vlmt.metrics.recognition.
    """

    primary_metric = "object_accuracy"
    higher_is_better = True

    def __init__(self, *, name: str, config: SVLRRecognitionConfig, data: SVLRData | SVLRAssets, seed: int):
        super().__init__(name=name, config=config, data=data)
        self.seed = seed
        self._columns: dict[str, RecognitionColumns] = {}

    def columns(self, split: str) -> RecognitionColumns:
        """The split's regions as batch columns (`RecognitionColumns`), worked out on first use."""
        if split not in self._columns:
            self._columns[split] = RecognitionColumns(
                self.data, split_items(self.data.genome, split, f"tasks.{self.name}"),
                use_hypernyms=self.config.use_hypernyms, extra_columns=True)
        return self._columns[split]

    def forward(self, model: WordRegionAligner, batch: RecognitionBatch) -> dict[str, torch.Tensor]:
        extra = batch.extra_object_vectors
        targets = batch.object_targets  # (M, K_o + X): the label set O, then the X extra columns
        k_o = targets.shape[1] - (extra.shape[0] if extra is not None else 0)
        if not model.labels_are_words and extra is not None:
            extra, targets = None, targets[:, :k_o]  # h_y exist for O only: out-of-O hypernyms drop out
        obj, atr = recognition_scores(model, batch.region_features, batch.region_mask, extra_object_vectors=extra)
        label_set = torch.zeros(obj.shape[1], dtype=torch.bool, device=obj.device)
        label_set[:k_o] = True
        l_obj = object_loss(obj, targets, label_set=label_set, margin=self.config.eta_obj, row_mask=batch.region_mask)
        l_atr = attribute_loss(atr, batch.attribute_targets, row_mask=batch.region_mask)
        loss = self.config.object_weight * l_obj + self.config.attribute_weight * l_atr
        return {"loss": loss, "object_loss": l_obj.detach(), "attribute_loss": l_atr.detach()}

    def num_examples(self, split: str) -> int:
        return len(split_items(self.data.genome, split, f"tasks.{self.name}"))

    def batches(self, split: str, *, start: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[RecognitionBatch]:
        """The split's regions in batches from its columns (`RecognitionColumns`): the tensors
        `recognition_batch` builds from the regions themselves, without a `GenomeRegion` per row."""
        columns = self.columns(split)
        size = self.config.batch_size if split == "train" else self.config.eval_batch_size
        for rows in index_batches(len(columns), size, split=split, seed=self.seed, start=start, rank=rank,
                                  world_size=world_size):
            yield columns(rows)

    @torch.no_grad()
    def scores(self, model: WordRegionAligner, split: str, *, device: torch.device
               ) -> tuple[np.ndarray, np.ndarray, list[GenomeRegion]]:
        """Object (R, K_o) and attribute (R, K_a) scores of every region of a split."""
        regions = split_items(self.data.genome, split, f"tasks.{self.name}")
        columns = self.columns(split)
        objs, atrs = [], []
        with EvalMode(model, self):
            for rows in index_batches(len(columns), self.config.eval_batch_size, split="eval", seed=0):
                feats = columns.features(rows).to(device)
                o, a = recognition_scores(model, feats)
                objs.append(o.float().cpu().numpy())
                atrs.append(a.float().cpu().numpy())
        return np.concatenate(objs), np.concatenate(atrs), regions

    def per_class_accuracy(self, model: WordRegionAligner, split: str, *, device: torch.device) -> dict[str, float]:
        """Object label -> top-1 accuracy (percent) over the split's regions of that label."""
        obj, _, regions = self.scores(model, split, device=device)
        keep = [i for i, r in enumerate(regions) if r.objects]
        acc = rec_metrics.per_class_accuracy(obj[keep], [regions[i].objects for i in keep])
        return {self.data.object_labels[c]: v for c, v in acc.items()}

    def checked_model(self, model: Any) -> Any:
        """The model, checked to be one this task scores with."""
        return need_model(model, self.name)

    @torch.no_grad()
    def scores_for_image(self, model: Any, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Object (T, K_o) and attribute (T, K_a) scores of one picture's regions (T, D); eval mode."""
        with EvalMode(model, self):
            return recognition_scores(model, features)

    @capability("recognize", summary="the objects (f_o . g) and attributes (sigmoid of f_a . g) of every region",
                inputs=(IMAGE, integer("top_k", 3, "labels per region")),
                returns="[{box, objects: [{label, score}], attributes: [{label, score}]}]",
                example='model.recognize("picture.png")', result=lambda full: full["regions"],
                tab="Recognize (SVLR)")
    @torch.no_grad()
    def recognize(self, runtime: Runtime, image: Any = None, *, top_k: int = 3, regions: Any = None,
                  boxes: Any = None) -> dict[str, Any]:
        """The `top_k` object and attribute labels of every region of a picture."""
        feats, box, pixels = runtime.regions(image, regions=regions, boxes=boxes)
        objects, attributes = self.scores_for_image(runtime.model, torch.from_numpy(feats).to(runtime.device))
        objects, attributes = objects.float().cpu(), torch.sigmoid(attributes.float()).cpu()
        labels_o, labels_a = self.assets.object_labels, self.assets.attribute_labels
        k_o, k_a = min(top_k, len(labels_o)), min(top_k, len(labels_a))
        out = []
        for b, o, a in zip(box, objects, attributes):
            out.append({"box": [float(v) for v in b],
                        "objects": [{"label": labels_o[i], "score": float(o[i])} for i in o.topk(k_o).indices],
                        "attributes": [{"label": labels_a[i], "score": float(a[i])} for i in a.topk(k_a).indices]})
        return {"regions": out, "boxes": box, "pixels": pixels}

    def evaluate(self, model: nn.Module, split: str, *, device: torch.device) -> dict[str, float]:
        obj, atr, regions = self.scores(self.checked_model(model), split, device=device)
        with_obj = [i for i, r in enumerate(regions) if r.objects]
        with_atr = [i for i, r in enumerate(regions) if r.attributes]
        out = {}
        if with_obj:
            labels = [regions[i].objects for i in with_obj]
            out["object_accuracy"] = rec_metrics.object_accuracy(obj[with_obj], labels)
            out["object_accuracy_hypernym"] = rec_metrics.object_accuracy_hypernym(
                obj[with_obj], labels, hypernym_labels(self.data, [regions[i] for i in with_obj]))
        if with_atr:
            out["attribute_accuracy"] = rec_metrics.attribute_accuracy(
                atr[with_atr], [regions[i].attributes for i in with_atr])
        return out


@register_task("svlr_recognition")
@dataclass
class SVLRRecognitionConfig(TaskConfig):
    """batch_size is M (Genome regions per step; paper 200). The task loss is
    object_weight * L_obj + attribute_weight * L_atr; loss_weight scales both (Eq. 10)."""

    batch_size: int = 200
    eval_batch_size: int = 512
    object_weight: float = 1.0
    attribute_weight: float = 1.0
    eta_obj: float = 1.0
    use_hypernyms: bool = True

    def build(self, *, name: str, data: Any, model: Any, seed: int) -> SVLRRecognitionTask:
        need_model(model, name)
        return SVLRRecognitionTask(name=name, config=self, data=need_data(data, f"tasks.{name}"), seed=seed)



def object_loss(scores: torch.Tensor, positives: torch.Tensor, *, label_set: torch.Tensor | None = None,
                margin: float = 1.0, row_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 1: multi-label margin loss over object labels.

    L = 1/M sum_j 1/|H_j| sum_{l in H_j} 1/|O| sum_{k in O \\ H_j} max(0, eta + s_jk - s_jl)

    scores: (M, K) f_o(R_j)·g(w) for K label columns.
    positives: (M, K) bool, H_j = the region's true labels AND their hypernyms. A hypernym is a
        positive: it must itself beat every non-label by the margin and is never a negative.
    label_set: (K,) bool, the columns that belong to O (columns outside O, e.g. hypernyms with
        no place in the 1000-label set, can be positives but are never negatives); default all.
    row_mask: (M,) bool, False for padded regions. Regions with no positive column have no
        defined term (|H_j| = 0); they are left out and not counted in M.
    |O| is the size of the label set, not |O \\ H_j|, as the equation is written.
    """
    M, K = scores.shape
    if positives.shape != scores.shape:
        raise ValueError(f"positives shape {tuple(positives.shape)} != scores shape {tuple(scores.shape)}")
    positives = positives.bool()
    if label_set is None:
        label_set = torch.ones(K, dtype=torch.bool, device=scores.device)
    label_set = label_set.bool()
    rows = positives.any(dim=1)
    if row_mask is not None:
        rows = rows & row_mask.bool()
    if not bool(rows.any()):
        return global_mean(scores.sum() * 0.0, 0)  # under DDP the other processes' regions count
    s, pos = scores[rows], positives[rows]  # (M', K)
    negatives = label_set[None, :] & ~pos  # (M', K): k in O \ H_j

    # Gather each row's positives into a short padded list, so memory is M x |H|max x K
    # rather than M x K x K.
    n_pos = pos.sum(dim=1)  # (M',)
    width = int(n_pos.max())
    order = torch.argsort(pos.to(torch.int8), dim=1, descending=True, stable=True)[:, :width]  # (M', H)
    pos_scores = s.gather(1, order)  # (M', H)
    pos_valid = pos.gather(1, order)  # (M', H)
    hinge = (margin + s[:, None, :] - pos_scores[:, :, None]).clamp(min=0)  # (M', H, K)
    hinge = hinge * negatives[:, None, :] * pos_valid[:, :, None]
    per_positive = hinge.sum(dim=2) / label_set.sum().clamp(min=1)  # (M', H): 1/|O| sum_k
    per_region = per_positive.sum(dim=1) / n_pos  # (M',): 1/|H_j| sum_l
    return global_mean(per_region.sum(), per_region.shape[0])  # 1/M sum_j (M of the global batch under DDP)


def attribute_loss(logits: torch.Tensor, targets: torch.Tensor, *, row_mask: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """Eq. 2: per-attribute binary cross entropy, balanced by the batch's positive fraction.

    L = -1/M sum_j sum_t [ 1[t in T_j] (1 - G(t)) log s(x_jt) + 1[t not in T_j] G(t) log(1 - s(x_jt)) ]

    with x_jt = f_a(R_j)·g(t), s the sigmoid and G(t) the fraction of the batch's M regions that
    have attribute t (a constant of the labels, no gradient). Positives of a common attribute
    weigh little and its negatives much, and the other way round for a rare one; an attribute
    with no positive in the batch has G(t) = 0 and contributes nothing. The paper prints the
    sum of log-likelihoods; the loss minimised is its negative. It sums over attributes and
    averages over regions, as written. Regions with no attribute are kept (all negatives):
    the object and attribute losses use the same regions.

    logits: (M, K_a); targets: (M, K_a) bool; row_mask: (M,) bool, False for padded regions.
    """
    if targets.shape != logits.shape:
        raise ValueError(f"targets shape {tuple(targets.shape)} != logits shape {tuple(logits.shape)}")
    y = targets.to(logits.dtype)
    if row_mask is not None:
        keep = row_mask.bool()
        logits, y = logits[keep], y[keep]
    M = logits.shape[0]
    # the batch is the global batch under DDP: G(t) and M over every process's regions
    regions = global_sum(torch.tensor(float(M), device=logits.device))
    positives = global_sum(y.sum(dim=0))
    if float(regions) == 0:
        return logits.sum() * 0.0
    gamma = positives / regions  # (K_a,) G(t)
    log_p = F.logsigmoid(logits)  # log s(x)
    log_not_p = F.logsigmoid(-logits)  # log(1 - s(x))
    per_region = (y * (1 - gamma) * log_p + (1 - y) * gamma * log_not_p).sum(dim=1)
    return global_mean(-per_region.sum(), M)
