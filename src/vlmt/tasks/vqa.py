"""VQA training objective for the hierarchical model (H Sec. 3.3.2): the decoder's sigmoid
answer scores are trained against the VQA soft scores (min(1, #humans who gave the answer / 3),
or the 10-choose-9 average of it) with binary cross-entropy."""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F


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
