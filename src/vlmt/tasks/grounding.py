"""Task `grounding` (H Sec. 3.3.3): phrase localisation on Flickr30k Entities.

Head: `GroundingHead` (a phrase vector is the mean of the word features in its span; each region
is scored by sigma(p^T W i_t)) on the encoder layer `layer` (paper: 2).

One example is one sentence with every phrase whose entity has boxes (the union box for
multi-box entities). The paper counts a region as correct when its IoU with the phrase's
ground-truth box is >= 0.5 (the Flickr30k Entities protocol) and does not state the training
targets; vlmt uses exactly that criterion as binary targets (`grounding_targets`): every proposal
with IoU >= 0.5 is a positive for the phrase, every other real proposal a negative, with binary
cross-entropy over all real (phrase, proposal) pairs (`grounding_loss`). Evaluation: each phrase
ranks the proposals by score; Recall@1/5/10 of the Flickr30k Entities protocol
(`vlmt.metrics.grounding`): keys `r1 r5 r10`, in percent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from vlmt import pictures as P
from vlmt.config import register_task
from vlmt.data.text import align_words
from vlmt.errors import ConfigError, DataError, InvalidInput
from vlmt.metrics.grounding import grounding_recall
from vlmt.models.encoders import WordRegionEncoder
from vlmt.models.heads.grounding import GroundingHead
from vlmt.tasks.base import EvalMode, move_to
from vlmt.tasks.capabilities import IMAGE, Picture, Runtime, capability, evenly_spaced, text, texts
from vlmt.tasks.collate import gather_regions, pad_tokens
from vlmt.tasks.encoder_task import EncoderTask, EncoderTaskConfig
from vlmt.tasks.global_batch import global_mean
from vlmt.tasks.vl_data import caption_tokens


class GroundingTask(EncoderTask):
    primary_metric = "r1"
    higher_is_better = True
    kind = "grounding"

    def __init__(self, *, name: str, config: GroundingTaskConfig, data: Any, model: WordRegionEncoder, seed: int):
        super().__init__(name=name, config=config, data=data, seed=seed)
        self.head = GroundingHead(dim=model.config.dim)
        self._splits: dict[str, dict[str, Any]] = {}
        if self.has_examples:
            self.store = self.data.store("entities")
            self._splits = {split: self._prepare(split) for split in self.data.entities}

    def _prepare(self, split: str) -> dict[str, Any]:
        s = self.data.entity_split(split)
        out: dict[str, list] = {"sentences": [], "tokens": [], "image_ids": [], "spans": [], "boxes": [],
                                "entities": []}
        for g in s.sentences:
            boxed = [p for p in g.phrases if p.boxes]
            if not boxed:
                continue
            alignment = align_words(g.sentence, "caption")
            if not alignment.tokens:
                raise DataError(s.path / f"{g.image_id}.txt", "sentence has no word",
                                record=f"sentence {g.sentence_index}")
            spans = []
            for p in boxed:
                try:
                    span = alignment.span(p.first_word_index, p.num_words)
                except ValueError as e:
                    raise DataError(s.path / f"{g.image_id}.txt", str(e), record=f"sentence {g.sentence_index}",
                                    field="phrase") from None
                # a phrase of punctuation only has no token: it is read as the whole sentence
                spans.append((span.start, span.stop - 1) if len(span) else (0, len(alignment.tokens) - 1))
            out["sentences"].append(g)
            out["tokens"].append(self.data.encode_words(alignment.tokens))
            out["image_ids"].append(g.image_id)
            out["spans"].append(np.asarray(spans, dtype=np.int64))
            out["boxes"].append(np.asarray([p.ground_truth_box for p in boxed], dtype=np.float32))
            out["entities"].append([p.entity_id for p in boxed])
        if not out["sentences"]:
            raise DataError(s.path, f"no phrase with a box in the {split} split")
        return out

    def _split(self, split: str) -> dict[str, Any]:
        if split not in self._splits:
            self.data.entity_split(split)
        return self._splits[split]

    def _collate(self, part: dict[str, Any], rows: list[int]) -> dict[str, Tensor]:
        tokens, lengths = pad_tokens([part["tokens"][r] for r in rows])
        batch = {"tokens": tokens, "lengths": lengths}
        batch.update(gather_regions(self.store, [part["image_ids"][r] for r in rows]))
        h = max(len(part["spans"][r]) for r in rows)
        spans = np.zeros((len(rows), h, 2), dtype=np.int64)  # filled in numpy: a tenth of torch's cost per row
        boxes = np.zeros((len(rows), h, 4), dtype=np.float32)
        phrase_mask = np.zeros((len(rows), h), dtype=bool)
        for i, r in enumerate(rows):
            n = len(part["spans"][r])
            spans[i, :n] = part["spans"][r]
            boxes[i, :n] = part["boxes"][r]
            phrase_mask[i, :n] = True
        batch.update(spans=torch.from_numpy(spans), phrase_boxes=torch.from_numpy(boxes),
                     phrase_mask=torch.from_numpy(phrase_mask), index=torch.tensor(rows, dtype=torch.int64))
        return batch

    def logits(self, model: WordRegionEncoder, batch: dict[str, Tensor]) -> Tensor:
        """(B, H, T) phrase-region logits (Eq. 10 before the sigmoid) of the batch's phrase spans
        (B, H, 2), inclusive 0-based word indices; padded regions get a very low logit."""
        encoded = self.encode(model, batch)
        return self.head(encoded.words, encoded.regions, batch["spans"], encoded.region_mask)

    def forward(self, model: WordRegionEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = self.logits(model, batch)  # (B, H, T)
        targets = grounding_targets(batch["phrase_boxes"], batch["region_boxes"], batch["region_mask"])
        loss = grounding_loss(logits, targets, batch["region_mask"], batch["phrase_mask"])
        with torch.no_grad():  # top-1 hit rate of the batch's phrases
            hit = targets.gather(2, logits.argmax(dim=2, keepdim=True)).squeeze(2)
            top1 = hit[batch["phrase_mask"]].mean()
        return {"loss": loss, "top1": top1}

    @torch.no_grad()
    def predict(self, model: WordRegionEncoder, split: str, *, device: torch.device
                ) -> dict[tuple[int, int, str], np.ndarray]:
        """(image id, sentence index, entity id) -> proposals (R, 4) ranked best first."""
        part = self._split(split)
        out: dict[tuple[int, int, str], np.ndarray] = {}
        with EvalMode(model, self):
            for batch in self.batches(split):
                logits = self.logits(model, move_to(batch, device)).float().cpu()
                order = logits.argsort(dim=2, descending=True, stable=True)
                for i, row in enumerate(batch["index"].tolist()):
                    g = part["sentences"][row]
                    real = int(batch["region_mask"][i].sum())
                    boxes = batch["region_boxes"][i].numpy()
                    for h, entity in enumerate(part["entities"][row]):
                        key = (g.image_id, g.sentence_index, entity)
                        if key not in out:  # an entity mentioned twice keeps its first mention's ranking
                            ranked = order[i, h].numpy()
                            out[key] = boxes[ranked[ranked < real]]
        return out

    def evaluate(self, model: WordRegionEncoder, split: str, *, device: torch.device) -> dict[str, float]:
        part = self._split(split)
        predictions = self.predict(model, split, device=device)
        m = grounding_recall(part["sentences"], predictions)
        return {"r1": m.overall.r1, "r5": m.overall.r5, "r10": m.overall.r10}

    @torch.no_grad()
    def attention_maps(self, model: WordRegionEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """"phrase_regions" (B, P, T): the sigmoid score of every region for every phrase of the
        batch's spans (0 on padded regions), for pictures. Runs in eval mode."""
        with EvalMode(model, self):
            logits = self.logits(model, batch)
            return {"phrase_regions": torch.sigmoid(logits) * batch["region_mask"][:, None, :].to(logits.dtype)}

    @capability("ground", summary="the best region of every noun phrase of a sentence",
                inputs=(IMAGE, text("sentence", "the sentence whose phrases to ground"),
                        texts("phrases", "phrases of the sentence to ground (default: found by the phrase "
                                         "lexicon of the training data)", required=False)),
                returns="[{phrase, box [x1, y1, x2, y2], score}]",
                example='model.ground("picture.png", "a red square next to a blue circle")',
                result=lambda full: full["phrases"], tab="Ground")
    @torch.no_grad()
    def ground(self, runtime: Runtime, image: Any = None, sentence: str = "", *,
               phrases: Sequence[str] | None = None, regions: Any = None, boxes: Any = None) -> dict[str, Any]:
        """The top region of each noun phrase of `sentence` (found by the phrase lexicon of the
        training data, or given as `phrases`)."""
        feats, box, pixels = runtime.regions(image, regions=regions, boxes=boxes)
        words = caption_tokens(sentence)
        tokens, lengths, unknown = self.tokens(words, runtime.device, what="sentence")
        spans = self.phrase_spans(words, phrases)
        out: list[dict[str, Any]] = []
        if spans:
            features, mask = self.region_batch([feats], runtime.device)
            batch = {"tokens": tokens, "lengths": lengths, "region_features": features, "region_mask": mask,
                     "spans": torch.tensor([spans], device=runtime.device)}
            scores = self.attention_maps(runtime.model, batch)["phrase_regions"][0].float().cpu()  # (P, T)
            for (first, last), row in zip(spans, scores):
                best = int(row.argmax())
                out.append({"phrase": " ".join(words[first:last + 1]), "box": [float(v) for v in box[best]],
                            "score": float(row[best])})
        return {"sentence": sentence, "words": words, "unknown_words": unknown, "phrases": out, "boxes": box,
                "pixels": pixels}

    def phrase_spans(self, words: list[str], phrases: Sequence[str] | None) -> list[tuple[int, int]]:
        """Inclusive word spans of the phrases of a tokenised sentence: given, or by the lexicon."""
        if not phrases:
            if self.assets.phrases is None:
                raise ConfigError("ground: the model keeps no phrase lexicon; pass phrases=[...]")
            return self.assets.phrases.chunks(words)
        spans = []
        for phrase in phrases:
            toks = caption_tokens(phrase)
            at = next((i for i in range(len(words) - len(toks) + 1) if words[i:i + len(toks)] == toks), None)
            if not toks or at is None:
                raise InvalidInput(f"phrases: {phrase!r} is not in the sentence")
            spans.append((at, at + len(toks) - 1))
        return spans

    def phrase_regions(self, model: WordRegionEncoder, batch: dict[str, Tensor], spans: Sequence[tuple[int, int]]
                       ) -> Tensor:
        """(1, P, T) scores of every region for each of the `spans` of a one-sentence batch (pictures)."""
        return self.attention_maps(model, {**batch, "spans": torch.tensor([list(spans)])})["phrase_regions"]

    @torch.no_grad()
    def pictures(self, model: WordRegionEncoder, split: str, *, count: int, out: Path, peers: Mapping[str, Any]
                 ) -> list[Picture]:
        """The grounding of `count` sentences of `split`: the top-1 region of each phrase (solid) and
        the annotated box (dashed)."""
        drawn = []
        for index in evenly_spaced(self.num_examples(split), count):
            batch, info = self.example_batch(split, index)
            real = int(batch["region_mask"][0].sum())
            boxes = batch["region_boxes"][0, :real].numpy()
            spans = batch["spans"][0]
            scores = self.attention_maps(model, batch)["phrase_regions"]
            predicted = boxes[scores[0, :, :real].argmax(dim=1).numpy()]
            truth = [np.asarray(b) if b is not None else None for b in info["phrase_boxes"]]
            phrases = list(info["phrases"])
            if len(phrases) != len(predicted):  # fall back to the words the model saw
                words = info["words"]
                phrases = [" ".join(words[a:b + 1]) for a, b in spans.tolist()]
                truth = [b for b in batch["phrase_boxes"][0].numpy()]
            path = P.grounding_figure(out / f"grounding_{index:05d}.png", image=info["image_path"], phrases=phrases,
                                      predicted=predicted, truth=truth, sentence=info["sentence"],
                                      title=f"grounding, image {info['image_id']}")
            drawn.append(Picture(path, f"Grounding of \"{info['sentence']}\" (image {info['image_id']}): top-1 "
                                       f"region per phrase (solid) and the annotated box (dashed)"))
        return drawn

    def example_batch(self, split: str, index: int) -> tuple[dict[str, Tensor], dict[str, Any]]:
        part = self._split(split)
        batch = move_to(self._collate(part, [index]), torch.device("cpu"))  # features, not store rows
        g = part["sentences"][index]
        boxed = [p for p in g.phrases if p.boxes]
        return batch, {"image_id": g.image_id, "image_path": self.data.image_path(g.image_id, "entities"),
                       "words": self.data.vocab.decode(part["tokens"][index].tolist(), skip_specials=False),
                       "sentence": g.sentence, "phrases": [p.text for p in boxed],
                       "phrase_boxes": [p.ground_truth_box for p in boxed]}


