"""Image-caption retrieval decoder (H Sec. 3.3.1, Eq. 4-7): an image summary and a sentence
summary (K averaged attention maps each) and a bilinear relevance score sigma(v_I^T W v_S)."""

from __future__ import annotations

from torch import Tensor, nn

from vlmt.models.layers.masking import at_least_fp32
from vlmt.models.layers.summary import SummaryAttention


class RetrievalHead(nn.Module):
    """(S_l, I_l) of matched-up pairs -> (B,) relevance logits (score = sigmoid(logit))."""

    def __init__(self, *, dim: int, heads: int = 4, dropout: float = 0.3):
        super().__init__()
        self.image_summary = SummaryAttention(dim=dim, heads=heads, dropout=dropout)
        self.sentence_summary = SummaryAttention(dim=dim, heads=heads, dropout=dropout)
        self.bilinear = nn.Linear(dim, dim, bias=False)  # W of Eq. 7
        nn.init.xavier_uniform_(self.bilinear.weight)

    def forward(self, words: Tensor, regions: Tensor, word_mask: Tensor, region_mask: Tensor) -> Tensor:
        v_image, _ = self.image_summary(regions, region_mask)  # (B, d)
        v_sentence, _ = self.sentence_summary(words, word_mask)  # (B, d)
        # v_I^T W v_S  ==  sum(v_I * (W v_S))
        return at_least_fp32((v_image * self.bilinear(v_sentence)).sum(dim=-1))  # (B,)
