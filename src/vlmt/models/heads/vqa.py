"""VQA decoder (H Sec. 3.3.2, Eq. 8): image and question summaries -> concatenation -> two-layer
MLP with d hidden units -> one logit per answer of the answer pool (sigmoid scores)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlmt.models.layers.masking import at_least_fp32
from vlmt.models.layers.summary import SummaryAttention


class VQAHead(nn.Module):
    """(S_l, I_l) -> (B, num_answers) answer logits."""

    def __init__(self, *, dim: int, num_answers: int, heads: int = 4, dropout: float = 0.3):
        super().__init__()
        if num_answers < 1:
            raise ValueError("num_answers must be >= 1")
        self.image_summary = SummaryAttention(dim=dim, heads=heads, dropout=dropout)
        self.question_summary = SummaryAttention(dim=dim, heads=heads, dropout=dropout)
        self.classifier = nn.Sequential(
            nn.Linear(2 * dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, num_answers)
        )
        for module in self.classifier:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, words: Tensor, regions: Tensor, word_mask: Tensor, region_mask: Tensor) -> Tensor:
        v_image, _ = self.image_summary(regions, region_mask)  # (B, d)
        v_question, _ = self.question_summary(words, word_mask)  # (B, d)
        return at_least_fp32(self.classifier(torch.cat([v_image, v_question], dim=-1)))  # (B, A)
