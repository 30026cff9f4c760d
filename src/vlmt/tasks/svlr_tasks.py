"""SVLR as trainer tasks: the registered model type `svlr` and the task types
`svlr_recognition` (Eq. 1-2 on Genome regions), `svlr_vqa_mc` (Eq. 3-8 on VQA v1 multiple
choice) and `svlr_zero_shot` (Eq. 9; evaluation only).

All three read the `svlr_datasets` data section (vlmt.data.svlr_datasets). Joint training is the
trainer's `joint` schedule: every scheduled task every step, the loss being
`sum_task loss_weight * task loss` (Eq. 10 with `alpha_ans` = the VQA task's loss_weight and
`alpha_obj`, `alpha_atr` = the recognition task's loss_weight times its own `object_weight`,
`attribute_weight`).

The zero-shot task has no loss: list the trained tasks in `schedule.order` and leave it out;
the trainer still builds and evaluates it at every validation (see configs/svlr_zero_shot_world.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
from torch import nn

from vlmt.config import ModelConfig, TaskConfig, TrainConfig, register_model, register_task
from vlmt.data.svlr_datasets import GenomeRegion, MCQuestion, SVLRData
from vlmt.errors import ConfigError
from vlmt.metrics import recognition as rec_metrics
from vlmt.metrics.vqa_multiple_choice import evaluate_multiple_choice
from vlmt.models.svlr import SVLR, SVLRConfig
from vlmt.tasks.base import EpochBatchSampler
from vlmt.tasks.recognition import RecognitionBatch, attribute_loss, object_loss
from vlmt.tasks.svlr_collate import recognition_batch, vqa_batch
from vlmt.tasks.vqa_mc import VQAMCBatch, answer_ranking_loss, predict_choices

# --------------------------------------------------------------------------- model


@register_model("svlr")
@dataclass
class SVLRModelConfig(ModelConfig):
    """SVLR (vlmt.models.svlr). Word, region and label-set sizes come from the data section.

    recognition_vectors: "shared" is Joint SVLR (labels scored with g(label));
    "per_class" is the Joint Multitask baseline (one learned vector per label; g not shared).
    """

    embed_dim: int = 300
    word_hidden: int = 300
    region_hidden: int = 2048
    fusion_dim: int = 2500
    region_output_norm: bool = True
    recognition_vectors: Literal["shared", "per_class"] = "shared"

    def validate(self) -> str | None:
        for key in ("embed_dim", "word_hidden", "region_hidden", "fusion_dim"):
            if getattr(self, key) < 1:
                return f"{key} must be >= 1, got {getattr(self, key)}"
        return None

    def build(self, *, data: Any) -> SVLR:
        data = _need_data(data, "model")
        model = SVLR(SVLRConfig(word_dim=data.word_dim, region_dim=data.region_dim, embed_dim=self.embed_dim,
                                word_hidden=self.word_hidden, region_hidden=self.region_hidden,
                                region_output_norm=self.region_output_norm,
                                num_objects=len(data.object_labels), num_attributes=len(data.attribute_labels),
                                fusion_dim=self.fusion_dim, recognition_vectors=self.recognition_vectors))
        objects, attributes = data.label_vectors()
        model.set_label_vectors(objects=torch.from_numpy(objects), attributes=torch.from_numpy(attributes))
        return model


def _need_data(data: Any, where: str) -> SVLRData:
    if not isinstance(data, SVLRData):
        raise ConfigError(f"{where}: SVLR needs the data section `type: svlr_datasets`, got {type(data).__name__}")
    return data


def _need_model(model: Any, name: str) -> SVLR:
    if not isinstance(model, SVLR):
        raise ConfigError(f"tasks.{name}: SVLR tasks need model type svlr, got {type(model).__name__}")
    return model


class _Eval:
    """Puts model and task in eval mode (BN running statistics) for a block, then restores."""

    def __init__(self, *modules: nn.Module):
        self.modules = modules

    def __enter__(self) -> None:
        self.was = [m.training for m in self.modules]
        for m in self.modules:
            m.eval()

    def __exit__(self, *exc: object) -> None:
        for m, was in zip(self.modules, self.was):
            m.train(was)


def _stream(items: Sequence, batch_size: int, *, seed: int, start: int, rank: int, world_size: int
            ) -> Iterator[list]:
    for idx in EpochBatchSampler(len(items), batch_size, seed=seed, start=start, rank=rank, world_size=world_size):
        yield [items[i] for i in idx]


def _passes(items: Sequence, batch_size: int) -> Iterator[list]:
    for i in range(0, len(items), batch_size):
        yield list(items[i:i + batch_size])


def _split(table: dict[str, list], split: str, what: str) -> list:
    if split not in table:
        raise ConfigError(f"{what}: no split {split!r} (have {', '.join(table)})")
    items = table[split]
    if not items:
        raise ConfigError(f"{what}: split {split!r} is empty")
    return items


def _key(text: str) -> str:
    return "_".join(text.replace("/", " ").split()) or "unknown"


# --------------------------------------------------------------------------- recognition


class SVLRRecognitionTask(nn.Module):
    """Visual recognition on Genome regions: Eq. 1 (objects) + Eq. 2 (attributes).

    evaluate: `object_accuracy` (top-1 over O) and `attribute_accuracy` (top-k precision over T),
    in percent, as defined in vlmt.metrics.recognition.
    """

    primary_metric = "object_accuracy"
    higher_is_better = True

    def __init__(self, *, name: str, data: SVLRData, batch_size: int, eval_batch_size: int, object_weight: float,
                 attribute_weight: float, eta_obj: float, use_hypernyms: bool, seed: int):
        super().__init__()
        self.name = name
        self.data = data
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.object_weight = object_weight
        self.attribute_weight = attribute_weight
        self.eta_obj = eta_obj
        self.use_hypernyms = use_hypernyms
        self.seed = seed

    def _collate(self, regions: Sequence[GenomeRegion]) -> RecognitionBatch:
        return recognition_batch(self.data, regions, use_hypernyms=self.use_hypernyms, extra_columns=True)

    def forward(self, model: SVLR, batch: RecognitionBatch) -> dict[str, torch.Tensor]:
        extra = batch.extra_object_vectors
        k_o = model.config.num_objects
        targets = batch.object_targets
        if model.config.recognition_vectors == "per_class" and extra is not None:
            extra, targets = None, targets[:, :k_o]  # h_y exist for O only: out-of-O hypernyms drop out
        obj, atr = model.recognition_scores(batch.region_features, batch.region_mask, extra_object_vectors=extra)
        label_set = torch.zeros(obj.shape[1], dtype=torch.bool, device=obj.device)
        label_set[:k_o] = True
        l_obj = object_loss(obj, targets, label_set=label_set, margin=self.eta_obj, row_mask=batch.region_mask)
        l_atr = attribute_loss(atr, batch.attribute_targets, row_mask=batch.region_mask)
        loss = self.object_weight * l_obj + self.attribute_weight * l_atr
        return {"loss": loss, "object_loss": l_obj.detach(), "attribute_loss": l_atr.detach()}

    def batches(self, split: str, *, start: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[RecognitionBatch]:
        regions = _split(self.data.genome, split, f"tasks.{self.name}")
        if split == "train":
            for chunk in _stream(regions, self.batch_size, seed=self.seed, start=start, rank=rank,
                                 world_size=world_size):
                yield self._collate(chunk)
        else:
            for chunk in _passes(regions, self.eval_batch_size):
                yield self._collate(chunk)

    @torch.no_grad()
    def scores(self, model: SVLR, split: str, *, device: torch.device) -> tuple[np.ndarray, np.ndarray, list[GenomeRegion]]:
        """Object (R, K_o) and attribute (R, K_a) scores of every region of a split."""
        regions = _split(self.data.genome, split, f"tasks.{self.name}")
        objs, atrs = [], []
        with _Eval(model, self):
            for chunk in _passes(regions, self.eval_batch_size):
                feats = recognition_batch(self.data, chunk).region_features.to(device)
                o, a = model.recognition_scores(feats)
                objs.append(o.float().cpu().numpy())
                atrs.append(a.float().cpu().numpy())
        return np.concatenate(objs), np.concatenate(atrs), regions

    def per_class_accuracy(self, model: SVLR, split: str, *, device: torch.device) -> dict[str, float]:
        """Object label -> top-1 accuracy (percent) over the split's regions of that label."""
        obj, _, regions = self.scores(model, split, device=device)
        keep = [i for i, r in enumerate(regions) if r.objects]
        acc = rec_metrics.per_class_accuracy(obj[keep], [regions[i].objects for i in keep])
        return {self.data.object_labels[c]: v for c, v in acc.items()}

    def evaluate(self, model: nn.Module, split: str, *, device: torch.device) -> dict[str, float]:
        obj, atr, regions = self.scores(_need_model(model, self.name), split, device=device)
        with_obj = [i for i, r in enumerate(regions) if r.objects]
        with_atr = [i for i, r in enumerate(regions) if r.attributes]
        out = {}
        if with_obj:
            out["object_accuracy"] = rec_metrics.object_accuracy(obj[with_obj], [regions[i].objects for i in with_obj])
        if with_atr:
            out["attribute_accuracy"] = rec_metrics.attribute_accuracy(
                atr[with_atr], [regions[i].attributes for i in with_atr])
        return out


