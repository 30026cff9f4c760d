"""The SVLR family's data (the `svlr` family of a `datasets` section, `vlmt.data.section`): Visual
Genome regions + VQA v1 multiple choice, read through their dataset modules
(`vlmt.data.datasets.genome`, `.vqa_mc`), and the family's preprocessing.

    data:
      type: datasets
      root: world:default
      datasets: {vqa_mc: {}, genome: {}}
      families:
        svlr: {word_dim: 300, num_objects: 1000, num_attributes: 1000}

The section names a source folder (`root: world:default`, a synthetic world, or a folder with the
official files) and each dataset's files inside it (`datasets.genome`, `datasets.vqa_mc`); the
family's build reads everything once and returns an `SVLRData` that the model and the SVLR tasks
share:

- the region feature store (`features/`);
- Genome regions per split, each tied to one row of the store (the store box with the highest
  IoU with the annotated box, at least `match_iou`), with its object labels, their hypernyms
  and its attribute labels;
- the label sets O and T: the `num_objects` / `num_attributes` most frequent object names and
  attributes of the Genome training split (the paper: 1000 each);
- the VQA multiple-choice questions per split, pre-processed into what the model needs: the
  4 question bins, the lemmatised nouns and adjectives of the question and of every choice,
  the words of every choice and the index of the correct choice;
- word vectors of every word and label (`word_vectors:` a GloVe / word2vec file, or, when no
  file is given, fixed random vectors, see `fallback_vector`).

Genome images that are also VQA images are removed first (`drop_vqa_overlap`, the paper's
rule, through the Genome `coco_id` link).

Model selection (S Sec. 5.1): `vqa_mc.splits.val: holdout` carves the validation questions out of
the training subtype instead of reading a file: whole images, taken in the order of a CRC32 hash of
the image id until `vqa_mc.holdout` questions (a count, or a fraction of the training questions) are
held out; the rest stay in train. The paper holds out 12,072 of VQA v1's 248,349 training
questions and reports on val2014. `SVLRData.holdout` lists what was held out, and a run writes it
into its folder (`run_record`, RUN/data.json). A config whose val and test are the same subtype is
refused: the checkpoint would be selected on the split it reports.

Builds are cached per process (keyed by the resolved config), so a grid of runs on the same
world reads it once; an `SVLRData` is never modified after `build()`.

Files of the former `type: svlr_datasets` section (and its older flat `vqa_*` / `genome_*` keys)
read as a `datasets` section with the `svlr` family (`upgrade_svlr_section`, a
`vlmt.config.registry` alias): same datasets, same options, same build.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import operator
from array import array
from collections import Counter
from collections.abc import Sequence as SequenceABC
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Sequence, TypeVar, overload

import numpy as np

from vlmt.config import DATA
from vlmt.data.datasets import genome as genome_dataset
from vlmt.data.datasets import resolve_source, vqa_mc
from vlmt.data.datasets.genome import GenomeFilesConfig
from vlmt.data.datasets.vqa_mc import VQAMCFilesConfig
from vlmt.data.features.store import FeatureStore
from vlmt.data.readers.progress import Progress
from vlmt.data.readers.visual_genome import GenomeTable
from vlmt.data.section import DatasetsConfig, register_family
from vlmt.data.text import HypernymMap, load_word_vectors
from vlmt.errors import ConfigError, DataError
from vlmt.io import load_json, write_json
from vlmt.tasks.svlr_text import MCQuestion, MCQuestions, SVLRText, WordTable, fallback_vector

log = logging.getLogger("vlmt.data.svlr")
T = TypeVar("T")


# --------------------------------------------------------------------------- examples


@dataclass(frozen=True)
class GenomeRegion:
    """One annotated Genome region tied to a row of the feature store."""

    image_id: int                       # the image's key in the store (Genome id + data.genome_id_offset)
    row: int                            # proposal row in the store's record of the image
    iou: float                          # IoU of that store box with the annotated box
    objects: tuple[int, ...]            # indices into the object label set O (names in O)
    hypernyms: tuple[str, ...]          # hypernyms of the region's names (in O or not)
    attributes: tuple[int, ...]         # indices into the attribute label set T


class GenomeRegions(SequenceABC):
    """One split's `GenomeRegion`s as columns (a full-size split is 3 M regions): indexing builds
    the region asked for; a slice gives a list."""

    def __init__(self, image_ids: np.ndarray, rows: np.ndarray, ious: np.ndarray, object_offsets: np.ndarray,
                 objects: np.ndarray, attribute_offsets: np.ndarray, attributes: np.ndarray,
                 hypernym_ids: np.ndarray, hypernym_sets: Sequence[tuple[str, ...]]):
        self.image_ids, self.rows, self.ious = image_ids, rows, ious
        self.object_offsets, self.objects = object_offsets, objects
        self.attribute_offsets, self.attributes = attribute_offsets, attributes
        self.hypernym_ids, self.hypernym_sets = hypernym_ids, list(hypernym_sets)

    @classmethod
    def of(cls, regions: Sequence[GenomeRegion]) -> GenomeRegions:
        """The columns of a list of regions."""
        builder = _RegionsBuilder()
        sets: dict[tuple[str, ...], int] = {}
        for r in regions:
            builder.add(r.image_id, r.row, r.iou, r.objects, sets.setdefault(r.hypernyms, len(sets)), r.attributes)
        return builder.finish(list(sets))

    def __len__(self) -> int:
        return len(self.image_ids)

    def _one(self, i: int) -> GenomeRegion:
        o, a = self.object_offsets, self.attribute_offsets
        return GenomeRegion(int(self.image_ids[i]), int(self.rows[i]), float(self.ious[i]),
                            tuple(self.objects[o[i]:o[i + 1]].tolist()),
                            self.hypernym_sets[self.hypernym_ids[i]],
                            tuple(self.attributes[a[i]:a[i + 1]].tolist()))

    @overload
    def __getitem__(self, i: int) -> GenomeRegion: ...

    @overload
    def __getitem__(self, i: slice) -> list[GenomeRegion]: ...

    def __getitem__(self, i: int | slice) -> GenomeRegion | list[GenomeRegion]:
        if isinstance(i, slice):
            return [self._one(k) for k in range(*i.indices(len(self)))]
        n = len(self)
        k = operator.index(i)
        if not -n <= k < n:
            raise IndexError(f"region {i} of {n}")
        return self._one(k % n if n else k)

    def __repr__(self) -> str:
        return f"GenomeRegions({len(self)} regions)"


@dataclass
class SVLRAssets:
    """What an SVLR model needs to read new inputs, and nothing of the datasets: the label sets O
    and T, the word vectors of every word the data mentions, the hypernyms, the region feature
    width and the text tools. Saved beside a trained model (`save`, `load`)."""

    object_labels: list[str]
    attribute_labels: list[str]
    words: WordTable
    hypernyms: HypernymMap | None
    feature_dim: int
    text_settings: dict[str, str]
    text: SVLRText | None = field(default=None, repr=False)

    FILE = "svlr_assets.json"

    @property
    def word_dim(self) -> int:
        return self.words.dim

    @property
    def region_dim(self) -> int:
        return self.feature_dim

    def label_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Word vectors of O (K_o, V) and T (K_a, V)."""
        return self.words.matrix(self.object_labels), self.words.matrix(self.attribute_labels)

    def reader(self) -> SVLRText:
        """The text pipeline, built on first use with the saved tools."""
        if self.text is None:
            self.text = SVLRText(object_labels=self.object_labels, attribute_labels=self.attribute_labels,
                                 hypernyms=self.hypernyms, **self.text_settings)
        return self.text

    def save(self, folder: Path) -> list[Path]:
        """Write the assets into `folder`; returns the files."""
        folder.mkdir(parents=True, exist_ok=True)
        files = [self.words.save(folder)]
        if self.hypernyms is not None:
            self.hypernyms.save(folder / "hypernyms.json")
            files.append(folder / "hypernyms.json")
        write_json(folder / self.FILE, {"object_labels": self.object_labels,
                                        "attribute_labels": self.attribute_labels,
                                        "feature_dim": self.feature_dim, "text": self.text_settings})
        return [*files, folder / self.FILE]

    @classmethod
    def load(cls, folder: Path) -> SVLRAssets:
        meta = load_json(folder / cls.FILE)
        try:
            hypernyms = HypernymMap.from_file(folder / "hypernyms.json") if (folder / "hypernyms.json").is_file() \
                else None
            return cls(object_labels=list(meta["object_labels"]), attribute_labels=list(meta["attribute_labels"]),
                       words=WordTable.load(folder), hypernyms=hypernyms, feature_dim=int(meta["feature_dim"]),
                       text_settings=dict(meta["text"]))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(folder / cls.FILE, f"malformed assets: {e}") from None


