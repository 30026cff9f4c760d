"""Task `retrieval` (H Sec. 3.3.1): image-caption retrieval on a Karpathy caption file.

Training: each batch holds B (image, caption) pairs; `retrieval_pairs` adds, per pair, a
mismatched caption and a mismatched image from the batch, and `retrieval_loss` (balanced BCE on
the relevance logits) trains the 3B scores. Evaluation: every image x caption pair of the split
is scored (the first `captions_per_image` captions of each image; `val_images` may limit the val
split to its first N images) with the model's per-modality
caches (`encode_images`, `encode_captions`) and batched pair scoring (`score_pairs`), then
Recall@1/5/10 and median rank both ways (`vlmt.metrics.retrieval`): keys `i2t_r1 i2t_r5
i2t_r10 t2i_r1 t2i_r5 t2i_r10 rsum i2t_medr t2i_medr`, and `seconds`, the scoring time.

Optional two-stage mode (not in the paper): with `shortlist_dim > 0` a dual-encoder head
(`ShortlistHead`) is trained alongside with `shortlist_loss`; with `rerank_k` set, evaluation
scores every pair by that head's cosine similarity and re-scores only each query's k best with the
full model (`vlmt.tasks.rerank`), adding `rerank_k` and `pairs_scored` (fraction of all pairs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from vlmt.config import TrainConfig, register_task
from vlmt.errors import ConfigError, DataError
from vlmt.metrics.retrieval import retrieval_metrics
from vlmt.tasks.rerank import reranked_scores, shortlist_mask
from vlmt.models.hierarchical import CaptionCache, ImageCache
from vlmt.tasks.retrieval import retrieval_loss, retrieval_pairs, shortlist_loss
from vlmt.tasks.collate import EvalMode, gather_regions, index_batches, model_inputs, pad_tokens
from vlmt.tasks.encoder_task import VLTask, VLTaskConfig


class RetrievalTask(VLTask):
    primary_metric = "rsum"
    higher_is_better = True
    kind = "retrieval"

    def __init__(self, *, pair_batch: int, caption_block: int, val_images: int | None,
                 shortlist_weight: float = 0.0, shortlist_temperature: float = 0.05, rerank_k: int | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.shortlist_weight = shortlist_weight
        self.shortlist_temperature = shortlist_temperature
        self.rerank_k = rerank_k
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
        out = {"loss": loss, "ranked": margin}
        if self.shortlist_weight > 0:
            images, captions = model.shortlist_embeddings(batch["tokens"], batch["lengths"],
                                                          batch["region_features"], batch["region_mask"])
            out["shortlist_loss"] = shortlist_loss(images, captions, batch["image_ids"],
                                                   temperature=self.shortlist_temperature)
            out["loss"] = loss + self.shortlist_weight * out["shortlist_loss"]
        return out

    def _eval_layout(self, split: str) -> tuple[list[Any], list[int]]:
        """The images scored on `split` and, per image in order, the rows of its first
        captions_per_image captions; caption column j belongs to image j // captions_per_image."""
        part = self._split(split)
        images = part["images"]
        if split == "val" and self.val_images is not None:
            images = images[:self.val_images]
        first = {}
        for row, (image_id, j) in enumerate(zip(part["image_ids"], part["caption_index"])):
            if j < self.per_image:
                first[(image_id, j)] = row
        return images, [first[(im.image_id, j)] for im in images for j in range(self.per_image)]

    def _image_caches(self, model: nn.Module, images: list[Any], device: torch.device) -> list[tuple[int, ImageCache]]:
        caches = []
        for lo in range(0, len(images), self.eval_batch_size):
            ids = [im.image_id for im in images[lo:lo + self.eval_batch_size]]
            regions = gather_regions(self.store, ids)
            caches.append((lo, model.encode_images(regions["region_features"].to(device),
                                                   regions["region_mask"].to(device))))
        return caches

    def _caption_blocks(self, model: nn.Module, part: dict[str, Any], caption_rows: list[int],
                        device: torch.device) -> Iterator[tuple[int, CaptionCache]]:
        for c_lo in range(0, len(caption_rows), self.caption_block):
            rows = caption_rows[c_lo:c_lo + self.caption_block]
            tokens, lengths = pad_tokens([part["tokens"][r] for r in rows])
            yield c_lo, model.encode_captions(tokens.to(device), lengths.to(device))

    @torch.no_grad()
    def score_matrix(self, model: nn.Module, split: str, *, device: torch.device) -> np.ndarray:
        """(images, images x captions_per_image) relevance logits of every pair of the split;
        caption j belongs to image j // captions_per_image."""
        part = self._split(split)
        images, caption_rows = self._eval_layout(split)
        scores = np.empty((len(images), len(caption_rows)), dtype=np.float32)
        with EvalMode(model, self):
            image_caches = self._image_caches(model, images, device)
            for c_lo, captions in self._caption_blocks(model, part, caption_rows, device):
                for i_lo, cache in image_caches:
                    block = model.score_pairs(cache, captions, pair_batch=self.pair_batch)
                    scores[i_lo:i_lo + block.shape[0], c_lo:c_lo + block.shape[1]] = block.float().cpu().numpy()
        return scores

    @torch.no_grad()
    def similarity_matrix(self, model: nn.Module, split: str, *, device: torch.device) -> np.ndarray:
        """(images, captions) cosine similarities of the shortlist head: the first stage alone."""
        part = self._split(split)
        images, caption_rows = self._eval_layout(split)
        head = model.shortlist
        with EvalMode(model, self):
            image_caches = self._image_caches(model, images, device)
            image_emb = torch.cat([head.embed_images(c.regions, c.mask) for _, c in image_caches])
            caption_emb = torch.cat([head.embed_captions(c.words, c.mask)
                                     for _, c in self._caption_blocks(model, part, caption_rows, device)])
        return head.similarity(image_emb, caption_emb).cpu().numpy()

    @torch.no_grad()
    def reranked_matrix(self, model: nn.Module, split: str, *, k: int,
                        device: torch.device) -> tuple[np.ndarray, int]:
        """The two-stage score matrix (`vlmt.tasks.rerank`) and the number of pairs the full
        model scored: each image's k most similar captions and each caption's k most similar images."""
        part = self._split(split)
        images, caption_rows = self._eval_layout(split)
        similarity = self.similarity_matrix(model, split, device=device)
        mask = shortlist_mask(similarity, k)
        rows, cols = np.nonzero(mask)  # row-major, the order reranked_scores expects
        cross = np.empty(rows.shape[0], dtype=np.float32)
        with EvalMode(model, self):
            cache = ImageCache.cat([c for _, c in self._image_caches(model, images, device)])
            for c_lo, captions in self._caption_blocks(model, part, caption_rows, device):
                sel = np.nonzero((cols >= c_lo) & (cols < c_lo + captions.words.shape[0]))[0]
                if sel.size == 0:
                    continue
                got = model.score_pair_list(cache, captions, torch.from_numpy(rows[sel]),
                                            torch.from_numpy(cols[sel] - c_lo), pair_batch=self.pair_batch)
                cross[sel] = got.cpu().numpy()
        return reranked_scores(similarity, mask, cross), int(rows.shape[0])

    def evaluate(self, model: nn.Module, split: str, *, device: torch.device) -> dict[str, float]:
        started = time.perf_counter()
        extra: dict[str, float] = {}
        if self.rerank_k is not None:
            scores, scored = self.reranked_matrix(model, split, k=self.rerank_k, device=device)
            extra = {"rerank_k": float(self.rerank_k), "pairs_scored": round(scored / scores.size, 6)}
        else:
            scores = self.score_matrix(model, split, device=device)
        seconds = time.perf_counter() - started
        m = retrieval_metrics(scores, self.per_image)
        return {"i2t_r1": m.i2t.r1, "i2t_r5": m.i2t.r5, "i2t_r10": m.i2t.r10,
                "t2i_r1": m.t2i.r1, "t2i_r5": m.t2i.r5, "t2i_r10": m.t2i.r10, "rsum": m.rsum,
                "i2t_medr": m.i2t.medr, "t2i_medr": m.t2i.medr, "seconds": round(seconds, 3), **extra}

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
    The test split is always scored whole.

    Two-stage retrieval (not in the paper): shortlist_dim > 0 adds a dual-encoder head of that
    width over the layer-0 features, trained with the contrastive `shortlist_loss` (weight
    shortlist_weight, cosine / shortlist_temperature); shortlist_detach keeps it from training the
    shared encoder. rerank_k: evaluate by re-scoring only each query's k best shortlisted pairs
    (null: score every pair); `vlmt evaluate run --rerank K` sets it for one evaluation."""

    pair_batch: int = 256
    caption_block: int = 1000
    val_images: int | None = None
    shortlist_dim: int = 0
    shortlist_weight: float = 1.0
    shortlist_temperature: float = 0.05
    shortlist_detach: bool = True
    rerank_k: int | None = None

    def validate(self) -> str | None:
        if self.pair_batch < 1 or self.caption_block < 1:
            return "pair_batch and caption_block must be >= 1"
        if self.val_images is not None and self.val_images < 1:
            return f"val_images must be >= 1 or null, got {self.val_images}"
        if self.shortlist_dim < 0 or self.shortlist_weight < 0 or self.shortlist_temperature <= 0:
            return "shortlist_dim and shortlist_weight must be >= 0 and shortlist_temperature > 0"
        if self.rerank_k is not None and (self.rerank_k < 1 or self.shortlist_dim == 0):
            return "rerank_k needs shortlist_dim > 0 and must be >= 1 (or null: score every pair)"
        return super().validate()

    def build(self, *, name: str, data: Any, model: nn.Module, train: TrainConfig) -> RetrievalTask:
        layer = self.attach(name=name, kind="retrieval", dataset="captions", data=data, model=model)
        if self.shortlist_dim > 0:
            try:
                model.attach_shortlist(embed_dim=self.shortlist_dim, detach=self.shortlist_detach)
            except ValueError as e:
                raise ConfigError(f"tasks.{name}.shortlist_dim: {e}") from None
        return RetrievalTask(name=name, data=data, layer=layer, batch_size=self.batch_size,
                             eval_batch_size=self.eval_batch_size, seed=train.seed * 7919 + 2,
                             pair_batch=self.pair_batch, caption_block=self.caption_block,
                             val_images=self.val_images,
                             shortlist_weight=self.shortlist_weight if self.shortlist_dim > 0 else 0.0,
                             shortlist_temperature=self.shortlist_temperature, rerank_k=self.rerank_k)