@register_task("grounding")
@dataclass
class GroundingTaskConfig(EncoderTaskConfig):
    """Phrase grounding on the data section's Flickr30k Entities folder; the head reads encoder
    layer `layer` (paper: 2)."""

    stream_offset: ClassVar[int] = 3  # its batch order's seed offset, as documented results were drawn

    layer: int = 2

    def build(self, *, name: str, data: Any, model: Any, seed: int) -> GroundingTask:
        data, model = self.check(name=name, kind="grounding", dataset="entities", data=data, model=model)
        return GroundingTask(name=name, config=self, data=data, model=model, seed=seed)


POSITIVE_IOU = 0.5


def box_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """IoU of (..., A, 4) and (..., B, 4) pixel boxes x1, y1, x2, y2 -> (..., A, B)."""
    a = boxes_a[..., :, None, :]
    b = boxes_b[..., None, :, :]
    inter_w = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp_min(0)
    inter_h = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp_min(0)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0]).clamp_min(0) * (a[..., 3] - a[..., 1]).clamp_min(0)
    area_b = (b[..., 2] - b[..., 0]).clamp_min(0) * (b[..., 3] - b[..., 1]).clamp_min(0)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))


def grounding_targets(
    phrase_boxes: Tensor, proposals: Tensor, region_mask: Tensor, *, threshold: float = POSITIVE_IOU
) -> Tensor:
    """(B, H, 4) ground-truth box per phrase (the union box for multi-box entities), (B, T, 4)
    proposals and (B, T) region mask -> (B, H, T) float targets, 1 where IoU >= threshold and the
    proposal is real."""
    iou = box_iou(phrase_boxes.float(), proposals.float())  # (B, H, T)
    return ((iou >= threshold) & region_mask.bool()[:, None, :]).float()


def grounding_loss(logits: Tensor, targets: Tensor, region_mask: Tensor, phrase_mask: Tensor) -> Tensor:
    """Mean binary cross-entropy over real (phrase, proposal) pairs.

    logits, targets: (B, H, T); region_mask (B, T); phrase_mask (B, H) marks real phrases.
    Under DDP the mean is over the pairs of all processes' batches (`global_mean`), so that
    processes holding different numbers of pairs train the objective of one process with the
    global batch. Phrases with no proposal at IoU >= 0.5 stay in as all-negative rows (they are
    misses at evaluation time too; dropping them would hide that from the loss).
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
    valid = phrase_mask.bool()[:, :, None] & region_mask.bool()[:, None, :]  # (B, H, T)
    if not bool(valid.any()):
        raise ValueError("no real (phrase, region) pair in the batch")
    per_pair = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    # the mean over the pairs of the global batch, also under DDP (vlmt.tasks.global_batch)
    return global_mean(per_pair[valid].sum(), valid.sum())