# --------------------------------------------------------------------------- the built data


@dataclass
class SVLRData:
    """Everything SVLR's model and tasks read (see the module docstring)."""

    root: Path
    store: FeatureStore
    assets: SVLRAssets                      # labels, word vectors, hypernyms, the text pipeline
    object_frequency: dict[str, int]        # Genome train regions per object name (all names)
    attribute_frequency: dict[str, int]
    genome: dict[str, Sequence[GenomeRegion]]   # per split (a `GenomeRegions` when built)
    vqa: dict[str, Sequence[MCQuestion]]   # per split (an `MCQuestions` when built)
    summary: dict = field(default_factory=dict)
    images: str | None = None
    holdout: dict | None = None             # what `vqa_splits.val: holdout` took from train (`holdout_record`)

    def run_record(self) -> dict:
        """What a run folder records about its data (RUN/data.json): the build summary and, with a
        hold-out, the image and question ids it took from train."""
        return {"data": "svlr_datasets", "summary": self.summary, "vqa_holdout": self.holdout}

    @property
    def object_labels(self) -> list[str]:
        return self.assets.object_labels

    @property
    def attribute_labels(self) -> list[str]:
        return self.assets.attribute_labels

    @property
    def words(self) -> WordTable:
        return self.assets.words

    @property
    def hypernyms(self) -> HypernymMap | None:
        return self.assets.hypernyms

    def image_path(self, image_id: int) -> Path | None:
        """The image file of `image_id` when the data section names one and it exists."""
        if self.images is None:
            return None
        path = self.root / self.images.format(image_id=image_id)
        return path if path.is_file() else None

    @property
    def word_dim(self) -> int:
        return self.assets.word_dim

    @property
    def region_dim(self) -> int:
        return self.assets.region_dim

    def label_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Word vectors of O (K_o, V) and T (K_a, V)."""
        return self.assets.label_vectors()

    def vqa_label_frequency(self, split: str = "train") -> tuple[dict[str, int], dict[str, int]]:
        """How often each object / attribute label occurs as a noun / adjective of a question or
        its correct answer in a VQA split (the row axis of Fig. 5)."""
        nouns: Counter[str] = Counter()
        adjs: Counter[str] = Counter()
        for q in self.vqa.get(split, []):
            nouns.update(set(q.nouns) | set(q.choice_nouns[q.correct]))
            adjs.update(set(q.adjectives) | set(q.choice_adjectives[q.correct]))
        return ({w: nouns[w] for w in self.object_labels}, {w: adjs[w] for w in self.attribute_labels})


# --------------------------------------------------------------------------- config


@dataclass
class SVLRPreprocessing:
    """The `svlr` family's options (`data.families.svlr`).

    hypernyms: a hypernym file (JSON or TSV), "wordnet" (NLTK), or null for none.
    word_vectors: GloVe / word2vec file; null: fixed random vectors per word (`fallback_vector`).
    word_dim: the size of those fixed random vectors. num_objects, num_attributes: the sizes of
    the label sets O and T (the most frequent Genome training labels).
    match_iou: a Genome object takes the store box of its image with the highest IoU, which must
    reach this value (objects below it are counted in the summary and not used).
    drop_vqa_overlap: Genome images that are VQA images are never trained on (the paper's rule).
    tagger, lemmatizer, question_parser: the text tools (`auto`: spaCy or NLTK when installed).
    """

    hypernyms: str | None = "hypernyms.json"
    word_vectors: str | None = None
    word_vectors_format: Literal["auto", "glove", "word2vec", "word2vec-text"] = "auto"
    word_dim: int = 300
    num_objects: int = 1000
    num_attributes: int = 1000
    match_iou: float = 0.5
    drop_vqa_overlap: bool = True
    tagger: Literal["auto", "lexicon", "spacy", "nltk"] = "auto"
    lemmatizer: Literal["auto", "rules", "wordnet"] = "auto"
    question_parser: Literal["auto", "spacy", "heuristic"] = "auto"

    def validate(self) -> str | None:
        for key in ("num_objects", "num_attributes", "word_dim"):
            if getattr(self, key) < 1:
                return f"{key} must be >= 1, got {getattr(self, key)}"
        if not 0.0 < self.match_iou <= 1.0:
            return f"match_iou must be in (0, 1], got {self.match_iou}"
        return None


@dataclass
class SVLRDataConfig(SVLRPreprocessing):
    """What one build of the `svlr` family reads (paths relative to `root`): the family's options
    and, from the data section, the root, the two datasets' files (`vlmt.data.datasets.genome`,
    `.vqa_mc`; model selection on a hold-out of train is `vqa_mc.splits.val: holdout`, see the
    module docstring), the feature store and the picture pattern.

    images: where pictures (Fig. 4) find an image's pixels; `{image_id}` is replaced (e.g.
    "train2014/COCO_train2014_{image_id:012d}.jpg"); null when there are none.
    check_files: validate the files this build reads (its two datasets' files and its feature
    store, with the checks and messages of `vlmt data validate`) first, so training refuses data
    that does not validate; other files under the root are not read.
    """

    root: str = "world:default"
    features: str = "features"
    vqa_mc: VQAMCFilesConfig = field(default_factory=VQAMCFilesConfig)
    genome: GenomeFilesConfig = field(default_factory=GenomeFilesConfig)
    images: str | None = "images/{image_id}.png"
    check_files: bool = True

    def dataset_files(self) -> dict[str, VQAMCFilesConfig | GenomeFilesConfig]:
        """The datasets this section reads (name -> files config)."""
        return {"vqa_mc": self.vqa_mc, "genome": self.genome}

    def build(self, *, seed: int) -> SVLRData:
        root = resolve_source(self.root, progress=lambda msg: log.info("%s: %s", self.root, msg))
        if self.check_files:
            from vlmt.data.validate import require_valid_once

            require_valid_once(root, datasets=self.dataset_files(), stores=[root / self.features])
        return _build_cached(json.dumps(asdict(self), sort_keys=True), str(root.resolve()))


FAMILY = "svlr"
DATASETS = ("vqa_mc", "genome")

# the keys before the datasets had their own blocks (config files and model folders of vlmt <= 0.9)
RENAMED = {"vqa_questions": ("vqa_mc", "questions"), "vqa_annotations": ("vqa_mc", "annotations"),
           "vqa_splits": ("vqa_mc", "splits"), "vqa_holdout": ("vqa_mc", "holdout"),
           "genome_image_data": ("genome", "image_data"), "genome_objects": ("genome", "objects"),
           "genome_attributes": ("genome", "attributes"), "genome_splits": ("genome", "splits"),
           "genome_id_offset": ("genome", "id_offset")}


def upgrade_flat_keys(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` with the flat dataset keys of older `svlr_datasets` files moved into their dataset's block."""
    out = {k: v for k, v in raw.items() if k not in RENAMED}
    for old, (block, key) in RENAMED.items():
        if old in raw:
            out[block] = {**(out.get(block) or {}), key: raw[old]}
    return out


