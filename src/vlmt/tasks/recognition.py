"""Visual recognition on Visual Genome regions: the SVLR object loss (Eq. 1) and attribute
loss (Eq. 2), a tensor batch type, and the task object that maps a batch to losses.

Paper: papers/svlr-aligned-image-word-iccv2017.txt, Sec. 3.2.2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vlmt.models.svlr import SVLR
from vlmt.tasks.global_batch import global_mean, global_sum


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


@dataclass
class RecognitionBatch:
    """M Visual Genome regions with their labels (what the recognition collate provides).

    Object columns are the model's label set O followed by X extra words (hypernyms of true
    labels that are not in O, with their word vectors); attribute columns are the label set T.
    """

    region_features: torch.Tensor  # (M, D) float
    object_targets: torch.Tensor  # (M, K_o + X) bool: labels and their hypernyms (H_j)
    attribute_targets: torch.Tensor  # (M, K_a) bool (T_j)
    extra_object_vectors: torch.Tensor | None = None  # (X, V) word vectors of the extra columns
    region_mask: torch.Tensor | None = None  # (M,) bool, False for padding

    def to(self, device: torch.device | str) -> "RecognitionBatch":
        return RecognitionBatch(**{k: (v.to(device) if v is not None else None) for k, v in self.__dict__.items()})


class RecognitionTask:
    """Maps a `RecognitionBatch` to the object and attribute losses of an `SVLR` model."""

    name = "recognition"

    def __init__(self, model: SVLR, *, eta_obj: float = 1.0, alpha_obj: float = 1.0, alpha_atr: float = 1.0):
        self.model = model
        self.eta_obj = eta_obj
        self.alpha_obj = alpha_obj
        self.alpha_atr = alpha_atr

    def __call__(self, batch: RecognitionBatch) -> dict[str, torch.Tensor]:
        extra = batch.extra_object_vectors
        obj, atr = self.model.recognition_scores(batch.region_features, batch.region_mask,
                                                 extra_object_vectors=extra)
        k_o = self.model.config.num_objects
        label_set = torch.zeros(obj.shape[1], dtype=torch.bool, device=obj.device)
        label_set[:k_o] = True
        l_obj = object_loss(obj, batch.object_targets, label_set=label_set, margin=self.eta_obj,
                            row_mask=batch.region_mask)
        l_atr = attribute_loss(atr, batch.attribute_targets, row_mask=batch.region_mask)
        loss = self.alpha_obj * l_obj + self.alpha_atr * l_atr
        return {"loss": loss, "object_loss": l_obj.detach(), "attribute_loss": l_atr.detach(),
                "object_scores": obj[:, :k_o].detach(), "attribute_scores": atr.detach()}
