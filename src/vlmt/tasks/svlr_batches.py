"""The batches of the SVLR tasks: their types and the collate functions that make them from the
`svlr` family's examples (the tasks' base and checks: `vlmt.tasks.svlr_base`).

- `recognition_batch`: M Genome regions -> `RecognitionBatch` (features from the store rows the
  data section matched; object targets = labels in O and their hypernyms, with hypernyms
  outside O as extra positive-only columns scored through g; attribute targets over T).
- `RecognitionColumns`: the same batches from rows of a split's `GenomeRegions` columns, by
  array indexing (no `GenomeRegion` per region): what the recognition task trains and evaluates on.
- `vqa_batch`: P multiple-choice questions -> `VQAMCBatch` (the image's regions padded to the
  batch's longest, a word table of every word the batch mentions, index lists into it).
- `MCBatches`: the same batches from rows of a split's `MCQuestions` columns, by array indexing
  (no per-question Python objects): what training and evaluation read from a built dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from vlmt.data.features.resident import StoreRows, on_device
from vlmt.data.features.store import as_float32
from vlmt.models.svlr import SVLRVQAInputs
from vlmt.tasks.collate import pad_regions, padded_regions
from vlmt.tasks.svlr_data import GenomeRegion, GenomeRegions, SVLRAssets, SVLRData
from vlmt.tasks.svlr_text import MCQuestion, MCQuestions


@dataclass
class RecognitionBatch:
    """M Visual Genome regions with their labels (what the recognition collate provides).

    Object columns are the model's label set O followed by X extra words (hypernyms of true
    labels that are not in O, with their word vectors); attribute columns are the label set T.
    """

    region_features: Any  # (M, D) float tensor (a `StoreRows` with data.features_on_device, until .to())
    object_targets: torch.Tensor  # (M, K_o + X) bool: labels and their hypernyms (H_j)
    attribute_targets: torch.Tensor  # (M, K_a) bool (T_j)
    extra_object_vectors: torch.Tensor | None = None  # (X, V) word vectors of the extra columns
    region_mask: torch.Tensor | None = None  # (M,) bool, False for padding

    def to(self, device: torch.device | str) -> RecognitionBatch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return RecognitionBatch(self.region_features.to(device), self.object_targets.to(device),
                                self.attribute_targets.to(device), move(self.extra_object_vectors),
                                move(self.region_mask))


@dataclass
class VQAMCBatch:
    """Model inputs plus the index of the correct choice of each question."""

    inputs: SVLRVQAInputs
    correct: torch.Tensor  # (P,) long

    def to(self, device: torch.device | str) -> "VQAMCBatch":
        return VQAMCBatch(inputs=self.inputs.to(device), correct=self.correct.to(device))


def region_features(data: SVLRData, regions: Sequence[GenomeRegion]) -> Any:
    """(M, D) float32 features of the regions' store rows (their `StoreRows` where the store is
    kept on the device)."""
    if on_device(data.store):
        starts, counts = data.store.spans(np.fromiter((r.image_id for r in regions), np.int64, len(regions)))
        rows = np.fromiter((r.row for r in regions), np.int64, len(regions))
        bad = np.flatnonzero((rows < 0) | (rows >= counts))
        if len(bad):  # what indexing the picture's rows raises on the other path
            raise IndexError(f"region row {int(rows[bad[0]])} of image {regions[int(bad[0])].image_id}: the store "
                             f"holds {int(counts[bad[0]])} regions of it")
        return StoreRows.of(data.store, starts + rows)
    out = np.empty((len(regions), data.region_dim), dtype=np.float32)
    by_image: dict[int, list[int]] = {}
    for i, r in enumerate(regions):
        by_image.setdefault(r.image_id, []).append(i)
    parts, where = [], []
    for image_id, idx in by_image.items():
        parts.append(data.store.views(image_id)[1][[regions[i].row for i in idx]])  # only the rows used
        where.extend(idx)
    if parts:
        rows = np.concatenate(parts)
        out[where] = rows if rows.dtype == np.float32 else as_float32(rows)  # widened once per batch
    return torch.from_numpy(out)


def hypernym_labels(data: SVLRData | SVLRAssets, regions: Sequence[GenomeRegion]) -> list[list[int]]:
    """Per region, the indices in O of its names' hypernyms (the positives Eq. 1 adds to H_j that
    are labels themselves); empty when the data has no hypernyms."""
    o_index = {w: i for i, w in enumerate(data.object_labels)}
    return [[o_index[h] for h in r.hypernyms if h in o_index] for r in regions]


_LABEL_INDEX: dict[int, tuple[Sequence[str], dict[str, int]]] = {}


def _label_index(labels: Sequence[str]) -> dict[str, int]:
    """label -> its index, worked out once per label list (a batch used to build it: 4 % of one)."""
    held = _LABEL_INDEX.get(id(labels))
    if held is None or held[0] is not labels:
        held = _LABEL_INDEX[id(labels)] = (labels, {w: i for i, w in enumerate(labels)})
    return held[1]


def recognition_batch(data: SVLRData, regions: Sequence[GenomeRegion], *, use_hypernyms: bool = True,
                      extra_columns: bool = True) -> RecognitionBatch:
    """Targets of Eq. 1 and Eq. 2 for M regions.

    `use_hypernyms`: H_j holds the labels' hypernyms too (Eq. 1); `extra_columns`: hypernyms
    outside O become extra positive-only columns (needs g, so not with per-class vectors), numbered
    in order of first mention. The (row, column) pairs of every target are gathered in lists and
    set in one indexing; each distinct hypernym set is split into O and outside O once a batch.
    """
    o_index = _label_index(data.object_labels)
    k_o, k_a = len(data.object_labels), len(data.attribute_labels)
    extra: dict[str, int] = {}
    split: dict[tuple[str, ...], tuple[list[int], list[str]]] = {}
    rows_o: list[int] = []
    cols_o: list[int] = []
    rows_a: list[int] = []
    cols_a: list[int] = []
    for i, r in enumerate(regions):
        rows_o += [i] * len(r.objects)
        cols_o += r.objects
        rows_a += [i] * len(r.attributes)
        cols_a += r.attributes
        if use_hypernyms and r.hypernyms:
            parts = split.get(r.hypernyms)
            if parts is None:
                parts = split[r.hypernyms] = ([o_index[h] for h in r.hypernyms if h in o_index],
                                              [h for h in r.hypernyms if h not in o_index])
            ins, outs = parts
            rows_o += [i] * len(ins)
            cols_o += ins
            if extra_columns and outs:
                rows_o += [i] * len(outs)
                cols_o += [k_o + extra.setdefault(h, len(extra)) for h in outs]
    obj = np.zeros((len(regions), k_o + len(extra)), dtype=bool)  # numpy: a tenth of torch's cost per row
    atr = np.zeros((len(regions), k_a), dtype=bool)
    obj[np.asarray(rows_o, dtype=np.int64), np.asarray(cols_o, dtype=np.int64)] = True
    atr[np.asarray(rows_a, dtype=np.int64), np.asarray(cols_a, dtype=np.int64)] = True
    extra_vectors = torch.from_numpy(data.words.matrix(list(extra))) if extra else None
    return RecognitionBatch(region_features=region_features(data, regions), object_targets=torch.from_numpy(obj),
                            attribute_targets=torch.from_numpy(atr), extra_object_vectors=extra_vectors)


def _csr_take(offsets: np.ndarray, values: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in `index`, value) of every value of the lists `index` picks from a CSR table
    (list k is values[offsets[k]:offsets[k + 1]]), in the order of `index`, then of each list."""
    starts = offsets[index]
    lengths = offsets[index + 1] - starts
    where = np.repeat(np.arange(len(index)), lengths)
    first = np.cumsum(lengths) - lengths
    return where, values[np.arange(int(lengths.sum())) - first[where] + starts[where]]


