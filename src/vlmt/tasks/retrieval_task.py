"""Task `retrieval` (H Sec. 3.3.1): image-caption retrieval on a Karpathy caption file.

Training: each batch holds B (image, caption) pairs; `retrieval_pairs` adds, per pair, a
mismatched caption and a mismatched image from the batch, and `retrieval_loss` (balanced BCE on
the relevance logits) trains the 3B scores. Evaluation: every image x caption pair of the split
is scored (the first `captions_per_image` captions of each image; `val_images` may limit the val
split to its first N images) with the model's per-modality
caches (`encode_images`, `encode_captions`) and batched pair scoring (`score_pairs`), then
Recall@1/5/10 and median rank both ways (`vlmt.evaluation.retrieval`): keys `i2t_r1 i2t_r5
i2t_r10 t2i_r1 t2i_r5 t2i_r10 rsum i2t_medr t2i_medr`, and `seconds`, the scoring time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from vlmt.config import TrainConfig, register_task
from vlmt.errors import DataError
from vlmt.evaluation.retrieval import retrieval_metrics
from vlmt.tasks.retrieval import retrieval_loss, retrieval_pairs
from vlmt.tasks.vl_batches import EvalMode, gather_regions, index_batches, model_inputs, pad_tokens
from vlmt.tasks.vl_task import VLTask, VLTaskConfig


class RetrievalTask(VLTask):
    primary_metric = "rsum"
    higher_is_better = True
    kind = "retrieval"

    def __init__(self, *, pair_batch: int, caption_block: int, val_images: int | None, **kwargs: Any):
        super().__init__(**kwargs)
        self.pair_batch = pair_batch
        self.val_images = val_images
        self.caption_block = caption_block
        self.per_image = self.data.cfg.captions.captions_per_image
        self.store = self.data.store("captions")
        self._splits = {split: self._prepare(split) for split in self.data.captions}

    def _prepare(self, split: str) -> dict[str, Any]:
        """Every caption of the split as one example (training), and the evaluation layout."""
        s = self.data.caption_split(split)
        tokens, image_ids, caption_index = [], [], []
        for im in s.images:
            if split != "train" and len(im.captions) < self.per_image:
                raise DataError(s.path, f"has {len(im.captions)} captions; retrieval evaluation uses "
                                        f"{self.per_image} per image (data.captions.captions_per_image)",
                                record=f"image {im.filename}", field="sentences")
            for j in range(len(im.captions)):
                ids = self.data.encode_words(self.data.caption_tokens(im, j))
                if len(ids) == 0:
                    raise DataError(s.path, "caption has no word", record=f"image {im.filename} sentence {j}",
                                    field="tokens")
                tokens.append(ids)
                image_ids.append(im.image_id)
                caption_index.append(j)
        return {"images": s.images, "tokens": tokens, "image_ids": image_ids, "caption_index": caption_index}

    def _split(self, split: str) -> dict[str, Any]:
        if split not in self._splits:
            self.data.caption_split(split)
        return self._splits[split]

    def num_examples(self, split: str) -> int:
        return len(self._split(split)["tokens"])

    def _collate(self, part: dict[str, Any], rows: list[int]) -> dict[str, Tensor]:
        tokens, lengths = pad_tokens([part["tokens"][r] for r in rows])
        ids = [part["image_ids"][r] for r in rows]
        batch = {"tokens": tokens, "lengths": lengths, "image_ids": torch.tensor(ids, dtype=torch.int64)}
        batch.update(gather_regions(self.store, ids))
        return batch

    def batches(self, split: str, *, start: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[dict[str, Tensor]]:
        part = self._split(split)
        size = self.batch_size if split == "train" else self.eval_batch_size
        for rows in index_batches(len(part["tokens"]), size, split=split, seed=self.seed, start=start, rank=rank,
                                  world_size=world_size):
            yield self._collate(part, rows)

    def forward(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        image_index, caption_index, target = retrieval_pairs(batch["image_ids"])  # (3B,) each
        logits = model.forward_retrieval(
            tokens=batch["tokens"][caption_index], lengths=batch["lengths"][caption_index],
            region_features=batch["region_features"][image_index], region_mask=batch["region_mask"][image_index])
        loss = retrieval_loss(logits, target)
        with torch.no_grad():  # how often a positive outscores its two negatives
            b = batch["image_ids"].shape[0]
            pos, neg_caption, neg_image = logits[:b], logits[b:2 * b], logits[2 * b:]
            margin = ((pos > neg_caption) & (pos > neg_image)).float().mean()
        return {"loss": loss, "ranked": margin}

    @torch.no_grad()
    def score_matrix(self, model: nn.Module, split: str, *, device: torch.device) -> np.ndarray:
        """(images, images x captions_per_image) relevance logits of every pair of the split;
        caption j belongs to image j // captions_per_image."""
        part = self._split(split)
        images = part["images"]
        if split == "val" and self.val_images is not None:
            images = images[:self.val_images]
        n, c = len(images), self.per_image
        first = {}
        for row, (image_id, j) in enumerate(zip(part["image_ids"], part["caption_index"])):
            if j < c:
                first[(image_id, j)] = row
        caption_rows = [first[(im.image_id, j)] for im in images for j in range(c)]
        scores = np.empty((n, n * c), dtype=np.float32)
        with EvalMode(model, self):
            image_caches = []
            for lo in range(0, n, self.eval_batch_size):
                ids = [im.image_id for im in images[lo:lo + self.eval_batch_size]]
                regions = gather_regions(self.store, ids)
                image_caches.append((lo, model.encode_images(regions["region_features"].to(device),
                                                             regions["region_mask"].to(device))))
            for c_lo in range(0, n * c, self.caption_block):
                rows = caption_rows[c_lo:c_lo + self.caption_block]
                tokens, lengths = pad_tokens([part["tokens"][r] for r in rows])
                captions = model.encode_captions(tokens.to(device), lengths.to(device))
                for i_lo, cache in image_caches:
                    block = model.score_pairs(cache, captions, pair_batch=self.pair_batch)
                    scores[i_lo:i_lo + block.shape[0], c_lo:c_lo + len(rows)] = block.float().cpu().numpy()
        return scores

    def evaluate(self, model: nn.Module, split: str, *, device: torch.device) -> dict[str, float]:
        started = time.perf_counter()
        scores = self.score_matrix(model, split, device=device)
        seconds = time.perf_counter() - started
        m = retrieval_metrics(scores, self.per_image)
        return {"i2t_r1": m.i2t.r1, "i2t_r5": m.i2t.r5, "i2t_r10": m.i2t.r10,
                "t2i_r1": m.t2i.r1, "t2i_r5": m.t2i.r5, "t2i_r10": m.t2i.r10, "rsum": m.rsum,
                "i2t_medr": m.i2t.medr, "t2i_medr": m.t2i.medr, "seconds": round(seconds, 3)}

    def example_batch(self, split: str, index: int) -> tuple[dict[str, Tensor], dict[str, Any]]:
        part = self._split(split)
        batch = self._collate(part, [index])
        image_id = part["image_ids"][index]
        caption = next(im for im in part["images"] if im.image_id == image_id).captions[part["caption_index"][index]]
        return batch, {"image_id": image_id, "image_path": self.data.image_path(image_id, "captions"),
                       "words": self.data.vocab.decode(part["tokens"][index].tolist(), skip_specials=False),
                       "caption": caption}


