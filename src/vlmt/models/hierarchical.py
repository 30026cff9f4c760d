"""The hierarchical multi-task vision-language model (H: Nguyen & Okatani, "Multi-task Learning
of Hierarchical Vision-Language Representation", CVPR 2019).

A shared encoder - language encoder, region encoder and a stack of L dense co-attention layers
(Eq. 1-3) - and task decoders attached at configurable depths (paper: retrieval at 3, VQA at 5,
grounding at 2). Each task call runs only the layers its decoder needs (Algorithm 1: E_{l(i)}).

Retrieval over all image x caption pairs cannot be factorised (the encoder mixes the two
modalities from layer 1 on), so evaluation caches what depends on one modality only -
`encode_images` / `encode_captions`, including layer 1's own-side projections - and scores
blocks of pairs in batches with `score_pairs`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from vlmt.models.layers.fused import DenseCoAttentionStack, SideInput
from vlmt.models.heads import GroundingHead, RetrievalHead, ShortlistHead, VQAHead
from vlmt.models.layers.language import LanguageEncoder, lengths_to_mask
from vlmt.models.layers.regions import RegionEncoder

TASKS = ("retrieval", "vqa", "grounding")


@dataclass
class HierarchicalConfig:
    """Constructor arguments of `HierarchicalVL`; stored in checkpoints to rebuild the model."""

    vocab_size: int
    num_answers: int = 0  # size of the VQA answer pool; 0 = no VQA decoder
    region_feature_dim: int = 2048
    dim: int = 1024
    word_dim: int = 300
    num_layers: int = 5
    heads: int = 4
    null_slots: int = 3
    fc_dropout: float = 0.3
    lstm_dropout: float = 0.1
    padding_idx: int = 0
    freeze_word_vectors: bool = False
    decoder_layers: dict[str, int] = field(
        default_factory=lambda: {"retrieval": 3, "vqa": 5, "grounding": 2}
    )
    shortlist_dim: int = 0  # width of the dual-encoder shortlist head; 0 = none
    shortlist_detach: bool = True  # the shortlist head does not train the shared encoder

    def __post_init__(self) -> None:
        unknown = set(self.decoder_layers) - set(TASKS)
        if unknown:
            raise ValueError(f"decoder_layers: unknown task(s) {sorted(unknown)}; known: {list(TASKS)}")
        for task, layer in self.decoder_layers.items():
            if not 1 <= layer <= self.num_layers:
                raise ValueError(f"decoder_layers[{task!r}] = {layer} outside 1..{self.num_layers}")
        if self.dim % self.heads != 0 or self.dim % 2 != 0:
            raise ValueError(f"dim {self.dim} must be even and divisible by heads {self.heads}")
        if self.num_answers < 0:
            raise ValueError(f"num_answers must be >= 0, got {self.num_answers}")
        if self.shortlist_dim < 0:
            raise ValueError(f"shortlist_dim must be >= 0, got {self.shortlist_dim}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ImageCache:
    """Per-image work reused across captions: I_0 (n, T, d), its mask and layer 1's region side."""

    regions: Tensor
    mask: Tensor
    first_side: SideInput

    @staticmethod
    def cat(blocks: list[ImageCache]) -> ImageCache:
        """One cache of every block's images, in order (blocks share T)."""
        return ImageCache(torch.cat([b.regions for b in blocks]), torch.cat([b.mask for b in blocks]),
                          _cat_sides([b.first_side for b in blocks]))


def _cat_sides(sides: list[SideInput]) -> SideInput:
    return SideInput(torch.cat([s.projected for s in sides]), torch.cat([s.own for s in sides]), sides[0].nulls)


@dataclass
class CaptionCache:
    """Per-caption work reused across images: S_0 (n, N, d), its mask and layer 1's word side."""

    words: Tensor
    mask: Tensor
    first_side: SideInput