@register_task("svlr_recognition")
@dataclass
class SVLRRecognitionConfig(TaskConfig):
    """batch_size is M (Genome regions per step; paper 200). The task loss is
    object_weight * L_obj + attribute_weight * L_atr; loss_weight scales both (Eq. 10)."""

    batch_size: int = 200
    eval_batch_size: int = 512
    object_weight: float = 1.0
    attribute_weight: float = 1.0
    eta_obj: float = 1.0
    use_hypernyms: bool = True

    def build(self, *, name: str, data: Any, model: Any, train: TrainConfig) -> SVLRRecognitionTask:
        _need_model(model, name)
        return SVLRRecognitionTask(name=name, data=_need_data(data, f"tasks.{name}"), batch_size=self.batch_size,
                                   eval_batch_size=self.eval_batch_size, object_weight=self.object_weight,
                                   attribute_weight=self.attribute_weight, eta_obj=self.eta_obj,
                                   use_hypernyms=self.use_hypernyms, seed=train.seed * 7919 + 1)


# --------------------------------------------------------------------------- VQA multiple choice


class _MultipleChoiceScoring:
    """Official multiple-choice evaluation of a split from per-question choice scores."""

    data: SVLRData
    name: str
    eval_batch_size: int

    def _scores(self, model: SVLR, batch: VQAMCBatch) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def predictions(self, model: SVLR, split: str, *, device: torch.device) -> dict[int, str]:
        """question id -> chosen answer string over a split."""
        questions = _split(self.data.vqa, split, f"tasks.{self.name}")
        out: dict[int, str] = {}
        with _Eval(model, self):  # type: ignore[arg-type]
            for chunk in _passes(questions, self.eval_batch_size):
                batch = vqa_batch(self.data, chunk)
                batch = VQAMCBatch(inputs=batch.inputs.to(device), correct=batch.correct.to(device))
                picked = predict_choices(self._scores(model, batch).float()).cpu().tolist()
                for q, k in zip(chunk, picked):
                    out[q.question_id] = q.choices[k]
        return out

    def evaluate(self, model: nn.Module, split: str, *, device: torch.device) -> dict[str, float]:
        """`accuracy` (official VQA multiple-choice scoring, percent), `qtype/<type>` per question
        type and `atype/<type>` per answer type (spaces and slashes as underscores)."""
        model = _need_model(model, self.name)
        results = self.predictions(model, split, device=device)
        questions = self.data.vqa[split]
        annotations = [{"question_id": q.question_id, "question_type": q.question_type,
                        "answer_type": q.answer_type, "answers": list(q.answers)} for q in questions]
        choices = {q.question_id: {"multiple_choices": list(q.choices)} for q in questions}
        scores = evaluate_multiple_choice(annotations, results, choices)
        out = {"accuracy": scores.overall}
        out.update({f"qtype/{_key(k)}": v for k, v in sorted(scores.per_question_type.items())})
        out.update({f"atype/{_key(k)}": v for k, v in sorted(scores.per_answer_type.items())})
        return out