@register_task("retrieval")
@dataclass
class RetrievalTaskConfig(VLTaskConfig):
    """Image-caption retrieval on the data section's caption file (decoder layer default 3).

    pair_batch: image x caption pairs per encoder pass when scoring all pairs; caption_block:
    captions whose caches are held at once during evaluation. val_images: score only the first N
    images of the val split (and their captions), to keep periodic validation cheap; null: all.
    The test split is always scored whole."""

    pair_batch: int = 256
    caption_block: int = 1000
    val_images: int | None = None

    def validate(self) -> str | None:
        if self.pair_batch < 1 or self.caption_block < 1:
            return "pair_batch and caption_block must be >= 1"
        if self.val_images is not None and self.val_images < 1:
            return f"val_images must be >= 1 or null, got {self.val_images}"
        return super().validate()

    def build(self, *, name: str, data: Any, model: nn.Module, train: TrainConfig) -> RetrievalTask:
        layer = self.attach(name=name, kind="retrieval", dataset="captions", data=data, model=model)
        return RetrievalTask(name=name, data=data, layer=layer, batch_size=self.batch_size,
                             eval_batch_size=self.eval_batch_size, seed=train.seed * 7919 + 2,
                             pair_batch=self.pair_batch, caption_block=self.caption_block,
                             val_images=self.val_images)
