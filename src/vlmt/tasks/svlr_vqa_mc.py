"""Task `svlr_vqa_mc` (S Sec. 3.3): multiple-choice VQA (VQA v1, 18 choices) with SVLR.

Head: `MultipleChoiceScorer` (Eq. 5-7) over the encoder's region attention and label scores
(`heads.word_region.encode_vqa`, Eq. 3-4). Loss: the margin ranking loss of the correct answer against every
wrong choice (`answer_ranking_loss`, Eq. 8). Evaluation: the best-scoring choice of every
question, scored with the official VQA multiple-choice accuracy (`vlmt.metrics.vqa_multiple_choice`):
`accuracy`, `atype/<answer type>` and `qtype/<question type>`, in percent. The zero-shot task
(`vlmt.tasks.svlr_zero_shot`) evaluates the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from vlmt.config import TaskConfig, register_task
from vlmt.data.question_bins import NUM_BINS
from vlmt.errors import ConfigError, InvalidInput
from vlmt.metrics.vqa import breakdown
from vlmt.metrics.vqa_multiple_choice import evaluate_multiple_choice
from vlmt.models.encoders import WordRegionAligner
from vlmt.models.heads.multiple_choice import MultipleChoiceScorer, SVLRVQAOutput
from vlmt.models.heads.word_region import encode_vqa
from vlmt.models.svlr import SVLRVQAInputs
from vlmt.tasks.base import EvalMode
from vlmt.tasks.capabilities import IMAGE, Picture, Runtime, capability, text, texts
from vlmt.tasks.collate import index_batches
from vlmt.tasks.svlr_base import SVLRTask, need_data, need_model, split_items
from vlmt.tasks.svlr_batches import MCBatches, VQAMCBatch, vqa_batch
from vlmt.tasks.svlr_data import SVLRAssets, SVLRData
from vlmt.tasks.svlr_pictures import draw_interpretable_inference, spread_examples
from vlmt.tasks.svlr_text import MCQuestion, MCQuestions


class MultipleChoiceEvaluation(SVLRTask):
    """Official multiple-choice evaluation of a split from per-question choice scores; subclasses
    give the scores (`choice_scores`)."""

    primary_metric = "accuracy"
    higher_is_better = True

    def choice_scores(self, model: Any, inputs: Any) -> torch.Tensor:
        """(P, C) score of every choice of every question; -inf at padded choices."""
        raise NotImplementedError

    def batch_of(self, questions: list[MCQuestion], features: list[Any] | None = None) -> Any:
        """The batch of these questions: their images' regions from the store, or `features`
        (one (T, D) array per question, a new picture's regions)."""
        return vqa_batch(self.data if features is None else self.assets, questions, features=features)

    def batch_of_rows(self, split: str, questions: Sequence[MCQuestion], rows: list[int]) -> Any:
        """`batch_of` the questions at `rows` of `split`; from a built dataset's columns
        (`MCBatches`, the same batch without a Python object per question) when it has them."""
        if not isinstance(questions, MCQuestions):
            return self.batch_of([questions[i] for i in rows])
        builders: dict[str, MCBatches] = self.__dict__.setdefault("_mc_batches", {})
        builder = builders.get(split)
        if builder is None or builder.questions is not questions:
            builder = builders[split] = MCBatches(self.data, questions)
        return builder(rows)

    def checked_model(self, model: Any) -> Any:
        """The model, checked to be one this task scores with."""
        return need_model(model, self.name)

    @torch.no_grad()
    def rank_choices(self, runtime: Runtime, image: Any = None, question: str = "", choices: Sequence[str] = (), *,
                     regions: Any = None, boxes: Any = None) -> dict[str, Any]:
        """The choices of one question about a picture, ranked by this task's scores."""
        if not question.strip() or not choices:
            raise InvalidInput("choose: needs a question and at least one choice")
        feats, _, pixels = runtime.regions(image, regions=regions, boxes=boxes)
        q = self.assets.reader().question(question, list(choices))
        known = self.assets.words.__contains__
        q = type(q)(**{**q.__dict__,  # words without a vector (a word-vector file's unseen words) are left out
                       "bins": tuple(tuple(w for w in b if known(w)) for b in q.bins),
                       "nouns": tuple(w for w in q.nouns if known(w)),
                       "adjectives": tuple(w for w in q.adjectives if known(w)),
                       "choice_words": tuple(tuple(w for w in c if known(w)) for c in q.choice_words),
                       "choice_nouns": tuple(tuple(w for w in c if known(w)) for c in q.choice_nouns),
                       "choice_adjectives": tuple(tuple(w for w in c if known(w)) for c in q.choice_adjectives)})
        inputs = self.batch_of([q], features=[feats]).inputs.to(runtime.device)
        with EvalMode(runtime.model, self):
            scores = self.choice_scores(runtime.model, inputs)[0].float().cpu()
        order = scores.argsort(descending=True).tolist()
        return {"question": question, "answers": [{"answer": choices[i], "score": float(scores[i])} for i in order],
                "pixels": pixels}

    @torch.no_grad()
    def predictions(self, model: Any, split: str, *, device: torch.device) -> dict[int, str]:
        """question id -> chosen answer string over a split: the batches built from the split's
        columns (`batch_of_rows`), the chosen strings read from them (`MCQuestions.choice_text`)."""
        questions = split_items(self.data.vqa, split, f"tasks.{self.name}")
        ids, answers = [], []
        with EvalMode(model, self):
            for rows in index_batches(len(questions), self.config.eval_batch_size, split="eval", seed=0):
                inputs = self.batch_of_rows(split, questions, rows).inputs.to(device)
                picked = predict_choices(self.choice_scores(model, inputs).float()).cpu().numpy()
                ids.extend(question_ids(questions, rows))
                answers.extend(chosen_text(questions, rows, picked))
        return dict(zip(ids, answers))

    def evaluate(self, model: nn.Module, split: str, *, device: torch.device) -> dict[str, float]:
        model = self.checked_model(model)
        results = self.predictions(model, split, device=device)
        annotations, choices = official_questions(self.data.vqa[split])
        return breakdown(evaluate_multiple_choice(annotations, results, choices))


def question_ids(questions: Sequence[MCQuestion], rows: Sequence[int]) -> list[int]:
    """The ids of the questions at `rows`."""
    if isinstance(questions, MCQuestions):
        return questions.question_ids()[np.asarray(rows, dtype=np.int64)].tolist()
    return [questions[i].question_id for i in rows]


def image_ids(questions: Sequence[MCQuestion], rows: Sequence[int]) -> list[int]:
    """The image ids of the questions at `rows`."""
    if isinstance(questions, MCQuestions):
        return questions.image_ids()[np.asarray(rows, dtype=np.int64)].tolist()
    return [questions[i].image_id for i in rows]


def chosen_text(questions: Sequence[MCQuestion], rows: Sequence[int], picked: Sequence[int] | np.ndarray
                ) -> list[str]:
    """The text of choice `picked[j]` of the question at `rows[j]`: from the columns when the split
    has them (no `MCQuestion` per question)."""
    if isinstance(questions, MCQuestions):
        return questions.choice_text(rows, picked)
    return [questions[i].choices[int(k)] for i, k in zip(rows, picked)]


def official_questions(questions: Sequence[MCQuestion]
                       ) -> tuple[list[dict[str, Any]], dict[int, dict[str, list[str]]]]:
    """(annotation records, question id -> {"multiple_choices"}) of a split, what the official
    multiple-choice evaluation reads: from the columns when the split has them."""
    if isinstance(questions, MCQuestions):
        return questions.annotations(), questions.choice_lists()
    annotations = [{"question_id": q.question_id, "question_type": q.question_type,
                    "answer_type": q.answer_type, "answers": list(q.answers)} for q in questions]
    return annotations, {q.question_id: {"multiple_choices": list(q.choices)} for q in questions}


class SVLRVQATask(MultipleChoiceEvaluation):
    """Multiple-choice VQA: scores of Eq. 3-7, margin ranking loss Eq. 8."""

    def __init__(self, *, name: str, config: SVLRVQAConfig, data: SVLRData | SVLRAssets, model: WordRegionAligner,
                 seed: int):
        super().__init__(name=name, config=config, data=data)
        self.seed = seed
        with torch.no_grad():
            num_labels = sum(len(vectors) for vectors in model.label_embeddings())  # |O| + |T|, the width of f(I)
        self.head = MultipleChoiceScorer(num_labels=num_labels, embed_dim=model.embed_dim,
                                         num_question_bins=NUM_BINS, fusion_dim=config.fusion_dim)

    def outputs(self, model: WordRegionAligner, inputs: SVLRVQAInputs) -> SVLRVQAOutput:
        """Scores S(Q, I, A) of every (question, choice) pair with the attention and label scores
        behind them (Fig. 3-4)."""
        return self.head(encode_vqa(model, inputs), inputs)

    def choice_scores(self, model: WordRegionAligner, inputs: SVLRVQAInputs) -> torch.Tensor:
        return self.outputs(model, inputs).scores

    @capability("choose", summary="the choices of a multiple-choice question ranked (Eq. 7)",
                inputs=(IMAGE, text("question", "the question"), texts("choices", "the candidate answers")),
                returns="[{answer, score}], best first", when={"zero_shot": False}, variant="multiple_choice",
                example='model.choose("picture.png", "what color is the square?", ["red", "blue", "green"])',
                result=lambda full: full["answers"], tab="Multiple choice (SVLR)")
    def choose(self, runtime: Runtime, image: Any = None, question: str = "", choices: Sequence[str] = (), *,
               regions: Any = None, boxes: Any = None) -> dict[str, Any]:
        """The choices ranked by the multiple-choice head (Eq. 7)."""
        return self.rank_choices(runtime, image, question, choices, regions=regions, boxes=boxes)

    def pictures(self, model: Any, split: str, *, count: int, out: Path, peers: Mapping[str, Any]) -> list[Picture]:
        """Fig. 4 of the SVLR paper for `count` questions the model answers correctly (topped up with
        wrong ones): the region relevance of the chosen answer and the top region's predictions."""
        if split not in self.data.vqa:
            raise ConfigError(f"--split: the run's data has no VQA split {split!r} (have {', '.join(self.data.vqa)})")
        drawn = []
        for q in spread_examples(model, self, split, count):
            path = out / f"svlr_inference_{q.question_id}.png"
            info = draw_interpretable_inference(model, self, q, path)
            verdict = "right" if info["is_correct"] else f"wrong; the right one is {info['correct_answer']!r}"
            objects = ", ".join(name for name, _ in info["top_objects"])
            drawn.append(Picture(path, f"SVLR (Fig. 4), question {q.question_id}: \"{info['question']}\" - "
                                       f"chosen answer {info['answer']!r} ({verdict}); relevance of each region "
                                       f"for it, and the most relevant region's top objects: {objects}"))
        return drawn

    @torch.no_grad()
    def chosen_attention(self, model: nn.Module, split: str, *, device: torch.device) -> dict[int, np.ndarray]:
        """question id -> a(R) of the answer the model picks (Eq. 4), one weight per region of the
        image's record in the feature store: the attention Fig. 4 draws and SVLR Table 2 compares
        with human attention."""
        svlr = self.checked_model(model)
        questions = split_items(self.data.vqa, split, f"tasks.{self.name}")
        out: dict[int, np.ndarray] = {}
        with EvalMode(svlr, self):
            for rows in index_batches(len(questions), self.config.eval_batch_size, split="eval", seed=0):
                result = self.outputs(svlr, self.batch_of_rows(split, questions, rows).inputs.to(device))
                picked = predict_choices(result.scores.float())
                at = torch.arange(len(rows), device=picked.device)
                attention = result.attention[at, picked].float().cpu().numpy()  # (P, T)
                for qid, image, row in zip(question_ids(questions, rows), image_ids(questions, rows), attention):
                    out[qid] = row[: self.data.store.region_count(image)].copy()
        return out

    def forward(self, model: WordRegionAligner, batch: VQAMCBatch) -> dict[str, torch.Tensor]:
        scores = self.choice_scores(model, batch.inputs)
        loss = answer_ranking_loss(scores, batch.correct, batch.inputs.choice_mask, margin=self.config.eta_ans)
        accuracy = (predict_choices(scores.detach()) == batch.correct).float().mean()
        return {"loss": loss, "accuracy": accuracy}

    def num_examples(self, split: str) -> int:
        return len(split_items(self.data.vqa, split, f"tasks.{self.name}"))

    def batches(self, split: str, *, start: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[VQAMCBatch]:
        questions = split_items(self.data.vqa, split, f"tasks.{self.name}")
        size = self.config.batch_size if split == "train" else self.config.eval_batch_size
        for rows in index_batches(len(questions), size, split=split, seed=self.seed, start=start, rank=rank,
                                  world_size=world_size):
            yield self.batch_of_rows(split, questions, rows)


@register_task("svlr_vqa_mc")
@dataclass
class SVLRVQAConfig(TaskConfig):
    """batch_size is P (questions per step, each with all its choices; paper 50); eta_ans the
    margin of Eq. 8; fusion_dim the width of W1, W2 (beta in R^2500 in the paper)."""

    batch_size: int = 50
    eval_batch_size: int = 100
    eta_ans: float = 1.0
    fusion_dim: int = 2500

    def validate(self) -> str | None:
        if self.eval_batch_size < 1 or self.fusion_dim < 1:
            return "eval_batch_size and fusion_dim must be >= 1"
        return None

    def build(self, *, name: str, data: Any, model: Any, seed: int) -> SVLRVQATask:
        return SVLRVQATask(name=name, config=self, data=need_data(data, f"tasks.{name}"), model=need_model(model, name),
                           seed=seed)


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


def predict_choices(scores: torch.Tensor) -> torch.Tensor:
    """Index of the best-scoring choice per question: (P, C) -> (P,). Padded choices are -inf."""
    return scores.argmax(dim=1)