class HierarchicalVL(nn.Module):
    """Shared dense co-attention encoder + retrieval / VQA / grounding decoders."""

    def __init__(self, config: HierarchicalConfig, *, word_vectors: Tensor | None = None):
        super().__init__()
        self.config = config
        c = config
        freeze = c.freeze_word_vectors or word_vectors is not None
        self.language = LanguageEncoder(
            vocab_size=c.vocab_size,
            dim=c.dim,
            word_dim=c.word_dim,
            padding_idx=c.padding_idx,
            dropout=c.lstm_dropout,
            word_vectors=word_vectors,
            freeze_word_vectors=freeze,
        )
        self.regions = RegionEncoder(feature_dim=c.region_feature_dim, dim=c.dim)
        self.encoder = DenseCoAttentionStack(
            num_layers=c.num_layers, dim=c.dim, heads=c.heads, null_slots=c.null_slots, dropout=c.fc_dropout
        )
        self.heads = nn.ModuleDict()
        if "retrieval" in c.decoder_layers:
            self.heads["retrieval"] = RetrievalHead(dim=c.dim, heads=c.heads, dropout=c.fc_dropout)
        if "vqa" in c.decoder_layers and c.num_answers > 0:
            self.heads["vqa"] = VQAHead(dim=c.dim, num_answers=c.num_answers, heads=c.heads, dropout=c.fc_dropout)
        if "grounding" in c.decoder_layers:
            self.heads["grounding"] = GroundingHead(dim=c.dim)
        if c.shortlist_dim > 0:
            self.heads["shortlist"] = self._shortlist_head()

    def _shortlist_head(self) -> ShortlistHead:
        c = self.config
        return ShortlistHead(dim=c.dim, embed_dim=c.shortlist_dim, heads=c.heads, dropout=c.fc_dropout,
                             detach=c.shortlist_detach)

    def attach_shortlist(self, *, embed_dim: int, detach: bool = True) -> None:
        """Add the dual-encoder shortlist head (`ShortlistHead`) over I_0 / S_0 for fast retrieval.
        An existing head of the same width and detach setting is kept; another is an error."""
        c = self.config
        if embed_dim < 1:
            raise ValueError(f"shortlist embedding width must be >= 1, got {embed_dim}")
        if "shortlist" in self.heads:
            if (c.shortlist_dim, c.shortlist_detach) != (embed_dim, detach):
                raise ValueError(f"a shortlist head of width {c.shortlist_dim} (detach {c.shortlist_detach}) "
                                 f"is already attached")
            return
        c.shortlist_dim, c.shortlist_detach = embed_dim, detach
        self.heads["shortlist"] = self._shortlist_head().to(next(self.parameters()).device)

    @property
    def shortlist(self) -> ShortlistHead:
        if "shortlist" not in self.heads:
            raise KeyError("this model has no shortlist head (retrieval task option shortlist_dim)")
        return self.heads["shortlist"]

    def attach_decoder(self, task: str, *, layer: int, num_answers: int | None = None) -> None:
        """Add the decoder of `task` reading layer `layer` (1..L), e.g. from a task's config.

        A decoder already attached at the same layer is kept; another layer is an error (one
        decoder per task kind). `num_answers` sets the VQA pool size when the model has none yet.
        """
        if task not in TASKS:
            raise KeyError(f"unknown task {task!r}; known: {list(TASKS)}")
        c = self.config
        if not 1 <= layer <= c.num_layers:
            raise ValueError(f"{task} decoder layer {layer} outside 1..{c.num_layers} (num_layers)")
        if task in self.heads:
            if c.decoder_layers[task] != layer:
                raise ValueError(f"the {task} decoder is already attached at layer {c.decoder_layers[task]}, "
                                 f"not {layer}")
            return
        if task == "retrieval":
            head: nn.Module = RetrievalHead(dim=c.dim, heads=c.heads, dropout=c.fc_dropout)
        elif task == "vqa":
            if num_answers is not None:
                c.num_answers = num_answers
            if c.num_answers < 1:
                raise ValueError("the VQA decoder needs an answer pool (num_answers >= 1)")
            head = VQAHead(dim=c.dim, num_answers=c.num_answers, heads=c.heads, dropout=c.fc_dropout)
        else:
            head = GroundingHead(dim=c.dim)
        c.decoder_layers[task] = layer
        self.heads[task] = head.to(next(self.parameters()).device)

    # -- encoder ---------------------------------------------------------------------------------
    def inputs(
        self, tokens: Tensor, lengths: Tensor, region_features: Tensor, region_mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(S_0, I_0, word_mask, region_mask) from token ids (B, N), lengths (B,), features
        (B, T, D) and region mask (B, T) (True = real region)."""
        words = self.language(tokens, lengths)
        word_mask = lengths_to_mask(lengths.to(tokens.device), tokens.shape[1])
        region_mask = region_mask.bool()
        if not bool(region_mask.any(dim=1).all()):
            raise ValueError("every image needs at least one real region")
        return words, self.regions(region_features, region_mask), word_mask, region_mask

    def encode(
        self, tokens: Tensor, lengths: Tensor, region_features: Tensor, region_mask: Tensor, *, depth: int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(S_depth, I_depth, word_mask, region_mask): runs the first `depth` layers only."""
        words, regions, word_mask, region_mask = self.inputs(tokens, lengths, region_features, region_mask)
        words, regions = self.encoder(words, regions, word_mask, region_mask, depth=depth)[-1]
        return words, regions, word_mask, region_mask

    def layer_of(self, task: str) -> int:
        if task not in self.heads:
            raise KeyError(f"this model has no {task!r} decoder (has {sorted(self.heads)})")
        return self.config.decoder_layers[task]

    # -- task forwards ---------------------------------------------------------------------------
    def forward_retrieval(
        self, tokens: Tensor, lengths: Tensor, region_features: Tensor, region_mask: Tensor
    ) -> Tensor:
        """(B,) relevance logits of the B given (image, caption) pairs (Eq. 7 before sigma)."""
        s, i, wm, rm = self.encode(tokens, lengths, region_features, region_mask, depth=self.layer_of("retrieval"))
        return self.heads["retrieval"](s, i, wm, rm)

    def shortlist_embeddings(
        self, tokens: Tensor, lengths: Tensor, region_features: Tensor, region_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(image, caption) unit embeddings (B, e) of the shortlist head for B pairs' two sides.
        With a detached head the shared encoder runs without building a graph."""
        head = self.shortlist
        with torch.set_grad_enabled(torch.is_grad_enabled() and not head.detach):
            words, regions, word_mask, region_mask = self.inputs(tokens, lengths, region_features, region_mask)
        return head.embed_images(regions, region_mask), head.embed_captions(words, word_mask)

    def forward_vqa(self, tokens: Tensor, lengths: Tensor, region_features: Tensor, region_mask: Tensor) -> Tensor:
        """(B, num_answers) answer logits (Eq. 8 before sigma)."""
        s, i, wm, rm = self.encode(tokens, lengths, region_features, region_mask, depth=self.layer_of("vqa"))
        return self.heads["vqa"](s, i, wm, rm)

    def forward_grounding(
        self, tokens: Tensor, lengths: Tensor, region_features: Tensor, region_mask: Tensor, spans: Tensor
    ) -> Tensor:
        """(B, H, T) phrase-region logits (Eq. 10 before sigma); spans (B, H, 2) are inclusive
        0-based word indices; padded regions get a very low logit."""
        s, i, wm, rm = self.encode(tokens, lengths, region_features, region_mask, depth=self.layer_of("grounding"))
        return self.heads["grounding"](s, i, spans, rm)

    def forward(self, task: str, **batch: Tensor) -> Tensor:
        """Dispatch by task name: `model("vqa", tokens=..., lengths=..., region_features=...,
        region_mask=...)`; grounding also takes `spans`."""
        if task == "retrieval":
            return self.forward_retrieval(**batch)
        if task == "vqa":
            return self.forward_vqa(**batch)
        if task == "grounding":
            return self.forward_grounding(**batch)
        raise KeyError(f"unknown task {task!r}; known: {list(TASKS)}")

    # -- attention for pictures ------------------------------------------------------------------
    @torch.no_grad()
    def attention_maps(self, task: str, **batch: Tensor) -> dict[str, Tensor]:
        """What the decoder of `task` looks at, for pictures (`vlmt visualize`).

        `batch` holds the same tensors as the task's forward (tokens, lengths, region_features,
        region_mask; grounding also spans); other keys, such as the rest of a task's batch, are
        ignored, so `model.attention_maps(task.kind, **task.example_batch(split, i)[0])` works. Returns, for "retrieval" and "vqa", the decoder's
        summary attention averaged over its K maps: "regions" (B, T) and "words" (B, N), each row
        summing to 1 over real positions (0 on padding); for "grounding", "phrase_regions"
        (B, P, T): sigmoid scores of every region for every phrase (0 on padded regions). Runs
        in eval mode (no dropout) and restores the previous mode.
        """
        was_training = self.training
        self.eval()
        try:
            tokens, lengths = batch["tokens"], batch["lengths"]
            features, mask = batch["region_features"], batch["region_mask"]
            s, i, wm, rm = self.encode(tokens, lengths, features, mask, depth=self.layer_of(task))
            if task == "grounding":
                logits = self.heads["grounding"](s, i, batch["spans"], rm)  # (B, P, T)
                return {"phrase_regions": torch.sigmoid(logits) * rm[:, None, :].to(logits.dtype)}
            head = self.heads[task]
            if task == "retrieval":
                image_summary, sentence_summary = head.image_summary, head.sentence_summary
            else:
                image_summary, sentence_summary = head.image_summary, head.question_summary
            return {"regions": image_summary.attention(i, rm), "words": sentence_summary.attention(s, wm)}
        finally:
            self.train(was_training)

    # -- all-pairs retrieval scoring -------------------------------------------------------------
    def encode_images(self, region_features: Tensor, region_mask: Tensor) -> ImageCache:
        """Per-image work for `score_pairs`: I_0 and layer 1's region-only GEMM."""
        mask = region_mask.bool()
        regions = self.regions(region_features, mask)
        return ImageCache(regions, mask, self.encoder.layers[0].region_side(regions))

    def encode_captions(self, tokens: Tensor, lengths: Tensor) -> CaptionCache:
        """Per-caption work for `score_pairs`: S_0 (embedding + BiLSTM) and layer 1's word-only GEMM."""
        words = self.language(tokens, lengths)
        mask = lengths_to_mask(lengths.to(tokens.device), tokens.shape[1])
        return CaptionCache(words, mask, self.encoder.layers[0].word_side(words))

    @torch.no_grad()
    def score_pairs(self, images: ImageCache, captions: CaptionCache, *, pair_batch: int = 256) -> Tensor:
        """(n_images, n_captions) relevance logits for every image x caption pair of the blocks.

        The encoder runs per pair (cross-attention), `pair_batch` pairs at a time; everything that
        depends on one modality comes from the caches. Call under `model.eval()`.
        """
        n_img, n_cap = images.regions.shape[0], captions.words.shape[0]
        flat = torch.arange(n_img * n_cap, device=images.regions.device)
        scores = self.score_pair_list(images, captions, flat // n_cap, flat % n_cap, pair_batch=pair_batch)
        return scores.view(n_img, n_cap)

    @torch.no_grad()
    def score_pair_list(self, images: ImageCache, captions: CaptionCache, image_index: Tensor,
                        caption_index: Tensor, *, pair_batch: int = 256) -> Tensor:
        """(P,) relevance logits of the pairs (images[image_index[p]], captions[caption_index[p]]),
        `pair_batch` pairs per encoder pass: the re-ranking stage scores a shortlist this way."""
        if self.training:
            raise RuntimeError("score_pairs needs model.eval(): dropout would make scores random")
        if image_index.shape != caption_index.shape or image_index.dim() != 1:
            raise ValueError(f"image_index {tuple(image_index.shape)} and caption_index "
                             f"{tuple(caption_index.shape)} must be equal-length vectors")
        depth = self.layer_of("retrieval")
        device = images.regions.device
        image_index, caption_index = image_index.to(device), caption_index.to(device)
        scores = torch.empty(image_index.shape[0], device=device)
        for lo in range(0, image_index.shape[0], pair_batch):
            img, cap = image_index[lo:lo + pair_batch], caption_index[lo:lo + pair_batch]
            words, regions = captions.words[cap], images.regions[img]
            word_mask, region_mask = captions.mask[cap], images.mask[img]
            s, i = self.encoder(
                words,
                regions,
                word_mask,
                region_mask,
                depth=depth,
                first_word_side=captions.first_side.select(cap),
                first_region_side=images.first_side.select(img),
            )[-1]
            scores[lo:lo + img.shape[0]] = self.heads["retrieval"](s, i, word_mask, region_mask).float()
        return scores