def regions_at(regions: Sequence[GenomeRegion], rows: Sequence[int] | np.ndarray) -> list[GenomeRegion]:
    """`[regions[i] for i in rows]`, the same regions; from a split's `GenomeRegions` columns with
    one gather per column (building each region from its columns one by one was 40 % of a composed
    recognition batch's CPU time)."""
    if not isinstance(regions, GenomeRegions):
        return [regions[int(i)] for i in rows]
    index = np.asarray(rows, dtype=np.int64)
    n = len(regions)
    if len(index) and (index.min() < -n or index.max() >= n):
        raise IndexError(f"region {int(index[(index < -n) | (index >= n)][0])} of {n}")
    index = np.where(index < 0, index + n, index)
    sets = regions.hypernym_sets
    columns = zip(regions.image_ids[index].tolist(), regions.rows[index].tolist(), regions.ious[index].tolist(),
                  _tuples(regions.object_offsets, regions.objects, index), regions.hypernym_ids[index].tolist(),
                  _tuples(regions.attribute_offsets, regions.attributes, index))
    return [GenomeRegion(image_id, row, iou, objects, sets[h], attributes)
            for image_id, row, iou, objects, h, attributes in columns]


def _tuples(offsets: np.ndarray, values: np.ndarray, index: np.ndarray) -> list[tuple[int, ...]]:
    """The lists `index` picks from a CSR table, as tuples of Python ints."""
    starts = offsets[index]
    lengths = offsets[index + 1] - starts
    _, picked = _csr_take(offsets, values, index)
    flat = picked.tolist()
    bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    return [tuple(flat[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _csr(lists: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(x) for x in lists])
    values = np.fromiter((v for x in lists for v in x), dtype=np.int64, count=int(offsets[-1]))
    return offsets, values


class RecognitionColumns:
    """`recognition_batch` of rows of one split's regions, by indexing columns worked out once: the
    batch is the same, bit for bit (extra hypernym columns in first-mention order), without a
    `GenomeRegion` per region or a store look-up per picture (the two were half of a batch's
    CPU time). Columns: each region's row in the store's maps (and its picture and row there), its
    labels in O and T (CSR), its hypernym set's hypernyms in O and outside O (CSR over the split's
    distinct sets)."""

    def __init__(self, data: SVLRData, regions: Sequence[GenomeRegion], *, use_hypernyms: bool = True,
                 extra_columns: bool = True):
        cols = regions if isinstance(regions, GenomeRegions) else GenomeRegions.of(regions)
        self.data, self.use_hypernyms, self.extra_columns = data, use_hypernyms, extra_columns
        self.k_o, self.k_a = len(data.object_labels), len(data.attribute_labels)
        images, inverse = np.unique(np.asarray(cols.image_ids, dtype=np.int64), return_inverse=True)
        spans = np.array([data.store.region_span(int(i)) for i in images.tolist()], dtype=np.int64).reshape(-1, 2)
        rows = np.asarray(cols.rows, dtype=np.int64)
        bad = np.flatnonzero((rows < 0) | (rows >= spans[inverse, 1]))
        if len(bad):
            k = int(bad[0])
            raise ValueError(f"Genome region {k}: row {int(rows[k])} is not one of the "
                             f"{int(spans[inverse[k], 1])} regions of image {int(images[inverse[k]])} in the "
                             f"feature store {data.store.path}")
        self.store_rows = spans[inverse, 0] + rows
        # each region's picture and its row there, for batches that take whole pictures (composed recognition)
        self.image_ids, self.rows = images[inverse], rows
        self.object_offsets = np.asarray(cols.object_offsets, dtype=np.int64)
        self.objects = np.asarray(cols.objects, dtype=np.int64)
        self.attribute_offsets = np.asarray(cols.attribute_offsets, dtype=np.int64)
        self.attributes = np.asarray(cols.attributes, dtype=np.int64)
        self.hypernym_ids = np.asarray(cols.hypernym_ids, dtype=np.int64)
        o_index = {w: i for i, w in enumerate(data.object_labels)}
        extra: dict[str, int] = {}
        in_o = [[o_index[h] for h in hs if h in o_index] for hs in cols.hypernym_sets]
        out_o = [[extra.setdefault(h, len(extra)) for h in hs if h not in o_index] for hs in cols.hypernym_sets]
        self.in_o_offsets, self.in_o = _csr(in_o)
        self.out_o_offsets, self.out_o = _csr(out_o)
        self.extra_words = list(extra)

    def __len__(self) -> int:
        return len(self.store_rows)

    def features(self, rows: Sequence[int] | np.ndarray) -> Any:
        """(M, D) float32 features of the regions `rows`: one gather from the store's map (or their
        `StoreRows`, gathered by `.to(device)`, where the store is kept on the device)."""
        if on_device(self.data.store):
            return StoreRows.of(self.data.store, self.store_rows[np.asarray(rows, dtype=np.int64)])
        return torch.from_numpy(self.data.store.feature_rows(self.store_rows[np.asarray(rows, dtype=np.int64)]))

    def __call__(self, rows: Sequence[int] | np.ndarray) -> RecognitionBatch:
        index = np.asarray(rows, dtype=np.int64)
        m = len(index)
        where_o, objects = _csr_take(self.object_offsets, self.objects, index)
        where_a, attributes = _csr_take(self.attribute_offsets, self.attributes, index)
        sets = self.hypernym_ids[index]
        table = np.zeros(0, dtype=np.int64)
        if self.use_hypernyms:
            where_h, in_o = _csr_take(self.in_o_offsets, self.in_o, sets)
            where_o, objects = np.concatenate([where_o, where_h]), np.concatenate([objects, in_o])
            if self.extra_columns:
                where_x, out_o = _csr_take(self.out_o_offsets, self.out_o, sets)
                words, first = np.unique(out_o, return_index=True)
                order = np.argsort(first, kind="stable")
                table = words[order]  # extra words, first mentioned first
                local = np.empty(len(words), dtype=np.int64)
                local[order] = np.arange(len(words))
                where_o = np.concatenate([where_o, where_x])
                objects = np.concatenate([objects, self.k_o + local[np.searchsorted(words, out_o)]])
        obj = np.zeros((m, self.k_o + len(table)), dtype=bool)
        obj[where_o, objects] = True
        atr = np.zeros((m, self.k_a), dtype=bool)
        atr[where_a, attributes] = True
        extra_vectors = torch.from_numpy(self.data.words.matrix([self.extra_words[k] for k in table.tolist()])) \
            if len(table) else None
        return RecognitionBatch(region_features=self.features(index), object_targets=torch.from_numpy(obj),
                                attribute_targets=torch.from_numpy(atr), extra_object_vectors=extra_vectors)


def vqa_batch(data: SVLRData | SVLRAssets, questions: Sequence[MCQuestion],
              features: Sequence[np.ndarray] | None = None) -> VQAMCBatch:
    """Model inputs of P questions (every choice of each) and the correct choice indices. The
    region features of each question's image come from the data's store, or from `features`
    (one (T, D) array per question: a new picture's regions)."""
    if features is None:
        assert isinstance(data, SVLRData), "region features come from the store of the data or are given"
        features = [data.store.read(q.image_id, copy=False).features for q in questions]
    C = max(len(q.choices) for q in questions)
    regions = pad_regions(features, data.region_dim)
    table: dict[str, int] = {}

    def ids(terms: Sequence[str]) -> list[int]:
        return [table.setdefault(t, len(table)) for t in terms]

    def per_choice(q: MCQuestion, lists: Sequence[Sequence[str]]) -> list[list[int]]:
        return [ids(x) for x in lists] + [[] for _ in range(C - len(lists))]

    choice_mask = torch.zeros(len(questions), C, dtype=torch.bool)
    for i, q in enumerate(questions):
        choice_mask[i, : len(q.choices)] = True
    inputs = SVLRVQAInputs.from_lists(
        region_features=regions["region_features"], region_mask=regions["region_mask"],
        word_vectors=torch.zeros(0),  # replaced below, once the table is complete
        question_nouns=[ids(q.nouns) for q in questions],
        question_adjectives=[ids(q.adjectives) for q in questions],
        question_bins=[[ids(b) for b in q.bins] for q in questions],
        answer_words=[per_choice(q, q.choice_words) for q in questions],
        answer_nouns=[per_choice(q, q.choice_nouns) for q in questions],
        answer_adjectives=[per_choice(q, q.choice_adjectives) for q in questions],
        choice_mask=choice_mask)
    words = list(table) or ["<none>"]
    inputs.word_vectors = torch.from_numpy(data.words.matrix(words)) if table else \
        torch.zeros(1, data.word_dim)
    correct = torch.tensor([q.correct for q in questions], dtype=torch.long)
    return VQAMCBatch(inputs=inputs, correct=correct)


_ID_FIELDS = ("question_nouns", "question_adjectives", "question_bins", "answer_words", "answer_nouns",
              "answer_adjectives")  # the order vqa_batch numbers the batch's words in
_MASKS = ("question_noun_mask", "question_adjective_mask", "question_bin_mask", "answer_word_mask",
          "answer_noun_mask", "answer_adjective_mask")


class MCBatches:
    """`vqa_batch` of rows of one split's `MCQuestions`, by indexing its columns: the batch is
    the same, bit for bit (word table in first-mention order, the same widths and padding), at a
    fraction of the cost (the per-question objects and word-id lists were most of it). The word
    vectors of the split's vocabulary are kept once computed (the data's `WordTable` holds the
    vectors of every token already, so this adds about as much again)."""

    def __init__(self, data: SVLRData, questions: MCQuestions):
        self.data, self.questions = data, questions
        self._vocab = questions.vocabulary()
        self._vectors = np.empty((len(self._vocab), data.word_dim), dtype=np.float32)  # pages filled on use
        self._known = np.zeros(len(self._vocab), dtype=bool)

    def __call__(self, rows: Sequence[int] | np.ndarray) -> VQAMCBatch:
        arrays = self.questions.id_arrays(np.asarray(rows, dtype=np.int64))
        regions = padded_regions(self.data.store, arrays["image_ids"].tolist())
        ids = [arrays[name] for name in _ID_FIELDS]
        mentioned = np.concatenate([a.ravel() for a in ids])
        mentioned = mentioned[mentioned >= 0]
        words, first = np.unique(mentioned, return_index=True)  # sorted ids and their first mention
        order = np.argsort(first, kind="stable")
        table = words[order]                                    # vocabulary ids, first mentioned first
        local = np.empty(len(words), dtype=np.int64)
        local[order] = np.arange(len(words))
        fields: dict[str, torch.Tensor] = {"region_features": regions["region_features"],
                                           "region_mask": regions["region_mask"],
                                           "choice_mask": torch.from_numpy(arrays["choice_mask"])}
        for name, mask_name, a in zip(_ID_FIELDS, _MASKS, ids):
            real = a >= 0
            index = np.zeros(a.shape, dtype=np.int64)
            index[real] = local[np.searchsorted(words, a[real])]
            fields[name], fields[mask_name] = torch.from_numpy(index), torch.from_numpy(real)
        fields["word_vectors"] = torch.from_numpy(self._word_vectors(table)) if len(table) else \
            torch.zeros(1, self.data.word_dim)
        inputs = SVLRVQAInputs(**fields)
        inputs.check()
        return VQAMCBatch(inputs=inputs, correct=torch.from_numpy(arrays["correct"].astype(np.int64)))

    def _word_vectors(self, ids: np.ndarray) -> np.ndarray:
        new = ids[~self._known[ids]]
        if len(new):
            self._vectors[new] = self.data.words.matrix([self._vocab[k] for k in new.tolist()])
            self._known[new] = True
        return self._vectors[ids]