def upgrade_svlr_section(raw: dict[str, Any]) -> dict[str, Any]:
    """A former `type: svlr_datasets` section (flat keys too) as a `datasets` section: its root
    (default world:default, that section's), store, picture pattern and checks; its vqa_mc and
    genome files; the rest, the `svlr` family's options."""
    raw = upgrade_flat_keys(dict(raw))
    out: dict[str, Any] = {"root": raw.pop("root", SVLRDataConfig.root)}
    for key in ("features", "images", "check_files"):
        if key in raw:
            out[key] = raw.pop(key)
    out["datasets"] = {name: raw.pop(name, None) or {} for name in DATASETS}
    out["families"] = {FAMILY: raw}
    return out


def build_family(section: DatasetsConfig, options: SVLRPreprocessing, *, root: Path, seed: int) -> SVLRData:
    """The `svlr` family's data from a `datasets` section: its vqa_mc and genome (read from
    `section.root`, which `root` is the folder of)."""
    absent = [name for name in DATASETS if name not in section.datasets]
    if absent:
        raise ConfigError(f"data.datasets: SVLR's tasks read {' and '.join(DATASETS)}; the section does not list "
                          f"{', '.join(absent)} (it lists: {', '.join(section.datasets) or 'nothing'})")
    cfg = SVLRDataConfig(**dataclasses.asdict(options), root=section.root, features=section.features,
                         vqa_mc=section.datasets["vqa_mc"], genome=section.datasets["genome"], images=section.images,
                         check_files=section.check_files)
    return cfg.build(seed=seed)


