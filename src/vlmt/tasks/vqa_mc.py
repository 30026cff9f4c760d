"""Multiple-choice VQA with SVLR: the answer margin ranking loss (Eq. 8), the batch type,
predictions, and the zero-shot scorer (Eq. 9) as a task.

Paper: papers/svlr-aligned-image-word-iccv2017.txt, Sec. 3.3-3.4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vlmt.models.svlr import SVLR, SVLRVQAInputs


def answer_ranking_loss(scores: torch.Tensor, correct: torch.Tensor, choice_mask: torch.Tensor, *,
                        margin: float = 1.0) -> torch.Tensor:
    """Eq. 8: L = 1/(N P) sum_j sum_i max(0, eta + S(Q_j, I_j, A-_j(i)) - S(Q_j, I_j, A+_j)).

    scores: (P, C) answer scores; correct: (P,) long, index of A+ in each row; choice_mask:
    (P, C) bool, False for padded choices. Every unpadded choice other than A+ is a negative;
    the sum is divided by the number of (question, negative) pairs, which is N P when every
    question has N negatives.
    """
    P, C = scores.shape
    mask = choice_mask.bool()
    rows = torch.arange(P, device=scores.device)
    if not bool(mask[rows, correct].all()):
        raise ValueError("answer_ranking_loss: a correct choice index points at a padded choice")
    safe = scores.masked_fill(~mask, 0.0)  # padded scores may be -inf; keep the arithmetic finite
    positive = safe[rows, correct]  # (P,)
    negatives = mask.clone()
    negatives[rows, correct] = False  # (P, C): the wrong choices
    hinge = (margin + safe - positive[:, None]).clamp(min=0) * negatives
    return hinge.sum() / negatives.sum().clamp(min=1)


@dataclass
class VQAMCBatch:
    """Model inputs plus the index of the correct choice of each question."""

    inputs: SVLRVQAInputs
    correct: torch.Tensor  # (P,) long

    def to(self, device: torch.device | str) -> "VQAMCBatch":
        return VQAMCBatch(inputs=self.inputs.to(device), correct=self.correct.to(device))


def predict_choices(scores: torch.Tensor) -> torch.Tensor:
    """Index of the best-scoring choice per question: (P, C) -> (P,). Padded choices are -inf."""
    return scores.argmax(dim=1)


class VQAMCTask:
    """Maps a `VQAMCBatch` to the answer loss of an `SVLR` model (Sec. 3.3, Training)."""

    name = "vqa_mc"

    def __init__(self, model: SVLR, *, eta_ans: float = 1.0, alpha_ans: float = 1.0):
        self.model = model
        self.eta_ans = eta_ans
        self.alpha_ans = alpha_ans

    def __call__(self, batch: VQAMCBatch) -> dict[str, torch.Tensor]:
        out = self.model(batch.inputs)
        l_ans = answer_ranking_loss(out.scores, batch.correct, batch.inputs.choice_mask, margin=self.eta_ans)
        predicted = predict_choices(out.scores.detach())
        accuracy = (predicted == batch.correct).float().mean()
        return {"loss": self.alpha_ans * l_ans, "answer_loss": l_ans.detach(), "accuracy": accuracy,
                "predicted": predicted, "scores": out.scores.detach(), "attention": out.attention.detach()}


class ZeroShotVQATask:
    """Zero-shot multiple-choice VQA (Sec. 3.4): no loss, Eq. 9 scores from a model trained on
    recognition only. The model is put in eval mode (BN running statistics)."""

    name = "vqa_mc_zero_shot"

    def __init__(self, model: SVLR):
        self.model = model

    @torch.no_grad()
    def __call__(self, batch: VQAMCBatch) -> dict[str, torch.Tensor]:
        was_training = self.model.training
        self.model.eval()
        try:
            scores, attention = self.model.zero_shot_scores(batch.inputs)
        finally:
            self.model.train(was_training)
        predicted = predict_choices(scores)
        return {"accuracy": (predicted == batch.correct).float().mean(), "predicted": predicted,
                "scores": scores, "attention": attention}
