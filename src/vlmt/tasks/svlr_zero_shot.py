"""Task `svlr_zero_shot` (S Sec. 3.4, Eq. 9): multiple-choice VQA answered by a model that never
trained on VQA, S = sum_R a(R) min(p_q(R), p_a(R)) (`heads.word_region.zero_shot_scores`). Evaluation only: no
head, no loss; evaluated like `svlr_vqa_mc`.

The zero-shot task has no loss: list the trained tasks in `schedule.order` and leave it out; the
trainer still builds and evaluates it at every validation (see configs/svlr_zero_shot_world.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from vlmt.config import TaskConfig, register_task
from vlmt.errors import ConfigError
from vlmt.models.encoders import WordRegionAligner
from vlmt.models.heads.word_region import zero_shot_scores
from vlmt.models.svlr import SVLRVQAInputs
from vlmt.tasks.capabilities import IMAGE, Runtime, capability, text, texts
from vlmt.tasks.collate import index_batches
from vlmt.tasks.svlr_base import need_data, need_model, split_items
from vlmt.tasks.svlr_batches import VQAMCBatch
from vlmt.tasks.svlr_vqa_mc import MultipleChoiceEvaluation


class SVLRZeroShotTask(MultipleChoiceEvaluation):
    """Zero-shot multiple-choice VQA (Eq. 9): evaluation only, no parameters and no loss."""

    def choice_scores(self, model: WordRegionAligner, inputs: SVLRVQAInputs) -> torch.Tensor:
        return zero_shot_scores(model, inputs)[0]

    @capability("choose", summary="the choices of a multiple-choice question ranked zero-shot (Eq. 9)",
                inputs=(IMAGE, text("question", "the question"), texts("choices", "the candidate answers")),
                returns="[{answer, score}], best first", when={"zero_shot": True}, priority=1, variant="zero_shot",
                example='model.choose("picture.png", "what color is the square?", ["red", "blue"], zero_shot=True)',
                result=lambda full: full["answers"], tab="Multiple choice (SVLR)")
    def choose(self, runtime: Runtime, image: Any = None, question: str = "", choices: Sequence[str] = (), *,
               regions: Any = None, boxes: Any = None) -> dict[str, Any]:
        """The choices ranked by the zero-shot score (Eq. 9): recognition alone, no VQA head."""
        return self.rank_choices(runtime, image, question, choices, regions=regions, boxes=boxes)

    def forward(self, model: WordRegionAligner, batch: Any) -> dict[str, torch.Tensor]:
        raise ConfigError(f"tasks.{self.name}: the zero-shot task is evaluated, never trained; list the trained "
                          f"tasks in schedule.order and leave {self.name!r} out")

    def batches(self, split: str, *, start: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[VQAMCBatch]:
        """One ordered pass over the split's questions (evaluation only), from its columns."""
        questions = split_items(self.data.vqa, split, f"tasks.{self.name}")
        for rows in index_batches(len(questions), self.config.eval_batch_size, split="eval", seed=0):
            yield self.batch_of_rows(split, questions, rows)


@register_task("svlr_zero_shot")
@dataclass
class SVLRZeroShotConfig(TaskConfig):
    """Evaluation-only task: leave it out of schedule.order (batch_size etc. are unused)."""

    eval_batch_size: int = 100

    def build(self, *, name: str, data: Any, model: Any, seed: int) -> SVLRZeroShotTask:
        need_model(model, name)
        return SVLRZeroShotTask(name=name, config=self, data=need_data(data, f"tasks.{name}"))
