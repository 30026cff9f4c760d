"""Visual grounding training objective for the hierarchical model (H Sec. 3.3.3).

The paper scores each (phrase, region) pair with sigma(p^T W i_t) and counts a region as correct
when its IoU with the phrase's ground-truth box is >= 0.5 (Flickr30k Entities protocol); it does
not state the training targets. vlmt uses exactly that criterion as binary targets: every
proposal with IoU >= 0.5 is a positive for the phrase, every other real proposal a negative,
with binary cross-entropy over all real (phrase, proposal) pairs.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from vlmt.tasks.global_batch import global_mean

POSITIVE_IOU = 0.5


def box_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """IoU of (..., A, 4) and (..., B, 4) pixel boxes x1, y1, x2, y2 -> (..., A, B)."""
    a = boxes_a[..., :, None, :]
    b = boxes_b[..., None, :, :]
    inter_w = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp_min(0)
    inter_h = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp_min(0)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0]).clamp_min(0) * (a[..., 3] - a[..., 1]).clamp_min(0)
    area_b = (b[..., 2] - b[..., 0]).clamp_min(0) * (b[..., 3] - b[..., 1]).clamp_min(0)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))


def grounding_targets(
    phrase_boxes: Tensor, proposals: Tensor, region_mask: Tensor, *, threshold: float = POSITIVE_IOU
) -> Tensor:
    """(B, H, 4) ground-truth box per phrase (the union box for multi-box entities), (B, T, 4)
    proposals and (B, T) region mask -> (B, H, T) float targets, 1 where IoU >= threshold and the
    proposal is real."""
    iou = box_iou(phrase_boxes.float(), proposals.float())  # (B, H, T)
    return ((iou >= threshold) & region_mask.bool()[:, None, :]).float()


def grounding_loss(logits: Tensor, targets: Tensor, region_mask: Tensor, phrase_mask: Tensor) -> Tensor:
    """Mean binary cross-entropy over real (phrase, proposal) pairs.

    logits, targets: (B, H, T); region_mask (B, T); phrase_mask (B, H) marks real phrases.
    Under DDP the mean is over the pairs of all processes' batches (`global_mean`), so that
    processes holding different numbers of pairs train the objective of one process with the
    global batch. Phrases with no proposal at IoU >= 0.5 stay in as all-negative rows (they are
    misses at evaluation time too; dropping them would hide that from the loss).
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
    valid = phrase_mask.bool()[:, :, None] & region_mask.bool()[:, None, :]  # (B, H, T)
    if not bool(valid.any()):
        raise ValueError("no real (phrase, region) pair in the batch")
    per_pair = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    # the mean over the pairs of the global batch, also under DDP (vlmt.tasks.global_batch)
    return global_mean(per_pair[valid].sum(), valid.sum())
