"""A new task with a new head on the hierarchical encoder, written outside the package: no file of
vlmt changes. Here: predict a VQA question's answer type (yes/no, number, other) from a summary of
the question's words at encoder layer 1, trained beside VQA by the trainer. The task declares what
a trained model can do with it (`answer_type`) and draws its pictures, so the trained model answers
it from `vlmt.load`, `vlmt serve` routes it and `vlmt visualize` draws it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest
import torch
from PIL import Image, ImageDraw
from torch import Tensor, nn
from torch.nn import functional as F

import vlmt
from vlmt import config as C
from vlmt.models.hierarchical import HierarchicalVL
from vlmt.models.layers.summary import SummaryAttention
from vlmt.tasks.base import EvalMode
from vlmt.tasks.capabilities import IMAGE, Picture, Runtime, capability, text
from vlmt.tasks.collate import gather_regions, index_batches, pad_tokens
from vlmt.tasks.encoder_task import EncoderTask, EncoderTaskConfig
from vlmt.tasks.vl_data import question_tokens
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
        if self.has_examples:  # built from its data (training); from a model folder it has its head only
            self.store = data.store("vqa")
            self.examples = {split: [(data.encode_words(data.question_tokens(e)), e.image_id,
                                      TYPES.index(e.answer_type)) for e in data.vqa_split(split).examples]
                             for split in ("train", "val")}

    @capability("answer_type", summary="the answer type a question asks for", inputs=(IMAGE, text("question")),
                returns="{type, scores}", example='model.answer_type("picture.png", "how many circles are there?")',
                result=lambda full: full["type"], tab="Answer type")
    @torch.no_grad()
    def answer_type(self, runtime: Runtime, image: Any = None, question: str = "", *, regions: Any = None,
                    boxes: Any = None) -> dict[str, Any]:
        feats, _, _ = runtime.regions(image, regions=regions, boxes=boxes)
        tokens, lengths, unknown = self.tokens(question_tokens(question), runtime.device, what="question")
        features, mask = self.region_batch([feats], runtime.device)
        with EvalMode(runtime.model, self):
            encoded = self.encode(runtime.model, {"tokens": tokens, "lengths": lengths, "region_features": features,
                                                  "region_mask": mask})
            scores = torch.softmax(self.head(encoded.words, encoded.word_mask), dim=1)[0]
        return {"type": TYPES[int(scores.argmax())], "scores": dict(zip(TYPES, scores.tolist())),
                "unknown_words": unknown}

    @torch.no_grad()
    def pictures(self, model: HierarchicalVL, split: str, *, count: int, out: Path, peers: Mapping[str, Any]
                 ) -> list[Picture]:
        """A card per question: its words and the predicted answer type."""
        drawn = []
        batch = next(self.batches("val"))
        with EvalMode(model, self):
            encoded = self.encode(model, batch)
            types = self.head(encoded.words, encoded.word_mask).argmax(1).tolist()
            for i in range(min(count, len(types))):
                predicted = TYPES[types[i]]
                words = " ".join(self.data.vocab.decode(batch["tokens"][i, :int(batch["lengths"][i])].tolist()))
                card = Image.new("RGB", (360, 60), "white")
                ImageDraw.Draw(card).text((8, 8), f"{words}\n-> {predicted}", fill="black")
                path = out / f"answer_type_{i}.png"
                card.save(path)
                drawn.append(Picture(path, f"answer type of \"{words}\": {predicted}"))
        return drawn

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
    types = [e.answer_type for e in cfg.data.build(seed=0).family("vl").vqa_split("val").examples]
    majority = 100.0 * max(types.count(t) for t in TYPES) / len(types)
    accuracy = summary["val"]["answer_type/accuracy"]
    assert accuracy > max(90.0, majority + 20.0), (accuracy, majority)


def test_the_task_is_usable_from_load_serve_and_visualize_without_touching_vlmt(tmp_path):
    """The acceptance of a task written outside the package: trained on the encoder, then answered by
    `vlmt.load`, routed by `vlmt serve` (POST /api/answer_type) and drawn by `vlmt visualize`."""
    torch.set_num_threads(1)
    raw = C.read_yaml(CONFIG)
    raw["tasks"] = {"vqa": raw["tasks"]["vqa"],
                    "answer_type": {"type": "answer_type_test", "batch_size": 32, "iterations": 60, "step": 60}}
    raw["schedule"] = {"kind": "periodic", "cycle": 20}
    raw["train"].update(max_iters=60, eval_every=60, checkpoint_every=60, progress=False)
    cfg = C.from_dict(raw, source="tiny.yaml with an answer-type task")
    run = tmp_path / "run"
    train(cfg, run)
    model = vlmt.load(run)
    assert "answer_type" in model.methods and model.capability("answer_type").tab == "Answer type"
    regions = torch.rand(4, model.feature_dim).numpy()
    kind = model.answer_type(question="how many circles are there?", regions=regions)
    assert kind in TYPES
    assert model.details("answer_type", question="is the square red?", regions=regions)["task"] == "answer_type"

    pytest.importorskip("fastapi", reason="the serving extra (pip install 'vlmt[serve]') is not installed")
    from starlette.testclient import TestClient

    from vlmt.serve.app import create_app
    from vlmt.serve.inputs import Limits
    from vlmt.serve.models import load_models

    served = load_models([run], log=lambda _: None)
    client = TestClient(create_app(served, limits=Limits(), workers=1, page=False))
    assert "answer_type" in client.get("/api/health").json()["models"]["run"]["methods"]
    answered = client.post("/api/answer_type", data={"question": "how many circles are there?", "gallery": "0"})
    assert answered.status_code == 200, answered.text
    assert answered.json()["type"] in TYPES and set(answered.json()["scores"]) == set(TYPES)
    missing = client.post("/api/answer_type", data={"gallery": "0"})
    assert missing.status_code == 400 and "question" in missing.json()["error"]
    assert "/api/answer_type" in client.get("/api/openapi.json").json()["paths"]
    page = TestClient(create_app(served, limits=Limits(), workers=1, page=True)).get("/config").json()
    tabs = {c["props"].get("label"): c["props"].get("visible") for c in page["components"] if c["type"] == "tabitem"}
    assert tabs["Answer type"] is not False and tabs["Recognize (SVLR)"] is False  # the tabs its tasks ask for

    from vlmt.reports.visualize import visualize_run

    pictures = visualize_run(run, tmp_path / "pictures", split="val", count=2)
    drawn = [p for p in pictures if p.path.name.startswith("answer_type_")]
    assert len(drawn) == 2 and all(p.path.is_file() and "answer type of" in p.caption for p in drawn)
    assert (tmp_path / "pictures" / "index.html").read_text().count("answer_type_") == 2

