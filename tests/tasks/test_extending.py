"""A new task with a new head on the hierarchical encoder, written outside the package: nothing
under vlmt.models changes. Here: predict a VQA question's answer type (yes/no, number, other)
from a summary of the question's words at encoder layer 1, trained beside VQA by the trainer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vlmt import config as C
from vlmt.models.hierarchical import HierarchicalVL
from vlmt.models.layers.summary import SummaryAttention
from vlmt.tasks.base import EvalMode
from vlmt.tasks.collate import gather_regions, index_batches, pad_tokens
from vlmt.tasks.encoder_task import EncoderTask, EncoderTaskConfig
from vlmt.training import build  # noqa: F401  (registers the shipped types tiny.yaml names)
from vlmt.training.trainer import train

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
TYPES = ("yes/no", "number", "other")


class AnswerTypeHead(nn.Module):
    """Words (B, N, d) of one encoder layer -> (B, 3) answer-type logits."""

    def __init__(self, *, dim: int, heads: int):
        super().__init__()
        self.summary = SummaryAttention(dim=dim, heads=heads, dropout=0.0)
        self.out = nn.Linear(dim, len(TYPES))

    def forward(self, words: Tensor, word_mask: Tensor) -> Tensor:
        summary, _ = self.summary(words, word_mask)
        return self.out(summary)


class AnswerTypeTask(EncoderTask):
    primary_metric = "accuracy"
    kind = "answer_type"

    def __init__(self, *, name: str, config: EncoderTaskConfig, data: Any, model: HierarchicalVL, seed: int):
        super().__init__(name=name, config=config, data=data, seed=seed)
        self.head = AnswerTypeHead(dim=model.config.dim, heads=model.config.heads)
        self.store = data.store("vqa")
        self.examples = {split: [(data.encode_words(data.question_tokens(e)), e.image_id, TYPES.index(e.answer_type))
                                  for e in data.vqa_split(split).examples] for split in ("train", "val")}

    def batches(self, split: str, *, start: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[dict[str, Tensor]]:
        rows = self.examples[split]
        for chosen in index_batches(len(rows), self.config.batch_size, split=split, seed=self.seed, start=start,
                                    rank=rank, world_size=world_size):
            tokens, lengths = pad_tokens([rows[r][0] for r in chosen])
            batch = {"tokens": tokens, "lengths": lengths, "target": torch.tensor([rows[r][2] for r in chosen])}
            batch.update(gather_regions(self.store, [rows[r][1] for r in chosen]))
            yield batch

    def forward(self, model: HierarchicalVL, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        encoded = self.encode(model, batch)  # the layers up to config.layer, run once
        logits = self.head(encoded.words, encoded.word_mask)
        return {"loss": F.cross_entropy(logits, batch["target"])}

    @torch.no_grad()
    def evaluate(self, model: HierarchicalVL, split: str, *, device: torch.device) -> dict[str, float]:
        hits = total = 0
        with EvalMode(model, self):
            for batch in self.batches(split):
                batch = {k: v.to(device) for k, v in batch.items()}
                encoded = self.encode(model, batch)
                hits += int((self.head(encoded.words, encoded.word_mask).argmax(1) == batch["target"]).sum())
                total += len(batch["target"])
        return {"accuracy": 100.0 * hits / total}


@C.register_task("answer_type_test")
@dataclass
class AnswerTypeConfig(EncoderTaskConfig):
    layer: int = 1

    def build(self, *, name: str, data: Any, model: Any, seed: int) -> AnswerTypeTask:
        data, model = self.check(name=name, kind="answer_type_test", dataset="vqa", data=data, model=model)
        return AnswerTypeTask(name=name, config=self, data=data, model=model, seed=seed)


def test_a_task_defined_outside_the_package_trains_its_own_head_on_the_encoder(tmp_path):
    torch.set_num_threads(1)
    raw = C.read_yaml(CONFIG)
    raw["tasks"] = {"vqa": raw["tasks"]["vqa"],
                    "answer_type": {"type": "answer_type_test", "batch_size": 32, "iterations": 150, "step": 150}}
    raw["schedule"] = {"kind": "periodic", "cycle": 20}
    raw["train"].update(max_iters=120, eval_every=120, checkpoint_every=120, progress=False)
    cfg = C.from_dict(raw, source="tiny.yaml with an answer-type task")
    summary = train(cfg, tmp_path / "run")
    # the head is the task's: its weights are saved under tasks.answer_type.head
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "run" / "checkpoints" / summary["best"]["dir"] / "model.safetensors"))
    assert "tasks.answer_type.head.out.weight" in weights
    assert not any(k.startswith("model.") and "answer_type" in k for k in weights)
    # it learned: the answer type follows from the question's words, far above the majority type
    types = [e.answer_type for e in cfg.data.build(seed=0).vqa_split("val").examples]
    majority = 100.0 * max(types.count(t) for t in TYPES) / len(types)
    accuracy = summary["val"]["answer_type/accuracy"]
    assert accuracy > max(90.0, majority + 20.0), (accuracy, majority)