def load_family_assets(folder: Path) -> SVLRAssets | None:
    """The `svlr` family's assets saved in a model folder, or None when it saved none there."""
    return SVLRAssets.load(folder) if (Path(folder) / SVLRAssets.FILE).is_file() else None


DATA.alias("svlr_datasets", "datasets", upgrade_svlr_section)


@functools.lru_cache(maxsize=4)
def _build_cached(config_json: str, root: str) -> SVLRData:
    raw = json.loads(config_json)
    cfg = SVLRDataConfig(**{**raw, "vqa_mc": VQAMCFilesConfig(**raw["vqa_mc"]),
                            "genome": GenomeFilesConfig(**raw["genome"])})
    return build_svlr_data(cfg, Path(root))


# --------------------------------------------------------------------------- building


def _iou_matrix(boxes: np.ndarray, store_boxes: np.ndarray) -> np.ndarray:
    """(K, T) float32 IoU of K annotated boxes (float64 x1, y1, x2, y2) with an image's T store
    boxes (float32), computed as one annotated box at a time against float32 store boxes
    would be (coordinates in float32, the annotated box's area in float64 then float32)."""
    b = boxes.astype(np.float32)
    s = store_boxes[None, :, :]
    x1 = np.maximum(b[:, None, 0], s[..., 0])
    y1 = np.maximum(b[:, None, 1], s[..., 1])
    x2 = np.minimum(b[:, None, 2], s[..., 2])
    y2 = np.minimum(b[:, None, 3], s[..., 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(np.float32)[:, None]
    areas = (s[..., 2] - s[..., 0]) * (s[..., 3] - s[..., 1])
    return inter / np.maximum(area + areas - inter, np.float32(1e-9))


def _normalised_ids(strings: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(the distinct normalised strings in first-seen order, each string's index among them)."""
    index: dict[str, int] = {}
    ids = np.array([index.setdefault(_norm(w), len(index)) for w in strings], dtype=np.int64)
    return list(index), ids


def _object_rows(image_starts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The object rows of image rows `rows`, in order."""
    starts, ends = image_starts[rows], image_starts[rows + 1]
    lengths = ends - starts
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(rows) else np.zeros(0, np.int64)
    return (np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)).astype(np.int64)


def _label_counts(offsets: np.ndarray, values: np.ndarray, norm: tuple[list[str], np.ndarray],
                  objects: np.ndarray) -> dict[str, int]:
    """Normalised label -> the number of `objects` that carry it (once per object), in the order
    labels are first met."""
    words, norm_of = norm
    if not words or not len(objects):
        return {}
    lo, hi = offsets[objects], offsets[objects + 1]
    lengths = hi - lo
    owner = np.repeat(objects, lengths)
    entries = np.repeat(lo - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + \
        np.arange(int(lengths.sum()), dtype=np.int64)
    label = norm_of[values[entries]]
    counts = np.bincount(np.unique(owner * len(words) + label) % len(words), minlength=len(words))
    return {words[w]: int(counts[w]) for w in _first_seen(label).tolist()}


def _first_seen(sequence: np.ndarray) -> np.ndarray:
    """The distinct values of `sequence` in the order they first occur."""
    uniq, first = np.unique(sequence, return_index=True)
    return uniq[np.argsort(first, kind="stable")]


class _RegionLabels:
    """The labels of Genome object k (`__call__`): (indices in O, the id of its hypernym tuple in
    `hypernym_sets`, indices in T), or None when it has none (no name or attribute in the label
    sets and no hypernym in O). Worked out once per distinct name list and attribute list."""

    def __init__(self, table: GenomeTable, names: tuple[list[str], np.ndarray],
                 attributes: tuple[list[str], np.ndarray], object_labels: list[str], attribute_labels: list[str],
                 hyp: HypernymMap | None):
        self.table = table
        self.o_index = {w: i for i, w in enumerate(object_labels)}
        a_index = {w: i for i, w in enumerate(attribute_labels)}
        self.words, self.norm_of_name = names[0], names[1].tolist()
        self.attribute_of = [a_index.get(attributes[0][n], -1) for n in attributes[1].tolist()]
        self.hyp = hyp
        self.hypernym_sets: list[tuple[str, ...]] = []
        self._hypernym_id: dict[tuple[str, ...], int] = {}
        self._by_names: dict[tuple[int, ...], tuple[tuple[int, ...], int, bool]] = {}
        self._by_attributes: dict[tuple[int, ...], tuple[int, ...]] = {}
        self._name_offsets = table.name_offsets.tolist()
        self._attribute_offsets = table.attribute_offsets.tolist()

    def _names(self, key: tuple[int, ...]) -> tuple[tuple[int, ...], int, bool]:
        names = {self.words[self.norm_of_name[i]] for i in key}
        objs = tuple(sorted(self.o_index[n] for n in names if n in self.o_index))
        hyps = tuple(dict.fromkeys(h for n in sorted(names) for h in (self.hyp.hypernyms(n) if self.hyp else [])
                                   if h not in names))
        hid = self._hypernym_id.setdefault(hyps, len(self._hypernym_id))
        if hid == len(self.hypernym_sets):
            self.hypernym_sets.append(hyps)
        return objs, hid, any(h in self.o_index for h in hyps)

    def __call__(self, k: int) -> tuple[tuple[int, ...], int, tuple[int, ...]] | None:
        t = self.table
        key = tuple(t.name_ids[self._name_offsets[k]:self._name_offsets[k + 1]].tolist())
        named = self._by_names.get(key)
        if named is None:
            named = self._by_names[key] = self._names(key)
        akey = tuple(t.attribute_ids[self._attribute_offsets[k]:self._attribute_offsets[k + 1]].tolist())
        atrs = self._by_attributes.get(akey)
        if atrs is None:
            atrs = self._by_attributes[akey] = tuple(sorted({self.attribute_of[i] for i in akey}
                                                            - {-1}))
        objs, hid, hyp_in_o = named
        if not objs and not atrs and not hyp_in_o:
            return None
        return objs, hid, atrs


class _RegionsBuilder:
    """Collects one split's regions into the columns of `GenomeRegions`."""

    def __init__(self) -> None:
        self.keys, self.rows, self.ious = array("q"), array("i"), array("f")
        self.obj_offsets, self.obj_ids = array("q", [0]), array("i")
        self.atr_offsets, self.atr_ids = array("q", [0]), array("i")
        self.hypernyms = array("i")

    def add(self, key: int, row: int, iou: float, objects: tuple[int, ...], hypernyms: int,
            attributes: tuple[int, ...]) -> None:
        self.keys.append(key)
        self.rows.append(row)
        self.ious.append(iou)
        self.obj_ids.extend(objects)
        self.obj_offsets.append(len(self.obj_ids))
        self.atr_ids.extend(attributes)
        self.atr_offsets.append(len(self.atr_ids))
        self.hypernyms.append(hypernyms)

    def finish(self, hypernym_sets: list[tuple[str, ...]]) -> GenomeRegions:
        def col(a: array, dtype: type) -> np.ndarray:
            return np.array(a, dtype=dtype)

        return GenomeRegions(col(self.keys, np.int64), col(self.rows, np.int32), col(self.ious, np.float32),
                             col(self.obj_offsets, np.int64), col(self.obj_ids, np.int32),
                             col(self.atr_offsets, np.int64), col(self.atr_ids, np.int32),
                             col(self.hypernyms, np.int32), hypernym_sets)


def _counted(items: Iterable[T], progress: Progress) -> Iterator[T]:
    for item in items:
        yield item
        progress.update()


def _norm(label: str) -> str:
    return " ".join(label.lower().split())


def build_svlr_data(cfg: SVLRDataConfig, root: Path) -> SVLRData:
    """Read and pre-process everything `cfg` names under `root` (uncached)."""
    store_path = root / cfg.features
    if not (store_path / "header.json").is_file():
        raise DataError(store_path, "no feature store here (expected header.json); convert features with "
                        "`vlmt data convert` or generate a world with `vlmt data synth`")
    store = FeatureStore(store_path)

    # ---- VQA multiple choice (read first: its image ids define the Genome overlap)
    with Progress(log, "data: reading VQA multiple choice") as p:
        mc = vqa_mc.read(root, cfg.vqa_mc)
        p.close(", ".join(f"{split} {len(ms.examples):,}" for split, ms in mc.items()) + " questions")
    holdout = vqa_mc.holdout_record(cfg.vqa_mc, mc)
    vqa_images = {ex.image_id for ms in mc.values() for ex in ms.examples}

    # ---- Visual Genome (columns: a full-size release is 3.8 M objects)
    with Progress(log, "data: reading Visual Genome") as p:
        genome_splits = genome_dataset.read(root, cfg.genome)
        whole = genome_splits["train"].table
        p.close(f"{whole.num_images:,} images, {whole.num_objects:,} objects; "
                + ", ".join(f"{split} {len(gs):,}" for split, gs in genome_splits.items()) + " images")
    dropped = 0
    if cfg.drop_vqa_overlap:
        for gs in genome_splits.values():
            dropped += gs.drop_coco(vqa_images)
    gtable = genome_splits["train"].table
    name_norm = _normalised_ids(gtable.names)
    atr_norm = _normalised_ids(gtable.attributes)
    train_objects = _object_rows(gtable.image_starts, genome_splits["train"].rows)
    obj_freq = _label_counts(gtable.name_offsets, gtable.name_ids, name_norm, train_objects)
    atr_freq = _label_counts(gtable.attribute_offsets, gtable.attribute_ids, atr_norm, train_objects)
    if not obj_freq:
        raise DataError(root / cfg.genome.objects, "no object in the Genome training split")
    # most frequent first; ties by name so the label order does not depend on file order
    object_labels = [w for w, _ in sorted(obj_freq.items(), key=lambda kv: (-kv[1], kv[0]))][: cfg.num_objects]
    attribute_labels = [w for w, _ in sorted(atr_freq.items(), key=lambda kv: (-kv[1], kv[0]))][: cfg.num_attributes]
    if not attribute_labels:
        raise DataError(root / (cfg.genome.attributes or cfg.genome.objects),
                        "no attribute in the Genome training split")

    if cfg.hypernyms is None:
        hyp = None
    elif cfg.hypernyms == "wordnet":
        try:
            hyp = HypernymMap.from_wordnet(object_labels)
        except RuntimeError as e:
            raise ConfigError(f"data.families.svlr.hypernyms: {e}") from None
    else:
        hyp = HypernymMap.from_file(root / cfg.hypernyms)

    labeller = _RegionLabels(gtable, name_norm, atr_norm, object_labels, attribute_labels, hyp)
    genome: dict[str, Sequence[GenomeRegion]] = {}
    unmatched = unlabelled = 0
    matching = Progress(log, "data: Genome objects matched to store boxes", total=sum(len(gs) for gs in
                                                                                     genome_splits.values()),
                        unit="images")
    for im_split, gs in genome_splits.items():
        regions = _RegionsBuilder()
        for r, key in zip(gs.rows.tolist(), gs.store_keys().tolist()):
            if key not in store:
                raise DataError(store_path, f"Genome image has no region features (store key {key})",
                                record=f"image_id {key - gs.id_offset}")
            matching.update()
            lo, hi = int(gtable.image_starts[r]), int(gtable.image_starts[r + 1])
            labelled = []
            for k in range(lo, hi):
                labels = labeller(k)
                if labels is None:
                    unlabelled += 1
                else:
                    labelled.append((k, labels))
            if not labelled:
                continue
            ious = _iou_matrix(gtable.boxes[[k for k, _ in labelled]], store.boxes(key))
            rows = ious.argmax(axis=1)
            best = ious[np.arange(len(rows)), rows]
            for (_, labels), row, iou in zip(labelled, rows.tolist(), best.tolist()):
                if iou < cfg.match_iou:
                    unmatched += 1
                else:
                    regions.add(key, row, iou, *labels)
        genome[im_split] = regions.finish(labeller.hypernym_sets)
    matching.close(", ".join(f"{split} {len(g):,}" for split, g in genome.items()) + " regions")
    # ---- text: lexicon, bins, word vectors
    text = SVLRText(object_labels=object_labels, attribute_labels=attribute_labels, hypernyms=hyp,
                    lemmatizer=cfg.lemmatizer, tagger=cfg.tagger, question_parser=cfg.question_parser)

    vqa: dict[str, MCQuestions] = {}
    tagging = Progress(log, "data: questions and choices tagged and binned",
                       total=sum(len(ms.examples) for ms in mc.values()), unit="questions")
    for split in list(mc):
        ms = mc.pop(split)  # its examples go once its columns are made
        for ex in ms.examples:
            if ex.image_id not in store:
                raise DataError(store_path, "VQA image has no region features", record=f"image_id {ex.image_id}")
        vqa[split] = text.questions(
            (ex.question_id, ex.image_id, ex.question, ex.choices or (), right, ex.question_type or "",
             ex.answer_type or "", ex.answers) for ex, right in _counted(zip(ms.examples, ms.correct), tagging))
    tagging.close()

    tokens: set[str] = set()
    for term in [*object_labels, *attribute_labels, *text.noun_words]:
        tokens.update(term.split())
    for qs in vqa.values():
        for term in set(qs.terms()):
            tokens.update(term.split())
    token_list = sorted(tokens)
    if cfg.word_vectors:
        wv = load_word_vectors(root / cfg.word_vectors, token_list, file_format=cfg.word_vectors_format,
                               dim=cfg.word_dim, seed=0)
        table = {w: wv.vectors[i] for i, w in enumerate(token_list)}
        words = WordTable(table, wv.dim, source=str(root / cfg.word_vectors), coverage=wv.coverage)
    else:
        words = WordTable({w: fallback_vector(w, cfg.word_dim) for w in token_list}, cfg.word_dim,
                          source="fixed random vectors (no word_vectors file configured)", coverage=None,
                          fallback=True)

    summary = {
        "root": str(root),
        "genome_regions": {s: len(v) for s, v in genome.items()},
        "genome_objects_unmatched": unmatched,
        "genome_objects_unlabelled": unlabelled,
        "genome_images_dropped_as_vqa_overlap": dropped,
        "vqa_questions": {s: len(v) for s, v in vqa.items()},
        **({"vqa_holdout": {"from": holdout["from"], "images": len(holdout["images"]),
                            "questions": len(holdout["questions"])}} if holdout else {}),
        "object_labels": len(object_labels),
        "attribute_labels": len(attribute_labels),
        "words": len(token_list),
        "word_vectors": words.source,
        "word_vector_coverage": words.coverage,
        "tagger": text.lexicon.tagger_name,
        "question_bins": text.binner.method,
    }
    log.info("SVLR data: %s", summary)
    assets = SVLRAssets(object_labels=object_labels, attribute_labels=attribute_labels, words=words, hypernyms=hyp,
                        feature_dim=store.feature_dim, text_settings=text.settings(), text=text)
    return SVLRData(root=root, store=store, assets=assets, object_frequency=dict(obj_freq),
                    attribute_frequency=dict(atr_freq), genome=genome, vqa=dict(vqa), summary=summary,
                    images=cfg.images, holdout=holdout)


register_family(FAMILY, options=SVLRPreprocessing, build=build_family, load_assets=load_family_assets,
                types=(SVLRData, SVLRAssets))
