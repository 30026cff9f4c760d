"""The SVLR family's data (`type: svlr_datasets`): Visual Genome regions + VQA v1 multiple choice,
read through their dataset modules (`vlmt.data.datasets.genome`, `.vqa_mc`), and the family's
preprocessing.

`SVLRDataConfig` names a source folder (`root: world:default`, a synthetic world, or a folder
with the official files) and each dataset's files inside it (`genome:`, `vqa_mc:`); `build()`
reads everything once and returns an `SVLRData` that the model and the three SVLR tasks share:

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
"""

from __future__ import annotations

import functools
import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from vlmt.config import DataConfig, register_data
from vlmt.data.datasets import genome as genome_dataset
from vlmt.data.datasets import resolve_source, vqa_mc
from vlmt.data.datasets.base import SPLITS
from vlmt.data.datasets.genome import GenomeFilesConfig
from vlmt.data.datasets.vqa_mc import VQAMCFilesConfig
from vlmt.data.examples import GenomeImage
from vlmt.data.features.store import FeatureStore
from vlmt.data.readers.visual_genome import drop_vqa_overlap
from vlmt.data.text import HypernymMap, load_word_vectors
from vlmt.errors import ConfigError, DataError
from vlmt.io import load_json, write_json
from vlmt.tasks.svlr_text import MCQuestion, SVLRText, WordTable, fallback_vector

log = logging.getLogger("vlmt.data.svlr")


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
    genome: dict[str, list[GenomeRegion]]
    vqa: dict[str, list[MCQuestion]]
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


@register_data("svlr_datasets")
@dataclass
class SVLRDataConfig(DataConfig):
    """Visual Genome + VQA v1 multiple choice for SVLR (paths relative to `root`).

    root: "world:<size>[:<seed>]", "easy_vqa" or a folder (vlmt.data.datasets.resolve_source).
    genome, vqa_mc: the two datasets' files (`vlmt.data.datasets.genome`, `.vqa_mc`; model
    selection on a hold-out of train is `vqa_mc.splits.val: holdout`, see the module docstring).
    hypernyms: a hypernym file (JSON or TSV), "wordnet" (NLTK), or null for none.
    word_vectors: GloVe / word2vec file; null: fixed random vectors per word (`fallback_vector`).
    images: where pictures (Fig. 4) find an image's pixels; `{image_id}` is replaced (e.g.
    "train2014/COCO_train2014_{image_id:012d}.jpg"); null when there are none.
    match_iou: a Genome object takes the store box of its image with the highest IoU, which must
    reach this value (objects below it are counted in the summary and not used).
    drop_vqa_overlap: Genome images that are VQA images are never trained on (the paper's rule).
    check_files: run `vlmt data validate` on the root first, so training refuses data that does
    not validate, with the same messages.
    """

    root: str = "world:default"
    features: str = "features"
    vqa_mc: VQAMCFilesConfig = field(default_factory=VQAMCFilesConfig)
    genome: GenomeFilesConfig = field(default_factory=GenomeFilesConfig)
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
    images: str | None = "images/{image_id}.png"
    check_files: bool = True

    # the keys before the datasets had their own blocks (config files and model folders of vlmt <= 0.9)
    RENAMED = {"vqa_questions": ("vqa_mc", "questions"), "vqa_annotations": ("vqa_mc", "annotations"),
               "vqa_splits": ("vqa_mc", "splits"), "vqa_holdout": ("vqa_mc", "holdout"),
               "genome_image_data": ("genome", "image_data"), "genome_objects": ("genome", "objects"),
               "genome_attributes": ("genome", "attributes"), "genome_splits": ("genome", "splits"),
               "genome_id_offset": ("genome", "id_offset")}

    @classmethod
    def upgrade(cls, raw: dict) -> dict:
        """`raw` with the flat dataset keys of older files moved into their dataset's block."""
        out = {k: v for k, v in raw.items() if k not in cls.RENAMED}
        for old, (block, key) in cls.RENAMED.items():
            if old in raw:
                out[block] = {**(out.get(block) or {}), key: raw[old]}
        return out

    def validate(self) -> str | None:
        for key in ("num_objects", "num_attributes", "word_dim"):
            if getattr(self, key) < 1:
                return f"{key} must be >= 1, got {getattr(self, key)}"
        if not 0.0 < self.match_iou <= 1.0:
            return f"match_iou must be in (0, 1], got {self.match_iou}"
        return None

    def dataset_files(self) -> dict[str, VQAMCFilesConfig | GenomeFilesConfig]:
        """The datasets this section reads (name -> files config)."""
        return {"vqa_mc": self.vqa_mc, "genome": self.genome}

    @classmethod
    def load_assets(cls, folder: Path) -> SVLRAssets:
        return SVLRAssets.load(folder)

    def build(self, *, seed: int) -> SVLRData:
        root = resolve_source(self.root, progress=lambda msg: log.info("%s: %s", self.root, msg))
        if self.check_files:
            from vlmt.data.validate import require_valid_once

            require_valid_once(root, genome_id_offset=self.genome.id_offset)
        return _build_cached(json.dumps(asdict(self), sort_keys=True), str(root.resolve()))


