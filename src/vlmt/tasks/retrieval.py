"""Task `retrieval` (H Sec. 3.3.1): image-caption retrieval on a Karpathy caption file.

Head: `RetrievalHead` (image and sentence summaries, bilinear relevance score sigma(v_I^T W v_S))
on the encoder layer `layer` (paper: 3).

Training. The paper scores a pair with sigma(v_I^T W v_S) but does not say which mismatched pairs
it trains against. With cross-attention every scored pair costs a full encoder pass, so scoring
all B x B in-batch pairs (as embedding models do for hard-negative mining) is B times the cost of
the positives. vlmt pairs each positive with one mismatched caption for its image and one
mismatched image for its caption, drawn from the same batch (`retrieval_pairs`, so both retrieval
directions are trained), and weighs positives and negatives equally in a binary cross-entropy
(`retrieval_loss`), which matches the sigmoid relevance score of Eq. 7.

Evaluation: every image x caption pair of the split is scored (the first `captions_per_image`
captions of each image; `val_images` may limit the val split to its first N images) with the
encoder's per-modality caches (`encode_images`, `encode_captions`) and batched pair scoring
(`encode_pairs`), then Recall@1/5/10 and median rank both ways (`vlmt.metrics.retrieval`): keys
`i2t_r1 i2t_r5 i2t_r10 t2i_r1 t2i_r5 t2i_r10 rsum i2t_medr t2i_medr` over the whole split (COCO
"5K" on the 5K test), and `seconds`, the scoring time. Every split but a `val_images` subset also
gets the same keys prefixed `fold_`: the mean over five consecutive folds of n/5 images (COCO "1K",
H Table 3), with `folds` and `fold_images`.

Optional two-stage mode (not in the paper): with `shortlist_dim > 0` a dual-encoder head
(`ShortlistHead`) over S_0 / I_0 is trained alongside with `shortlist_loss`; with `rerank_k` set,
evaluation scores every pair by that head's cosine similarity and re-scores only each query's k
best with the full model (`vlmt.tasks.rerank`), adding `rerank_k` and `pairs_scored` (fraction of
all pairs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from vlmt.config import register_task
from vlmt.errors import ConfigError, DataError, InvalidInput
from vlmt.metrics.retrieval import RetrievalMetrics, fold_metrics, retrieval_metrics
from vlmt.models.encoders import CaptionCache, ImageCache, WordRegionEncoder
from vlmt.models.heads.retrieval import RetrievalHead
from vlmt.models.heads.shortlist import ShortlistHead
from vlmt.tasks.base import EvalMode, move_to
from vlmt.tasks.capabilities import Input, Runtime, capability, integer, text, texts
from vlmt.tasks.collate import gather_regions, pad_tokens
from vlmt.tasks.encoder_task import EncoderTask, EncoderTaskConfig
from vlmt.tasks.rerank import reranked_scores, shortlist_mask
from vlmt.tasks.retrieval_negatives import caption_neighbours, draw_companions
from vlmt.tasks.vl_data import caption_tokens


class RetrievalTask(EncoderTask):
    primary_metric = "rsum"
    higher_is_better = True
    kind = "retrieval"
    decoder_name = "ICR decoder"
    config: RetrievalTaskConfig

    def __init__(self, *, name: str, config: RetrievalTaskConfig, data: Any, model: WordRegionEncoder, seed: int):
        super().__init__(name=name, config=config, data=data, seed=seed)
        c = model.config
        self.head = RetrievalHead(dim=c.dim, heads=c.heads, dropout=c.fc_dropout)
        self.shortlist: ShortlistHead | None = None
        if config.shortlist_dim > 0:
            self.shortlist = ShortlistHead(dim=c.dim, embed_dim=config.shortlist_dim, heads=c.heads,
                                           dropout=c.fc_dropout, detach=config.shortlist_detach)
        self.rerank_k = config.rerank_k  # `vlmt evaluate run --rerank K` changes it for one evaluation
        self.rerank_k_t2i = config.rerank_k_t2i
        self._splits: dict[str, dict[str, Any]] = {}
        if self.has_examples:
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
                                        f"{self.per_image} per image (data.datasets.captions.captions_per_image)",
                                record=f"image {im.filename}", field="sentences")
            for j in range(len(im.captions)):
                ids = self.data.encode_words(self.data.caption_tokens(im, j))
                if len(ids) == 0:
                    raise DataError(s.path, "caption has no word", record=f"image {im.filename} sentence {j}",
                                    field="tokens")
                tokens.append(ids)
                image_ids.append(im.image_id)
                caption_index.append(j)
        part = {"images": s.images, "tokens": tokens, "image_ids": image_ids, "caption_index": caption_index}
        if split == "train" and self.config.hard_negatives > 0:
            part["hard"] = self._hard_negative_index(part)
        return part

    def _hard_negative_index(self, part: dict[str, Any]) -> dict[str, Any]:
        """What `draw_companions` needs for the training split: pictures, their examples,
        caption keys and each picture's `hard_pool` caption-nearest pictures."""
        order = {image_id: i for i, image_id in enumerate(dict.fromkeys(part["image_ids"]))}
        example_picture = np.fromiter((order[i] for i in part["image_ids"]), dtype=np.int64,
                                      count=len(part["image_ids"]))
        picture_examples = [np.flatnonzero(example_picture == p) for p in range(len(order))]
        keys = [np.asarray(t, dtype=np.int64).tobytes() for t in part["tokens"]]
        return {"example_picture": example_picture, "picture_examples": picture_examples, "caption_keys": keys,
                "picture_keys": [frozenset(keys[r] for r in rows) for rows in picture_examples],
                "neighbours": caption_neighbours([[part["tokens"][r] for r in rows] for rows in picture_examples],
                                                 self.config.hard_pool)}

    def _split(self, split: str) -> dict[str, Any]:
        if split not in self._splits:
            self.data.caption_split(split)
        return self._splits[split]

    def _collate(self, part: dict[str, Any], rows: list[int]) -> dict[str, Tensor]:
        companions = None
        if "hard" in part:  # training with hard negatives: the companions follow the batch's examples
            rng = np.random.default_rng([self.seed, 0x4E45, *rows])  # a function of the batch: resumable
            companions = draw_companions(rng, rows, self.config.hard_negatives, **part["hard"])
            rows = list(rows) + companions.reshape(-1).tolist()
        tokens, lengths = pad_tokens([part["tokens"][r] for r in rows])
        ids = [part["image_ids"][r] for r in rows]
        batch = {"tokens": tokens, "lengths": lengths, "image_ids": torch.tensor(ids, dtype=torch.int64)}
        batch.update(gather_regions(self.store, ids))
        if companions is not None:
            b = companions.shape[0]
            batch["companions"] = b + torch.arange(companions.size, dtype=torch.int64).view(companions.shape)
        return batch

    def logits(self, model: WordRegionEncoder, batch: dict[str, Tensor]) -> Tensor:
        """(B,) relevance logits of the batch's B (image, caption) pairs (Eq. 7 before the sigmoid)."""
        encoded = self.encode(model, batch)
        return self.head(encoded.words, encoded.regions, encoded.word_mask, encoded.region_mask)

    def shortlist_embeddings(self, model: WordRegionEncoder, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(image, caption) unit embeddings (B, e) of the shortlist head for the batch's two sides."""
        return shortlist_embeddings(model, self._shortlist(), batch)

    def _shortlist(self) -> ShortlistHead:
        if self.shortlist is None:
            raise ConfigError(f"tasks.{self.name}: no shortlist head; train with tasks.{self.name}.shortlist_dim > 0")
        return self.shortlist

    def forward(self, model: WordRegionEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        n = self.config.negatives
        companions = batch.get("companions")
        image_index, caption_index, target = retrieval_pairs(batch["image_ids"], negatives=n,
                                                             companions=companions)  # (B + 2nB,) each
        region_mask = batch["region_mask"]
        if self.training and self.config.region_dropout > 0:
            region_mask = drop_regions(region_mask, self.config.region_dropout)
        pairs = {"tokens": batch["tokens"][caption_index], "lengths": batch["lengths"][caption_index],
                 "region_features": batch["region_features"][image_index],
                 "region_mask": region_mask[image_index]}
        logits = self.logits(model, pairs)
        if self.config.loss == "softmax":
            loss = retrieval_softmax_loss(logits, target, negatives=n)
        else:
            loss = retrieval_loss(logits, target)
        b = batch["image_ids"].shape[0] if companions is None else companions.shape[0]
        with torch.no_grad():  # how often a positive outscores all its negatives
            pos, neg_caption, neg_image = logits[:b], logits[b:b + b * n], logits[b + b * n:]
            margin = ((pos > neg_caption.view(b, n).amax(1)) & (pos > neg_image.view(b, n).amax(1))).float().mean()
        out = {"loss": loss, "ranked": margin}
        if self.shortlist is not None and self.config.shortlist_weight > 0:
            anchors = {key: value[:b] for key, value in batch.items() if key != "companions"}
            images, captions = self.shortlist_embeddings(model, anchors)
            out["shortlist_loss"] = shortlist_loss(images, captions, anchors["image_ids"],
                                                   temperature=self.config.shortlist_temperature)
            out["loss"] = loss + self.config.shortlist_weight * out["shortlist_loss"]
        return out

    @torch.no_grad()
    def attention_maps(self, model: WordRegionEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The head's summary attention (averaged over its K maps), "regions" (B, T) and "words"
        (B, N), for pictures. Runs in eval mode."""
        with EvalMode(model, self):
            encoded = self.encode(model, batch)
            return {"regions": self.head.image_summary.attention(encoded.regions, encoded.region_mask),
                    "words": self.head.sentence_summary.attention(encoded.words, encoded.word_mask)}

    def score_pair_list(self, model: WordRegionEncoder, images: ImageCache, captions: CaptionCache,
                        image_index: Tensor, caption_index: Tensor) -> Tensor:
        """(P,) relevance logits of the pairs (images[image_index[p]], captions[caption_index[p]])."""
        return score_pair_list(model, self.head, images, captions, image_index, caption_index,
                               layer=self.config.layer, pair_batch=self.config.pair_batch)

    def score_pairs(self, model: WordRegionEncoder, images: ImageCache, captions: CaptionCache) -> Tensor:
        """(n_images, n_captions) relevance logits of every image x caption pair of two caches."""
        n_img, n_cap = images.regions.shape[0], captions.words.shape[0]
        flat = torch.arange(n_img * n_cap, device=images.regions.device)
        return self.score_pair_list(model, images, captions, flat // n_cap, flat % n_cap).view(n_img, n_cap)

    # -- capabilities --------------------------------------------------------------------------------
    def _pictures(self, runtime: Runtime, images: Sequence[Any] | None, regions: Sequence[Any] | None) -> ImageCache:
        if regions is not None:
            feats = [runtime.regions(regions=f, boxes=b)[0] for f, b in regions]
        else:
            feats = [runtime.regions(image)[0] for image in images or ()]
        if not feats:
            raise InvalidInput("retrieve: needs at least one image")
        return runtime.model.encode_images(*self.region_batch(feats, runtime.device))

    def _captions(self, runtime: Runtime, captions: Sequence[str]) -> CaptionCache:
        if not captions:
            raise InvalidInput("retrieve: needs at least one caption")
        words = []
        for c in captions:
            words.append(caption_tokens(c))
            if not words[-1]:
                raise InvalidInput(f"captions: {c!r} has no word")
        return runtime.model.encode_captions(*self.sentence_batch(words, runtime.device))

    @capability("retrieve", summary="the relevance of every picture x caption pair",
                inputs=(Input("images", "images", "the pictures (or regions=[(features, boxes), ...])",
                              required=True), texts("captions", "the captions")),
                returns="(n_images, n_captions) relevance scores in [0, 1]",
                example='model.retrieve(["a.png", "b.png"], ["a red square", "two blue circles"])',
                result=lambda full: full["scores"])
    @torch.no_grad()
    def retrieve(self, runtime: Runtime, images: Sequence[Any] = (), captions: Sequence[str] = (), *,
                 regions: Sequence[Any] | None = None) -> dict[str, Any]:
        """Relevance scores in [0, 1] of every image x caption pair; `regions` may give (features,
        boxes) per image instead of the images."""
        with EvalMode(runtime.model, self):
            logits = self.score_pairs(runtime.model, self._pictures(runtime, images, regions),
                                      self._captions(runtime, captions))
        return {"scores": torch.sigmoid(logits).float().cpu().numpy()}

    @capability("rank", summary="one query ranked against the other side, two-stage with a shortlist head",
                inputs=(texts("captions", "the captions"), text("query", "'image' or 'caption'"),
                        Input("images", "images", "the pictures", required=False),
                        integer("k", 0, "candidates the full model re-scores (0: all)")),
                returns="[{index, score, stage: full | shortlist}], best first",
                example='model.rank(images=["a.png"], captions=["a red square", "two circles"], query="image")',
                result=lambda full: full["ranked"])
    @torch.no_grad()
    def rank(self, runtime: Runtime, *, images: Sequence[Any] | None = None, captions: Sequence[str],
             query: str, regions: Sequence[Any] | None = None, k: int | None = None) -> dict[str, Any]:
        """Rank the other side for one query: `query="image"` ranks `captions` for the single image
        of `images` / `regions`; `query="caption"` ranks the images for the single caption. With `k`
        and a shortlist head, only the k candidates most similar by the shortlist are re-scored by the
        full model (two-stage), the rest follow ranked by similarity. "ranked": [{"index", "score",
        "stage": "full" | "shortlist"}], best first; "score" is the model's relevance in [0, 1] for
        re-scored candidates and the shortlist's cosine similarity for the others."""
        if query not in ("image", "caption"):
            raise InvalidInput(f"rank: query must be 'image' or 'caption', got {query!r}")
        model = runtime.model
        image_cache, caption_cache = self._pictures(runtime, images, regions), self._captions(runtime, captions)
        n_images = image_cache.regions.shape[0]
        if (n_images if query == "image" else len(captions)) != 1:
            raise InvalidInput(f"rank: a {query} query is one {query}")
        n = len(captions) if query == "image" else n_images
        chosen = list(range(n))
        similarity = None
        with EvalMode(model, self):
            if k and k < n and self.shortlist is not None:
                head = self.shortlist
                sim = head.similarity(head.embed_images(image_cache.regions, image_cache.mask),
                                      head.embed_captions(caption_cache.words, caption_cache.mask))
                similarity = (sim[0] if query == "image" else sim[:, 0]).float().cpu()
                chosen = similarity.topk(k).indices.tolist()
            index = torch.tensor(chosen, device=runtime.device)
            zeros = torch.zeros_like(index)
            pairs = (zeros, index) if query == "image" else (index, zeros)
            scores = torch.sigmoid(self.score_pair_list(model, image_cache, caption_cache, *pairs)).float().cpu()
        out: list[dict[str, Any]] = [{"index": i, "score": float(v), "stage": "full"}
                                     for i, v in sorted(zip(chosen, scores.tolist()), key=lambda p: -p[1])]
        if similarity is not None:
            rest = sorted(set(range(n)) - set(chosen), key=lambda i: -float(similarity[i]))
            out += [{"index": i, "score": float(similarity[i]), "stage": "shortlist"} for i in rest]
        return {"query": query, "ranked": out, "two_stage": similarity is not None}

    def eval_layout(self, split: str, first_images: int | None = None) -> tuple[list[Any], list[int]]:
        """What the rows and columns of `score_matrix(split, first_images=..)` (and of
        `similarity_matrix`, `reranked_matrix`) are, as (images, caption_rows): the images scored
        on `split` in row order (its first `val_images` on val; its first `first_images` when
        given), and for each column the row of its caption in the task's table of the split's
        captions: each image's first captions_per_image captions in turn, so column j belongs to
        image j // captions_per_image. A benchmark reads it to line a matrix up with the pictures
        and captions it scored (their ids and texts, an oracle's scores of the same pairs) without
        rebuilding the layout. An image with fewer captions than that is a DataError naming it;
        first_images < 1 a ConfigError."""
        part = self._split(split)
        images = part["images"]
        if split == "val" and self.config.val_images is not None:
            images = images[:self.config.val_images]
        if first_images is not None:
            if first_images < 1:
                raise ConfigError(f"first_images must be >= 1, got {first_images}")
            images = images[:first_images]
        first = {}
        for row, (image_id, j) in enumerate(zip(part["image_ids"], part["caption_index"])):
            if j < self.per_image:
                first[(image_id, j)] = row
        for im in images:  # evaluation splits were checked in _prepare; train may hold fewer captions
            if len(im.captions) < self.per_image:
                raise DataError(self.data.caption_split(split).path,
                                f"has {len(im.captions)} captions; retrieval scoring uses {self.per_image} "
                                f"per image (data.datasets.captions.captions_per_image)",
                                record=f"image {im.filename}", field="sentences")
        return images, [first[(im.image_id, j)] for im in images for j in range(self.per_image)]

    def image_caches(self, model: WordRegionEncoder, images: list[Any], device: torch.device
                     ) -> list[tuple[int, ImageCache]]:
        """The encoder's region side of `images` (as `eval_layout` gives them), in blocks of
        eval_batch_size, as (first row, cache): encoded once, then paired with every caption block
        (`score_pairs`); a benchmark calls it to time scoring without the whole matrix."""
        caches = []
        for lo in range(0, len(images), self.config.eval_batch_size):
            ids = [im.image_id for im in images[lo:lo + self.config.eval_batch_size]]
            regions = gather_regions(self.store, ids)
            caches.append((lo, model.encode_images(regions["region_features"].to(device),
                                                   regions["region_mask"].to(device))))
        return caches

    def caption_blocks(self, model: WordRegionEncoder, split: str, caption_rows: list[int],
                       device: torch.device) -> Iterator[tuple[int, CaptionCache]]:
        """The encoder's word side of the split's captions at `caption_rows` (as `eval_layout`
        gives them), in blocks of caption_block, as (first column, cache), encoded as they are
        needed."""
        part = self._split(split)
        for c_lo in range(0, len(caption_rows), self.config.caption_block):
            rows = caption_rows[c_lo:c_lo + self.config.caption_block]
            tokens, lengths = pad_tokens([part["tokens"][r] for r in rows])
            yield c_lo, model.encode_captions(tokens.to(device), lengths.to(device))

    @torch.no_grad()
    def score_matrix(self, model: WordRegionEncoder, split: str, *, device: torch.device,
                     first_images: int | None = None) -> np.ndarray:
        """(images, images x captions_per_image) relevance logits of every pair of the split;
        caption j belongs to image j // captions_per_image. `first_images`: score only the split's
        first N images and their captions (e.g. a test-sized subset of train, to compare how well
        the model ranks the pictures it trained on with how well it ranks new ones)."""
        images, caption_rows = self.eval_layout(split, first_images)
        scores = np.empty((len(images), len(caption_rows)), dtype=np.float32)
        with EvalMode(model, self):
            image_caches = self.image_caches(model, images, device)
            for c_lo, captions in self.caption_blocks(model, split, caption_rows, device):
                for i_lo, cache in image_caches:
                    block = self.score_pairs(model, cache, captions)
                    scores[i_lo:i_lo + block.shape[0], c_lo:c_lo + block.shape[1]] = block.float().cpu().numpy()
        return scores

    @torch.no_grad()
    def similarity_matrix(self, model: WordRegionEncoder, split: str, *, device: torch.device) -> np.ndarray:
        """(images, captions) cosine similarities of the shortlist head: the first stage alone."""
        images, caption_rows = self.eval_layout(split)
        head = self._shortlist()
        with EvalMode(model, self):
            image_caches = self.image_caches(model, images, device)
            image_emb = torch.cat([head.embed_images(c.regions, c.mask) for _, c in image_caches])
            caption_emb = torch.cat([head.embed_captions(c.words, c.mask)
                                     for _, c in self.caption_blocks(model, split, caption_rows, device)])
        return head.similarity(image_emb, caption_emb).cpu().numpy()

    @torch.no_grad()
    def reranked_matrix(self, model: WordRegionEncoder, split: str, *, k: int, device: torch.device,
                        k_t2i: int | None = None) -> tuple[np.ndarray, int]:
        """The two-stage score matrix (`vlmt.tasks.rerank`) and the number of pairs the full
        model scored: each image's k most similar captions and each caption's `k_t2i` (default k)
        most similar images."""
        images, caption_rows = self.eval_layout(split)
        similarity = self.similarity_matrix(model, split, device=device)
        mask = shortlist_mask(similarity, k, k_t2i)
        rows, cols = np.nonzero(mask)  # row-major, the order reranked_scores expects
        cross = np.empty(rows.shape[0], dtype=np.float32)
        with EvalMode(model, self):
            cache = ImageCache.cat([c for _, c in self.image_caches(model, images, device)])
            for c_lo, captions in self.caption_blocks(model, split, caption_rows, device):
                sel = np.nonzero((cols >= c_lo) & (cols < c_lo + captions.words.shape[0]))[0]
                if sel.size == 0:
                    continue
                got = self.score_pair_list(model, cache, captions, torch.from_numpy(rows[sel]),
                                           torch.from_numpy(cols[sel] - c_lo))
                cross[sel] = got.cpu().numpy()
        return reranked_scores(similarity, mask, cross), int(rows.shape[0])

    def evaluate(self, model: WordRegionEncoder, split: str, *, device: torch.device) -> dict[str, float]:
        started = time.perf_counter()
        extra: dict[str, float] = {}
        if self.rerank_k is not None:
            scores, scored = self.reranked_matrix(model, split, k=self.rerank_k, device=device,
                                                  k_t2i=self.rerank_k_t2i)
            extra = {"rerank_k": float(self.rerank_k), "pairs_scored": round(scored / scores.size, 6)}
            if self.rerank_k_t2i is not None:
                extra["rerank_k_t2i"] = float(self.rerank_k_t2i)
        else:
            scores = self.score_matrix(model, split, device=device)
        seconds = time.perf_counter() - started
        out = {**metric_keys(retrieval_metrics(scores, self.per_image)), "seconds": round(seconds, 3),
               "images": float(scores.shape[0]), **extra}
        if split != "val" or self.config.val_images is None:  # a val subset is already the small protocol
            out.update(fold_keys(scores, self.per_image))
        return out

    def example_batch(self, split: str, index: int) -> tuple[dict[str, Tensor], dict[str, Any]]:
        part = self._split(split)
        batch = move_to(self._collate(part, [index]), torch.device("cpu"))  # features, not store rows
        image_id = part["image_ids"][index]
        caption = next(im for im in part["images"] if im.image_id == image_id).captions[part["caption_index"][index]]
        return batch, {"image_id": image_id, "image_path": self.data.image_path(image_id, "captions"),
                       "words": self.data.vocab.decode(part["tokens"][index].tolist(), skip_specials=False),
                       "caption": caption}


RETRIEVAL_LOSSES = ("bce", "softmax")


@register_task("retrieval")
@dataclass
class RetrievalTaskConfig(EncoderTaskConfig):
    """Image-caption retrieval on the data section's caption file; the head reads encoder layer
    `layer` (paper: 3).

    negatives, loss (training; the paper gives neither): each positive is scored against
    `negatives` mismatched captions and as many mismatched images from the batch
    (`retrieval_pairs`), with the balanced binary cross-entropy `bce` (`retrieval_loss`) or the
    sampled softmax `softmax` (`retrieval_softmax_loss`).

    hard_negatives (not in the paper; 0 = off): how many of each positive's `negatives` per
    direction come from companions, examples of other training pictures drawn from its picture's
    `hard_pool` most caption-similar pictures (`vlmt.tasks.retrieval_negatives`) instead of from
    the batch. The pairs scored per update stay B + 2nB.

    region_dropout (not in the paper; 0 = off): in training, each region of each batch picture is
    hidden from the encoder with this probability (at least one stays), the same for all pairs of
    that picture in the update, so a picture is never seen twice alike (against memorising a
    small training set).

    pair_batch: image x caption pairs per encoder pass when scoring all pairs; caption_block:
    captions whose caches are held at once during evaluation. val_images: score only the first N
    images of the val split (and their captions), to keep periodic validation cheap; null: all.
    The test split is always scored whole.

    Two-stage retrieval (not in the paper): shortlist_dim > 0 adds a dual-encoder head of that
    width over the layer-0 features, trained with the contrastive `shortlist_loss` (weight
    shortlist_weight, cosine / shortlist_temperature); shortlist_detach keeps it from training the
    shared encoder. rerank_k: evaluate by re-scoring only each query's k best shortlisted pairs
    (null: score every pair); `vlmt evaluate run --rerank K` sets it for one evaluation.
    rerank_k_t2i: the images shortlisted per caption query when it should differ from rerank_k
    (captions per image query): image queries are 5x fewer, so a larger k for them is cheap."""

    stream_offset: ClassVar[int] = 2  # its batch order's seed offset, as documented results were drawn

    layer: int = 3
    negatives: int = 1
    hard_negatives: int = 0
    hard_pool: int = 10
    region_dropout: float = 0.0
    loss: str = "bce"
    pair_batch: int = 256
    caption_block: int = 1000
    val_images: int | None = None
    shortlist_dim: int = 0
    shortlist_weight: float = 1.0
    shortlist_temperature: float = 0.05
    shortlist_detach: bool = True
    rerank_k: int | None = None
    rerank_k_t2i: int | None = None

    def validate(self) -> str | None:
        if self.pair_batch < 1 or self.caption_block < 1:
            return "pair_batch and caption_block must be >= 1"
        if not 1 <= self.negatives < self.batch_size:
            return f"negatives must be between 1 and batch_size - 1 ({self.batch_size - 1}), got {self.negatives}"
        if not 0 <= self.hard_negatives <= self.negatives:
            return f"hard_negatives must be between 0 and negatives ({self.negatives}), got {self.hard_negatives}"
        if self.hard_pool < 1:
            return f"hard_pool must be >= 1, got {self.hard_pool}"
        if not 0.0 <= self.region_dropout < 1.0:
            return f"region_dropout must be in [0, 1), got {self.region_dropout}"
        if self.loss not in RETRIEVAL_LOSSES:
            return f"loss must be one of {', '.join(RETRIEVAL_LOSSES)}, got {self.loss!r}"
        if self.val_images is not None and self.val_images < 1:
            return f"val_images must be >= 1 or null, got {self.val_images}"
        if self.shortlist_dim < 0 or self.shortlist_weight < 0 or self.shortlist_temperature <= 0:
            return "shortlist_dim and shortlist_weight must be >= 0 and shortlist_temperature > 0"
        if self.rerank_k is not None and (self.rerank_k < 1 or self.shortlist_dim == 0):
            return "rerank_k needs shortlist_dim > 0 and must be >= 1 (or null: score every pair)"
        if self.rerank_k_t2i is not None and (self.rerank_k is None or self.rerank_k_t2i < 1):
            return "rerank_k_t2i needs rerank_k and must be >= 1 (or null: the same as rerank_k)"
        return super().validate()

    def build(self, *, name: str, data: Any, model: Any, seed: int) -> RetrievalTask:
        data, model = self.check(name=name, kind="retrieval", dataset="captions", data=data, model=model)
        return RetrievalTask(name=name, config=self, data=data, model=model, seed=seed)


@torch.no_grad()
def score_pair_list(model: WordRegionEncoder, head: RetrievalHead, images: ImageCache, captions: CaptionCache,
                    image_index: Tensor, caption_index: Tensor, *, layer: int, pair_batch: int = 256) -> Tensor:
    """(P,) relevance logits of the pairs (images[image_index[p]], captions[caption_index[p]]) by a
    retrieval head reading encoder layer `layer`, `pair_batch` pairs per encoder pass: all-pairs
    evaluation and the re-ranking stage score this way. Model and head must be in eval mode."""
    if model.training or head.training:
        raise RuntimeError("pair scoring needs eval mode: dropout would make scores random")
    device = images.regions.device
    image_index, caption_index = image_index.to(device), caption_index.to(device)
    scores = torch.empty(image_index.shape[0], device=device)
    for lo in range(0, image_index.shape[0], pair_batch):
        img, cap = image_index[lo:lo + pair_batch], caption_index[lo:lo + pair_batch]
        encoded = model.encode_pairs(images, captions, img, cap, depth=layer)
        scores[lo:lo + img.shape[0]] = head(encoded.words, encoded.regions, encoded.word_mask,
                                            encoded.region_mask).float()
    return scores


def shortlist_embeddings(model: WordRegionEncoder, head: ShortlistHead, batch: dict[str, Tensor]
                         ) -> tuple[Tensor, Tensor]:
    """(image, caption) unit embeddings (B, e) of a shortlist head over S_0 / I_0 of a batch's two
    sides. With a detached head the encoder runs without building a graph."""
    with torch.set_grad_enabled(torch.is_grad_enabled() and not head.detach):
        encoded = model(batch["tokens"], batch["lengths"], batch["region_features"], batch["region_mask"], depth=0)
    images = head.embed_images(encoded.regions, encoded.region_mask)
    return images, head.embed_captions(encoded.words, encoded.word_mask)


def retrieval_pairs(
    image_ids: Tensor, *, generator: torch.Generator | None = None, negatives: int = 1,
    companions: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Pairs to score for a batch of B matched (image, caption) examples.

    Returns (image_index, caption_index, target), each (B + 2nB,) for n = `negatives`: the B
    positives, then for each example n captions of other examples (negative captions for its
    image, example-major), then for each example n images of other examples (negative images for
    its caption). Partners are drawn uniformly without replacement from the examples whose image
    id differs (then other examples of the same image, then the example itself); a target is 1
    exactly when the two share an image id, so an example whose partners show the same image
    keeps (correctly labelled) positive pairs. n = 1 is the default pairing (3B pairs).

    companions: (B, h) indices of extra examples that follow the B in `image_ids` (hard negatives,
    h <= n): each example's first h negative captions and images are its companions' captions and
    pictures, the other n - h are drawn from the B as above.
    """
    ids = image_ids.reshape(-1)
    h = 0 if companions is None else companions.shape[1]
    b = ids.shape[0] if companions is None else companions.shape[0]
    if not 1 <= negatives <= max(b, 1) or h > negatives:
        raise ValueError(f"negatives must be between 1 and the batch size {b} (and at least the {h} "
                         f"companions), got {negatives}")
    index = torch.arange(b, device=ids.device)
    neg_caption = _negatives(ids[:b], generator, negatives, companions).reshape(-1)
    neg_image = _negatives(ids[:b], generator, negatives, companions).reshape(-1)
    own = index.repeat_interleave(negatives)
    image_index = torch.cat([index, own, neg_image])
    caption_index = torch.cat([index, neg_caption, own])
    target = (ids[image_index] == ids[caption_index]).float()
    return image_index, caption_index, target


def _negatives(ids: Tensor, generator: torch.Generator | None, count: int, companions: Tensor | None) -> Tensor:
    """(B, count): the companions (if any), then partners drawn from the batch."""
    if companions is None:
        return _partners(ids, generator, count)
    if companions.shape[1] == count:
        return companions.to(ids.device)
    return torch.cat([companions.to(ids.device), _partners(ids, generator, count - companions.shape[1])], dim=1)


def _partners(ids: Tensor, generator: torch.Generator | None, count: int = 1) -> Tensor:
    """(B, count): for each example, `count` different examples drawn uniformly, preferring a
    different image id, then another example of the same image, then itself."""
    b = ids.shape[0]
    different = ids[:, None] != ids[None, :]  # (B, B)
    not_self = ~torch.eye(b, dtype=torch.bool, device=ids.device)
    # priority 2: other image; 1: other example of the same image; 0: itself
    priority = different.float() + not_self.float()
    noise = torch.rand(b, b, generator=generator).to(ids.device)  # uniform within a priority
    return (priority + noise).topk(count, dim=1).indices


def drop_regions(region_mask: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """A copy of `region_mask` (B, T) with each real region dropped with probability p; a picture
    that would lose all its regions keeps them all."""
    noise = torch.rand(region_mask.shape, generator=generator).to(region_mask.device)
    kept = region_mask & (noise >= p)
    return torch.where(kept.any(dim=1, keepdim=True), kept, region_mask)


def retrieval_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Balanced binary cross-entropy on relevance logits: mean over positives and mean over
    negatives, averaged, so the 1:2 ratio of `retrieval_pairs` does not bias the score. A batch
    with only one kind of pair uses that kind alone."""
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    per_pair = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    positive = target > 0.5
    parts = [per_pair[sel].mean() for sel in (positive, ~positive) if bool(sel.any())]
    return torch.stack(parts).mean()


def retrieval_softmax_loss(logits: Tensor, target: Tensor, *, negatives: int) -> Tensor:
    """Sampled softmax over the relevance logits of `retrieval_pairs` (an option; the paper does
    not give its retrieval loss): each positive competes with its image's n negative captions and,
    separately, with its caption's n negative images; minus the log of the softmax mass on the
    pairs whose target is 1, averaged over examples, the two directions averaged.

    Why: a pair-wise binary loss learns whether a caption is true of a picture, but on the world a
    caption is true of several pictures (docs/hierarchical.md, "The ceiling"); ranking needs the
    score of the true pair to exceed those of its competitors, which a softmax over them trains
    directly (it learns the log-odds of the pair against the others, as in-batch contrastive
    losses do)."""
    total = logits.shape[0]
    b = total // (1 + 2 * negatives)
    if logits.shape != target.shape or b * (1 + 2 * negatives) != total:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} are not "
                         f"B + 2 x {negatives} x B pairs of one batch")
    logits, positive = logits.float(), target > 0.5
    pos = logits[:b, None]
    losses = []
    for lo in (b, b + b * negatives):  # negative captions, then negative images
        scores = torch.cat([pos, logits[lo:lo + b * negatives].view(b, negatives)], dim=1)
        keep = torch.cat([positive[:b, None], positive[lo:lo + b * negatives].view(b, negatives)], dim=1)
        log_pos = torch.logsumexp(scores.masked_fill(~keep, float("-inf")), dim=1)
        losses.append((torch.logsumexp(scores, dim=1) - log_pos).mean())
    return 0.5 * (losses[0] + losses[1])


def shortlist_loss(image_embeddings: Tensor, caption_embeddings: Tensor, image_ids: Tensor, *,
                   temperature: float = 0.05) -> Tensor:
    """Symmetric in-batch contrastive loss of the dual-encoder shortlist head (not in the paper).

    Row b of both embeddings comes from example b, an (image, caption) pair; all B x B pairs are
    scored by cosine / temperature. For each caption, every column showing its image is a
    positive (a batch may hold several captions of one image): the loss is minus the log of the
    softmax mass on the positives, averaged over captions, and the same over images, then the
    two directions are averaged. Cheap: no cross-attention runs for the B x B pairs.
    """
    if image_embeddings.shape != caption_embeddings.shape or image_embeddings.dim() != 2:
        raise ValueError(f"image {tuple(image_embeddings.shape)} and caption {tuple(caption_embeddings.shape)} "
                         f"embeddings must both be (B, e)")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    ids = image_ids.reshape(-1)
    logits = caption_embeddings.float() @ image_embeddings.float().T / temperature  # (B captions, B images)
    positive = ids[:, None] == ids[None, :]

    def direction(scores: Tensor) -> Tensor:
        log_all = torch.logsumexp(scores, dim=1)
        log_pos = torch.logsumexp(scores.masked_fill(~positive, float("-inf")), dim=1)
        return (log_all - log_pos).mean()

    return 0.5 * (direction(logits) + direction(logits.T))


EVAL_FOLDS = 5  # COCO "1K": the 5K test split in five consecutive folds of 1,000 images


def metric_keys(m: RetrievalMetrics, prefix: str = "") -> dict[str, float]:
    """The flat keys a retrieval evaluation reports, optionally prefixed."""
    return {f"{prefix}{k}": v for k, v in (
        ("i2t_r1", m.i2t.r1), ("i2t_r5", m.i2t.r5), ("i2t_r10", m.i2t.r10), ("t2i_r1", m.t2i.r1),
        ("t2i_r5", m.t2i.r5), ("t2i_r10", m.t2i.r10), ("rsum", m.rsum), ("i2t_medr", m.i2t.medr),
        ("t2i_medr", m.t2i.medr))}


def fold_keys(scores: np.ndarray, captions_per_image: int, folds: int = EVAL_FOLDS) -> dict[str, float]:
    """The paper's COCO 1K protocol on any split: every metric averaged over `folds` consecutive
    blocks of n // folds images, each against its own captions only (`fold_metrics`), as keys
    `fold_i2t_r1` ... plus `folds` and `fold_images`. The unprefixed keys are the whole split
    ("5K"). Images beyond folds x (n // folds) are left out of the folds; fewer than 2 images
    per fold gives nothing. On a two-stage matrix the folds are blocks of the whole split's
    shortlists, not shortlists made within each fold."""
    size = scores.shape[0] // folds
    if size < 2:
        return {}
    used = scores[:size * folds, :size * folds * captions_per_image]
    m = fold_metrics(used, captions_per_image, folds)
    return {**metric_keys(m, "fold_"), "folds": float(folds), "fold_images": float(size)}
