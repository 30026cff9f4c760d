"""SVLR: word and region embeddings shared across tasks (S: Gupta, Shih, Singh, Hoiem, "Aligned
Image-Word Representations Improve Inductive Transfer Across Vision-Language Tasks", ICCV 2017).
Equation numbers below are the paper's.

- g(w): word vector -> FC -> ReLU -> FC                               (Sec. 3.1)
- f_o(R), f_a(R): region feature -> FC + BN + ReLU -> FC (+ BN)       (Sec. 3.1)
- the vectors recognition scores its label sets O and T with: g(label word vector), or in the
  "Joint Multitask" baseline (Sec. 5.2) one learned vector h_y per label, so g is used by VQA
  only. The label word vectors are kept here, beside g, because recognition and multiple-choice
  VQA (the s_o, s_a of Eq. 5) both read them.

This module is an aligner (`vlmt.models.encoders.WordRegionAligner`): what is scored with those
embeddings - recognition f_o(R)·g(w), the attention of multiple-choice VQA (Eq. 3-4) and the
zero-shot score (Eq. 9) - are parameter-free heads over any aligner
(`vlmt.models.heads.word_region`), and the answer scorer of Eq. 5-7 is the multiple-choice
task's head (`vlmt.models.heads.multiple_choice`); the losses (Eq. 1, 2, 8) live with their tasks
(`vlmt.tasks.svlr_recognition`, `vlmt.tasks.svlr_vqa_mc`).

The model is "tensors in, tensors out": it never sees text. A batch carries a table of word
vectors (the words this batch mentions) and index tensors into that table with boolean masks;
`SVLRVQAInputs` documents exactly what a collate function must provide.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vlmt.config import ModelConfig, family_of, from_data, register_model
from vlmt.errors import ConfigError
from vlmt.models.layers.masking import masked_rows

RecognitionVectors = Literal["shared", "per_class"]


@register_model("svlr")
@dataclass(frozen=True)
class SVLRConfig(ModelConfig):
    """`model: {type: svlr, ...}` and the constructor arguments of `SVLR`.

    embed_dim: the shared space of g, f_o, f_a (paper 300); word_hidden: first FC of g (300);
    region_hidden: first FC of f_o and f_a (2048); region_output_norm: BN after their last FC.
    recognition_vectors "shared" is Joint SVLR (labels are scored with g(label vector));
    "per_class" is the Joint Multitask baseline (one learned vector h_y per label, so g is not
    shared between recognition and VQA). word_dim, region_dim and the label-set sizes |O|, |T| come
    from the data section.
    """

    embed_dim: int = 300
    word_hidden: int = 300
    region_hidden: int = 2048
    region_output_norm: bool = True
    recognition_vectors: RecognitionVectors = "shared"
    word_dim: int | None = from_data()
    region_dim: int | None = from_data()
    num_objects: int | None = from_data()
    num_attributes: int | None = from_data()

    def validate(self) -> str | None:
        if self.recognition_vectors not in ("shared", "per_class"):
            return f"recognition_vectors must be 'shared' or 'per_class', got {self.recognition_vectors!r}"
        for name in ("embed_dim", "word_hidden", "region_hidden", "word_dim", "region_dim", "num_objects",
                     "num_attributes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                return f"{name} must be >= 1, got {value}"
        return None

    def build(self, *, data: Any) -> SVLR:
        """The model for a data section that gives word vectors, region features and the label sets
        O and T with their word vectors: the `svlr` family's data of a `datasets` section
        (`vlmt.tasks.svlr_data`)."""
        data = family_of(data, "svlr")
        needed = ("word_dim", "region_dim", "object_labels", "attribute_labels", "label_vectors")
        if not all(hasattr(data, key) for key in needed):
            raise ConfigError(f"model: SVLR needs the svlr family's data (a `datasets` section with vqa_mc and "
                              f"genome), got {type(data).__name__}")
        config = dataclasses.replace(self, word_dim=data.word_dim, region_dim=data.region_dim,
                                     num_objects=len(data.object_labels), num_attributes=len(data.attribute_labels))
        model = SVLR(config)
        objects, attributes = data.label_vectors()
        model.set_label_vectors(objects=torch.from_numpy(objects), attributes=torch.from_numpy(attributes))
        return model

    def create(self) -> SVLR:
        return SVLR(self)


@dataclass
class SVLRVQAInputs:
    """One multiple-choice VQA batch as tensors (what the collate must provide).

    Shapes: P questions, C choices, T regions, D region feature size, W words in the batch's
    word table, V word-vector size. Index tensors point into `word_vectors`; a mask is True
    where the entry is real and False where it is padding (padded indices may hold any valid
    index, 0 is customary). Nouns and adjectives are lemmatised words tagged by the POS lexicon;
    `question_bins` holds the words of each of the 4 question bins
    (`vlmt.data.question_bins`); `answer_words` all words of each candidate answer.
    """

    region_features: torch.Tensor  # (P, T, D) float
    region_mask: torch.Tensor  # (P, T) bool, at least one True per question
    word_vectors: torch.Tensor  # (W, V) float
    question_nouns: torch.Tensor  # (P, Nq) long
    question_noun_mask: torch.Tensor  # (P, Nq) bool
    question_adjectives: torch.Tensor  # (P, Jq) long
    question_adjective_mask: torch.Tensor  # (P, Jq) bool
    question_bins: torch.Tensor  # (P, 4, Lb) long
    question_bin_mask: torch.Tensor  # (P, 4, Lb) bool
    answer_words: torch.Tensor  # (P, C, La) long
    answer_word_mask: torch.Tensor  # (P, C, La) bool
    answer_nouns: torch.Tensor  # (P, C, Na) long
    answer_noun_mask: torch.Tensor  # (P, C, Na) bool
    answer_adjectives: torch.Tensor  # (P, C, Ja) long
    answer_adjective_mask: torch.Tensor  # (P, C, Ja) bool
    choice_mask: torch.Tensor  # (P, C) bool, at least one True per question

    def check(self) -> None:
        """Raise ValueError when shapes disagree (a collate bug, not a user error)."""
        P, T = self.region_mask.shape
        C = self.choice_mask.shape[1]
        expect = {
            "region_features": (P, T), "question_nouns": (P,), "question_adjectives": (P,),
            "question_bins": (P,), "answer_words": (P, C), "answer_nouns": (P, C),
            "answer_adjectives": (P, C),
        }
        for name, prefix in expect.items():
            shape = tuple(getattr(self, name).shape[: len(prefix)])
            if shape != prefix:
                raise ValueError(f"SVLRVQAInputs.{name} has leading shape {shape}, expected {prefix}")
        pairs = [("question_nouns", "question_noun_mask"), ("question_adjectives", "question_adjective_mask"),
                 ("question_bins", "question_bin_mask"), ("answer_words", "answer_word_mask"),
                 ("answer_nouns", "answer_noun_mask"), ("answer_adjectives", "answer_adjective_mask")]
        for idx_name, mask_name in pairs:
            if getattr(self, idx_name).shape != getattr(self, mask_name).shape:
                raise ValueError(f"SVLRVQAInputs.{idx_name} and {mask_name} differ in shape")
        if not bool(self.region_mask.any(dim=1).all()):
            raise ValueError("SVLRVQAInputs: every question needs at least one unpadded region")
        if not bool(self.choice_mask.any(dim=1).all()):
            raise ValueError("SVLRVQAInputs: every question needs at least one unpadded choice")

    def to(self, device: torch.device | str) -> "SVLRVQAInputs":
        return SVLRVQAInputs(**{k: v.to(device) for k, v in self.__dict__.items()})

    @classmethod
    def from_lists(cls, *, region_features: torch.Tensor, region_mask: torch.Tensor, word_vectors: torch.Tensor,
                   question_nouns: list[list[int]], question_adjectives: list[list[int]],
                   question_bins: list[list[list[int]]], answer_words: list[list[list[int]]],
                   answer_nouns: list[list[list[int]]], answer_adjectives: list[list[list[int]]],
                   choice_mask: torch.Tensor, pad_to: int | None = None) -> "SVLRVQAInputs":
        """Build the index tensors from nested lists of word-table rows (the collate's last step).

        Question lists are per question; answer lists per question, per choice; bins per
        question, per bin. `pad_to` fixes the padded length (default: the longest list).
        """
        fields = dict(region_features=region_features, region_mask=region_mask, word_vectors=word_vectors,
                      choice_mask=choice_mask)
        for name, mask_name, rows in (
                ("question_nouns", "question_noun_mask", question_nouns),
                ("question_adjectives", "question_adjective_mask", question_adjectives),
                ("question_bins", "question_bin_mask", question_bins),
                ("answer_words", "answer_word_mask", answer_words),
                ("answer_nouns", "answer_noun_mask", answer_nouns),
                ("answer_adjectives", "answer_adjective_mask", answer_adjectives)):
            fields[name], fields[mask_name] = pad_ids(rows, pad_to=pad_to)
        inputs = cls(**fields)
        inputs.check()
        return inputs


def pad_ids(rows: list, *, pad_to: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Nested lists of ints, 2 or 3 levels deep, whose innermost lists vary in length ->
    (index tensor padded with 0, bool mask True at real entries)."""
    if rows and rows[0] and isinstance(rows[0][0], list):  # (P, C, L)
        inner = [r for group in rows for r in group]
        outer: tuple[int, ...] = (len(rows), len(rows[0]))
        if any(len(group) != outer[1] for group in rows):
            raise ValueError("pad_ids: every row needs the same number of lists")
    else:  # (P, L)
        inner, outer = list(rows), (len(rows),)
    lengths = np.fromiter((len(r) for r in inner), dtype=np.int64, count=len(inner))
    width = max(int(lengths.max(initial=0)), 1) if pad_to is None else pad_to
    if len(inner) and int(lengths.max()) > width:
        raise ValueError(f"pad_ids: a list of {int(lengths.max())} ids is longer than pad_to={width}")
    # one flat copy instead of a tensor per row (the collate builds thousands of short lists)
    mask_np = np.arange(width)[None, :] < lengths[:, None]
    index_np = np.zeros((len(inner), width), dtype=np.int64)
    index_np[mask_np] = np.fromiter((i for r in inner for i in r), dtype=np.int64, count=int(lengths.sum()))
    index, mask = torch.from_numpy(index_np), torch.from_numpy(mask_np)
    return index.reshape(*outer, width), mask.reshape(*outer, width)


class WordEmbedding(nn.Module):
    """g(w): word vector -> FC -> ReLU -> FC (Sec. 3.1)."""

    def __init__(self, *, word_dim: int, hidden: int, embed_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(word_dim, hidden)
        self.fc2 = nn.Linear(hidden, embed_dim)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(vectors)))