@functools.lru_cache(maxsize=4)
def _build_cached(config_json: str, root: str) -> SVLRData:
    raw = json.loads(config_json)
    cfg = SVLRDataConfig(**{**raw, "vqa_mc": VQAMCFilesConfig(**raw["vqa_mc"]),
                            "genome": GenomeFilesConfig(**raw["genome"])})
    return build_svlr_data(cfg, Path(root))


# --------------------------------------------------------------------------- building


def _iou_many(box: Sequence[float], boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


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
    mc = vqa_mc.read(root, cfg.vqa_mc)
    holdout = vqa_mc.holdout_record(cfg.vqa_mc, mc)
    vqa_images = {ex.image_id for ms in mc.values() for ex in ms.examples}

    # ---- Visual Genome
    genome_splits = genome_dataset.read(root, cfg.genome)
    dropped: list[GenomeImage] = []
    if cfg.drop_vqa_overlap:
        for gs in genome_splits.values():
            gs.images, gone = drop_vqa_overlap(gs.images, vqa_images)
            dropped += gone
    train_images = genome_splits["train"].images
    obj_freq: Counter[str] = Counter()
    atr_freq: Counter[str] = Counter()
    for im in train_images:
        for o in im.objects:
            obj_freq.update({_norm(n) for n in o.names})
            atr_freq.update({_norm(a) for a in o.attributes})
    if not obj_freq:
        raise DataError(root / cfg.genome.objects, "no object in the Genome training split")
    # most frequent first; ties by name so the label order does not depend on file order
    object_labels = [w for w, _ in sorted(obj_freq.items(), key=lambda kv: (-kv[1], kv[0]))][: cfg.num_objects]
    attribute_labels = [w for w, _ in sorted(atr_freq.items(), key=lambda kv: (-kv[1], kv[0]))][: cfg.num_attributes]
    if not attribute_labels:
        raise DataError(root / (cfg.genome.attributes or cfg.genome.objects),
                        "no attribute in the Genome training split")
    o_index = {w: i for i, w in enumerate(object_labels)}
    a_index = {w: i for i, w in enumerate(attribute_labels)}

    if cfg.hypernyms is None:
        hyp = None
    elif cfg.hypernyms == "wordnet":
        try:
            hyp = HypernymMap.from_wordnet(object_labels)
        except RuntimeError as e:
            raise ConfigError(f"data.hypernyms: {e}") from None
    else:
        hyp = HypernymMap.from_file(root / cfg.hypernyms)

    genome: dict[str, list[GenomeRegion]] = {s: [] for s in SPLITS}
    unmatched = unlabelled = 0
    for im_split, gs in genome_splits.items():
        for im in gs.images:
            key = gs.store_key(im)
            if key not in store:
                raise DataError(store_path, f"Genome image has no region features (store key {key})",
                                record=f"image_id {im.image_id}")
            boxes = store.read(key).boxes
            for o in im.objects:
                names = {_norm(n) for n in o.names}
                objs = tuple(sorted(o_index[n] for n in names if n in o_index))
                atrs = tuple(sorted({a_index[_norm(a)] for a in o.attributes if _norm(a) in a_index}))
                hyps = tuple(dict.fromkeys(h for n in sorted(names) for h in (hyp.hypernyms(n) if hyp else [])
                                           if h not in names))
                if not objs and not atrs and not any(h in o_index for h in hyps):
                    unlabelled += 1
                    continue
                ious = _iou_many(o.box, boxes)
                row = int(np.argmax(ious))
                if ious[row] < cfg.match_iou:
                    unmatched += 1
                    continue
                genome[im_split].append(GenomeRegion(key, row, float(ious[row]), objs, hyps, atrs))

    # ---- text: lexicon, bins, word vectors
    text = SVLRText(object_labels=object_labels, attribute_labels=attribute_labels, hypernyms=hyp,
                    lemmatizer=cfg.lemmatizer, tagger=cfg.tagger, question_parser=cfg.question_parser)

    vqa: dict[str, list[MCQuestion]] = {}
    for split, ms in mc.items():
        out = []
        for ex, correct in zip(ms.examples, ms.correct):
            out.append(text.question(ex.question, ex.choices or (), question_id=ex.question_id,
                                     image_id=ex.image_id, correct=correct, question_type=ex.question_type or "",
                                     answer_type=ex.answer_type or "", answers=ex.answers))
            if ex.image_id not in store:
                raise DataError(store_path, "VQA image has no region features", record=f"image_id {ex.image_id}")
        vqa[split] = out

    tokens: set[str] = set()
    for term in [*object_labels, *attribute_labels, *text.noun_words]:
        tokens.update(term.split())
    for qs in vqa.values():
        for q in qs:
            for group in (*q.bins, q.nouns, q.adjectives, *q.choice_words, *q.choice_nouns, *q.choice_adjectives):
                for term in group:
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
        "genome_images_dropped_as_vqa_overlap": len(dropped),
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
                    attribute_frequency=dict(atr_freq), genome=genome, vqa=vqa, summary=summary, images=cfg.images,
                    holdout=holdout)