class SVLRVQATask(_MultipleChoiceScoring, nn.Module):
    """Multiple-choice VQA: scores of Eq. 3-7, margin ranking loss Eq. 8."""

    primary_metric = "accuracy"
    higher_is_better = True

    def __init__(self, *, name: str, data: SVLRData, batch_size: int, eval_batch_size: int, eta_ans: float,
                 seed: int):
        nn.Module.__init__(self)
        self.name = name
        self.data = data
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.eta_ans = eta_ans
        self.seed = seed

    def forward(self, model: SVLR, batch: VQAMCBatch) -> dict[str, torch.Tensor]:
        out = model(batch.inputs)
        loss = answer_ranking_loss(out.scores, batch.correct, batch.inputs.choice_mask, margin=self.eta_ans)
        accuracy = (predict_choices(out.scores.detach()) == batch.correct).float().mean()
        return {"loss": loss, "accuracy": accuracy}

    def _scores(self, model: SVLR, batch: VQAMCBatch) -> torch.Tensor:
        return model(batch.inputs).scores

    def batches(self, split: str, *, start: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[VQAMCBatch]:
        questions = _split(self.data.vqa, split, f"tasks.{self.name}")
        if split == "train":
            for chunk in _stream(questions, self.batch_size, seed=self.seed, start=start, rank=rank,
                                 world_size=world_size):
                yield vqa_batch(self.data, chunk)
        else:
            for chunk in _passes(questions, self.eval_batch_size):
                yield vqa_batch(self.data, chunk)


@register_task("svlr_vqa_mc")
@dataclass
class SVLRVQAConfig(TaskConfig):
    """batch_size is P (questions per step, each with all its choices; paper 50)."""

    batch_size: int = 50
    eval_batch_size: int = 100
    eta_ans: float = 1.0

    def build(self, *, name: str, data: Any, model: Any, train: TrainConfig) -> SVLRVQATask:
        _need_model(model, name)
        return SVLRVQATask(name=name, data=_need_data(data, f"tasks.{name}"), batch_size=self.batch_size,
                           eval_batch_size=self.eval_batch_size, eta_ans=self.eta_ans, seed=train.seed * 7919 + 2)


class SVLRZeroShotTask(_MultipleChoiceScoring, nn.Module):
    """Zero-shot multiple-choice VQA (Eq. 9): evaluation only, no parameters and no loss."""

    primary_metric = "accuracy"
    higher_is_better = True

    def __init__(self, *, name: str, data: SVLRData, eval_batch_size: int):
        nn.Module.__init__(self)
        self.name = name
        self.data = data
        self.eval_batch_size = eval_batch_size

    def forward(self, model: SVLR, batch: Any) -> dict[str, torch.Tensor]:
        raise ConfigError(f"tasks.{self.name}: the zero-shot task is evaluated, never trained; list the trained "
                          f"tasks in schedule.order and leave {self.name!r} out")

    def _scores(self, model: SVLR, batch: VQAMCBatch) -> torch.Tensor:
        return model.zero_shot_scores(batch.inputs)[0]

    def batches(self, split: str, *, start: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[VQAMCBatch]:
        questions = _split(self.data.vqa, split, f"tasks.{self.name}")
        for chunk in _passes(questions, self.eval_batch_size):
            yield vqa_batch(self.data, chunk)


@register_task("svlr_zero_shot")
@dataclass
class SVLRZeroShotConfig(TaskConfig):
    """Evaluation-only task: leave it out of schedule.order (batch_size etc. are unused)."""

    eval_batch_size: int = 100

    def build(self, *, name: str, data: Any, model: Any, train: TrainConfig) -> SVLRZeroShotTask:
        _need_model(model, name)
        return SVLRZeroShotTask(name=name, data=_need_data(data, f"tasks.{name}"),
                                eval_batch_size=self.eval_batch_size)