class RegionEmbedding(nn.Module):
    """f_o or f_a: region feature -> FC + BN + ReLU -> FC (+ BN) (Sec. 3.1); rows only."""

    def __init__(self, *, region_dim: int, hidden: int, embed_dim: int, output_norm: bool):
        super().__init__()
        self.fc1 = nn.Linear(region_dim, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, embed_dim)
        self.bn2 = nn.BatchNorm1d(embed_dim) if output_norm else nn.Identity()

    def forward(self, rows: torch.Tensor) -> torch.Tensor:  # (N, D) -> (N, E)
        return self.bn2(self.fc2(F.relu(self.bn1(self.fc1(rows)))))


class SVLR(nn.Module):
    """The shared SVLR module: g, f_o, f_a and the label sets' vectors (an aligner: the scorers
    built on them are `vlmt.models.heads.word_region`)."""

    object_label_vectors: torch.Tensor  # (K_o, V) buffer
    attribute_label_vectors: torch.Tensor  # (K_a, V) buffer

    def __init__(self, config: SVLRConfig):
        super().__init__()
        c = config
        word_dim, region_dim, k_o, k_a = c.word_dim, c.region_dim, c.num_objects, c.num_attributes
        if word_dim is None or region_dim is None or k_o is None or k_a is None:
            raise ValueError("SVLRConfig.word_dim, region_dim, num_objects and num_attributes are needed (build the "
                             "model from a data section with SVLRConfig.build, or set them)")
        problem = c.validate()
        if problem:
            raise ValueError(f"SVLRConfig: {problem}")
        self.config = config
        self.num_labels = k_o + k_a  # |O| + |T|, the width of the image vector f(I) of Eq. 5
        self.g = WordEmbedding(word_dim=word_dim, hidden=c.word_hidden, embed_dim=c.embed_dim)
        self.f_o = RegionEmbedding(region_dim=region_dim, hidden=c.region_hidden, embed_dim=c.embed_dim,
                                   output_norm=c.region_output_norm)
        self.f_a = RegionEmbedding(region_dim=region_dim, hidden=c.region_hidden, embed_dim=c.embed_dim,
                                   output_norm=c.region_output_norm)
        # Word vectors of the label sets O and T; filled by `set_label_vectors`, saved with
        # the weights so a checkpoint can score its label set on its own.
        self.register_buffer("object_label_vectors", torch.zeros(k_o, word_dim))
        self.register_buffer("attribute_label_vectors", torch.zeros(k_a, word_dim))
        if c.recognition_vectors == "per_class":
            # Joint Multitask: h_y, one learned vector per label (Sec. 5.2).
            self.object_class_vectors = nn.Parameter(torch.empty(k_o, c.embed_dim))
            self.attribute_class_vectors = nn.Parameter(torch.empty(k_a, c.embed_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier (Glorot uniform) weights, zero biases, BN at identity (Sec. 4)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm1d):
                module.reset_parameters()
        if self.config.recognition_vectors == "per_class":
            nn.init.xavier_uniform_(self.object_class_vectors)
            nn.init.xavier_uniform_(self.attribute_class_vectors)

    def set_label_vectors(self, *, objects: torch.Tensor, attributes: torch.Tensor) -> None:
        """Store the word vectors of the object labels O (K_o, V) and attribute labels T (K_a, V)."""
        for name, value, buf in (("objects", objects, self.object_label_vectors),
                                 ("attributes", attributes, self.attribute_label_vectors)):
            if tuple(value.shape) != tuple(buf.shape):
                raise ValueError(f"{name} label vectors have shape {tuple(value.shape)}, expected {tuple(buf.shape)}")
            buf.copy_(value.to(buf.dtype))

    # ----- the SVLR module -------------------------------------------------------------------

    def embed_words(self, vectors: torch.Tensor) -> torch.Tensor:
        """g(w) for word vectors of any leading shape: (..., V) -> (..., E)."""
        return self.g(vectors)

    def embed_regions(self, features: torch.Tensor, mask: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(f_o(R), f_a(R)) for features (..., D); padded rows (mask False) are zeros."""
        return masked_rows(self.f_o, features, mask), masked_rows(self.f_a, features, mask)

    def label_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The vectors recognition scores labels with: (K_o, E), (K_a, E).

        Joint SVLR: g(label word vector). Joint Multitask: the learned h_y.
        """
        if self.config.recognition_vectors == "per_class":
            return self.object_class_vectors, self.attribute_class_vectors
        return self.g(self.object_label_vectors), self.g(self.attribute_label_vectors)

    @property
    def embed_dim(self) -> int:
        """E, the width of the shared space."""
        return self.config.embed_dim

    @property
    def labels_are_words(self) -> bool:
        """Whether labels are scored with g of their word vector (Joint SVLR), so that any word can
        be scored like a label; False for the per-class vectors of Joint Multitask."""
        return self.config.recognition_vectors == "shared"
