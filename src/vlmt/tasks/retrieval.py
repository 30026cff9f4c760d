"""Image-caption retrieval training objectives for the hierarchical model (H Sec. 3.3.1) and its
shortlist head.

The paper scores a pair with sigma(v_I^T W v_S) but does not say which mismatched pairs it
trains against. With cross-attention every scored pair costs a full encoder pass, so scoring
all B x B in-batch pairs (as embedding models do for hard-negative mining) is B times the cost
of the positives. vlmt pairs each positive with one mismatched caption for its image and one
mismatched image for its caption, drawn from the same batch (so both retrieval directions are
trained), and weighs positives and negatives equally in a binary cross-entropy, which matches
the sigmoid relevance score of Eq. 7.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def retrieval_pairs(
    image_ids: Tensor, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Pairs to score for a batch of B matched (image, caption) examples.

    Returns (image_index, caption_index, target), each (3B,): the B positives, then for each
    example a caption of another example (negative caption for its image) and an image of another
    example (negative image for its caption). Partners are drawn uniformly from the examples
    whose image id differs; a target is 1 exactly when the two share an image id, so an example
    whose every partner shows the same image keeps a (correctly labelled) positive pair.
    """
    ids = image_ids.reshape(-1)
    b = ids.shape[0]
    index = torch.arange(b, device=ids.device)
    neg_caption = _partners(ids, generator)
    neg_image = _partners(ids, generator)
    image_index = torch.cat([index, index, neg_image])
    caption_index = torch.cat([index, neg_caption, index])
    target = (ids[image_index] == ids[caption_index]).float()
    return image_index, caption_index, target


def _partners(ids: Tensor, generator: torch.Generator | None) -> Tensor:
    """For each example, a uniformly drawn other example, preferring a different image id."""
    b = ids.shape[0]
    different = ids[:, None] != ids[None, :]  # (B, B)
    not_self = ~torch.eye(b, dtype=torch.bool, device=ids.device)
    # priority 2: other image; 1: other example of the same image; 0: itself (B = 1 only)
    priority = different.float() + not_self.float()
    noise = torch.rand(b, b, generator=generator).to(ids.device)  # uniform within a priority
    return (priority + noise).argmax(dim=1)


def retrieval_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Balanced binary cross-entropy on relevance logits: mean over positives and mean over
    negatives, averaged, so the 1:2 ratio of `retrieval_pairs` does not bias the score. A batch
    with only one kind of pair uses that kind alone."""
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    per_pair = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    positive = target > 0.5
    parts = [per_pair[sel].mean() for sel in (positive, ~positive) if bool(sel.any())]
    return torch.stack(parts).mean()


def shortlist_loss(image_embeddings: Tensor, caption_embeddings: Tensor, image_ids: Tensor, *,
                   temperature: float = 0.05) -> Tensor:
    """Symmetric in-batch contrastive loss of the dual-encoder shortlist head (not in the paper).

    Row b of both embeddings comes from example b, an (image, caption) pair; all B x B pairs are
    scored by cosine / temperature. For each caption, every column showing its image is a
    positive (a batch may hold several captions of one image): the loss is minus the log of the
    softmax mass on the positives, averaged over captions, and the same over images, then the
    two directions are averaged. Cheap: no cross-attention runs for the B x B pairs.
    """
    if image_embeddings.shape != caption_embeddings.shape or image_embeddings.dim() != 2:
        raise ValueError(f"image {tuple(image_embeddings.shape)} and caption {tuple(caption_embeddings.shape)} "
                         f"embeddings must both be (B, e)")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    ids = image_ids.reshape(-1)
    logits = caption_embeddings.float() @ image_embeddings.float().T / temperature  # (B captions, B images)
    positive = ids[:, None] == ids[None, :]

    def direction(scores: Tensor) -> Tensor:
        log_all = torch.logsumexp(scores, dim=1)
        log_pos = torch.logsumexp(scores.masked_fill(~positive, float("-inf")), dim=1)
        return (log_all - log_pos).mean()

    return 0.5 * (direction(logits) + direction(logits.T))
