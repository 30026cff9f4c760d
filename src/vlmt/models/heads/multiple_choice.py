"""SVLR's multiple-choice answer scorer (S Sec. 3.3, Eq. 5-7).

For each (question, choice) pair, from the encoder's region attention a(R) and label scores
(`vlmt.models.heads.word_region.encode_vqa`):

    f(I) = sum_R a(R) [s_o(R); s_a(R)]                      image vector over O and T   (Eq. 5)
    q(Q) = [mean g(bin 1); ...; mean g(bin 4)],  a(A) = mean g(answer words)
    beta = BN(W1 f(I)) + BN(W2 [q(Q); a(A)])                                         (Eq. 6)
    S(Q, I, A) = W3 ReLU(beta)                                                       (Eq. 7)

No biases: the paper lists W1, W2, W3 and the batch norms' scales and offsets as the scorer's
parameters. Batch-norm statistics come from the real (question, choice) pairs only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from vlmt.models.heads.word_region import SVLRVQAEncoding
from vlmt.models.layers.masking import masked_mean, masked_rows
from vlmt.models.svlr import SVLRVQAInputs


@dataclass
class SVLRVQAOutput:
    """Scores and the interpretable intermediate values of Fig. 3-4."""

    scores: torch.Tensor  # (P, C) S(Q, I, A); -inf at padded choices
    attention: torch.Tensor  # (P, C, T) a(R) per (question, choice); 0 at padded regions
    object_scores: torch.Tensor  # (P, T, K_o) s_o(R)
    attribute_scores: torch.Tensor  # (P, T, K_a) s_a(R)
    image_vector: torch.Tensor = field(repr=False)  # (P, C, K_o + K_a) f(I)


class MultipleChoiceScorer(nn.Module):
    """(encoding, inputs) of P questions x C choices -> `SVLRVQAOutput` with S(Q, I, A)."""

    def __init__(self, *, num_labels: int, embed_dim: int, num_question_bins: int = 4, fusion_dim: int = 2500):
        super().__init__()
        self.w1 = nn.Linear(num_labels, fusion_dim, bias=False)
        self.b1 = nn.BatchNorm1d(fusion_dim)
        self.w2 = nn.Linear((num_question_bins + 1) * embed_dim, fusion_dim, bias=False)
        self.b2 = nn.BatchNorm1d(fusion_dim)
        self.w3 = nn.Linear(fusion_dim, 1, bias=False)
        for linear in (self.w1, self.w2, self.w3):  # Xavier, as every SVLR weight (Sec. 4)
            nn.init.xavier_uniform_(linear.weight)

    def forward(self, encoding: SVLRVQAEncoding, inputs: SVLRVQAInputs) -> SVLRVQAOutput:
        labels = torch.cat([encoding.object_scores, encoding.attribute_scores], dim=-1)  # (P, T, K_o + K_a)
        image = torch.einsum("pct,ptk->pck", encoding.attention, labels)  # f(I): (P, C, K_o + K_a), Eq. 5
        P, C = inputs.choice_mask.shape
        words = encoding.words
        q = masked_mean(words[inputs.question_bins], inputs.question_bin_mask, dim=-2).reshape(P, -1)  # (P, 4E)
        a = masked_mean(words[inputs.answer_words], inputs.answer_word_mask, dim=-2)  # (P, C, E)
        qa = torch.cat([q[:, None, :].expand(P, C, q.shape[-1]), a], dim=-1)  # (P, C, 5E)
        beta = masked_rows(lambda rows: self.b1(self.w1(rows)), image, inputs.choice_mask) + \
            masked_rows(lambda rows: self.b2(self.w2(rows)), qa, inputs.choice_mask)  # (P, C, fusion), Eq. 6
        scores = self.w3(F.relu(beta)).squeeze(-1)  # (P, C), Eq. 7
        scores = scores.masked_fill(~inputs.choice_mask, float("-inf"))
        return SVLRVQAOutput(scores=scores, attention=encoding.attention, object_scores=encoding.object_scores,
                             attribute_scores=encoding.attribute_scores, image_vector=image)
