"""The `vl_datasets` data section: VQA, Karpathy captions and Flickr30k Entities read once from one
source, with the shared text pipeline and region features every vision-language task needs.

    data:
      type: vl_datasets
      root: world:tiny            # world:<size>[:<seed>], easy_vqa, or a folder
      min_word_count: 1
      answer_more_than: 8         # answer pool: training answers seen more than 8 times

File names default to the synthetic world's layout, which is the official one (VQA v2
open-ended files per split subtype, one Karpathy `dataset_*.json`, `flickr30k_entities/`,
`features/`); each can be overridden for real datasets (configs/hierarchical_paper.yaml).

`build()` returns a `VLData` holding the examples of every split of every dataset in use, one
word `Vocabulary` over the training text of all of them, optional pretrained word vectors, the
VQA answer pool, the region feature store(s) and `image_path(image_id)`. A dataset is in use when
`datasets` names it, or (default) when its files exist under the root, so a folder with VQA files
only (easy-VQA) needs nothing else. Every image an example refers to must be in its feature
store: a missing one is a DataError naming the dataset file, the record and the store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from vlmt.config import DataConfig, register_data
from vlmt.data.answers import AnswerPool, answer_pool_from_examples
from vlmt.data.examples import CaptionedImage, GroundedSentence, VQAExample
from vlmt.data.features.store import FeatureStore
from vlmt.data.readers import captions as captions_reader
from vlmt.data.readers import flickr30k_entities as entities_reader
from vlmt.data.readers.vqa import read_vqa
from vlmt.data.splits import SplitImages, contamination_report
from vlmt.data.text import Vocabulary, align_words, tokenize
from vlmt.data.text.phrases import PhraseLexicon, phrase_lexicon
from vlmt.errors import ConfigError, DataError
from vlmt.io import load_json, write_json

log = logging.getLogger("vlmt.data")

DATASETS = ("vqa", "captions", "entities")
SPLITS = ("train", "val", "test")


@dataclass
class VQAFilesConfig:
    """VQA v2 open-ended files. `{subtype}` in a file name is replaced by the split's subtype.

    train_splits: the splits VQA trains on (["train", "val"] is the paper's test-server setting;
    the contamination rule of Sec. 5.1 then applies). features / images: override the top-level
    store and picture pattern for these images. namespace: which image ids are comparable
    across datasets (COCO images are shared by VQA and COCO captions).
    """

    questions: str = "v2_OpenEnded_mscoco_{subtype}_questions.json"
    annotations: str = "v2_mscoco_{subtype}_annotations.json"
    subtypes: dict[str, str] = field(default_factory=lambda: {"train": "train2014", "val": "val2014",
                                                              "test": "test2015"})
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    features: str | None = None
    images: str | None = None
    namespace: str = "main"

    def validate(self) -> str | None:
        bad = [s for s in list(self.subtypes) + self.train_splits if s not in SPLITS]
        if bad:
            return f"unknown split name(s) {bad}; expected {', '.join(SPLITS)}"
        if not self.train_splits:
            return "train_splits: at least one split"
        val, test = self.subtypes.get("val"), self.subtypes.get("test")
        if val is not None and val == test:
            return (f"subtypes: val and test are both {val!r}, so the checkpoint would be selected on the split "
                    f"it reports (the trainer validates on val); give them different subtypes")
        return None


@dataclass
class CaptionFilesConfig:
    """A Karpathy split file (dataset_coco.json, dataset_flickr30k.json, ...).

    file: its name under the root; null finds the one `dataset_*.json` there. Retrieval uses
    the first `captions_per_image` captions of each evaluation image (5, the standard protocol).
    include_restval: add COCO's restval images to training.
    """

    file: str | None = None
    captions_per_image: int = 5
    include_restval: bool = False
    features: str | None = None
    images: str | None = None
    namespace: str = "main"

    def validate(self) -> str | None:
        return "captions_per_image must be >= 1" if self.captions_per_image < 1 else None


@dataclass
class EntityFilesConfig:
    """A Flickr30k Entities folder (Sentences/, Annotations/, train.txt, val.txt, test.txt)."""

    folder: str = "flickr30k_entities"
    features: str | None = None
    images: str | None = None
    namespace: str = "main"


@register_data("vl_datasets")
@dataclass
class VLDatasetsConfig(DataConfig):
    """Where the datasets are and how their shared text and answer vocabularies are built.

    root: source string for `vlmt.data.sources.resolve_source`. datasets: which of vqa,
    captions, entities to load (null: those whose files exist). features: feature store folder
    under the root. images: picture path pattern with `{image_id}`. min_word_count: words seen
    fewer times in training text become <unk>. word_vectors: GloVe / word2vec file (the
    embedding, frozen unless the model section sets freeze_word_vectors: false; null: learned).
    answer_more_than: pool = training answers seen more than N times.
    allow_contamination: train even when a task trains on images another task is tested on.
    check_files: run `vlmt data validate` on the root first, so training refuses data that does
    not validate, with the same messages.
    """

    root: str = "world:tiny"
    datasets: list[Literal["vqa", "captions", "entities"]] | None = None
    features: str = "features"
    images: str = "images/{image_id}.png"
    vqa: VQAFilesConfig = field(default_factory=VQAFilesConfig)
    captions: CaptionFilesConfig = field(default_factory=CaptionFilesConfig)
    entities: EntityFilesConfig = field(default_factory=EntityFilesConfig)
    min_word_count: int = 1
    word_vectors: str | None = None
    word_vectors_format: Literal["auto", "glove", "word2vec", "word2vec-text"] = "auto"
    answer_more_than: int = 8
    allow_contamination: bool = False
    check_files: bool = True

    def validate(self) -> str | None:
        if self.min_word_count < 1:
            return f"min_word_count must be >= 1, got {self.min_word_count}"
        if self.answer_more_than < 0:
            return f"answer_more_than must be >= 0, got {self.answer_more_than}"
        for key, pattern in (("images", self.images), ("vqa.images", self.vqa.images),
                             ("captions.images", self.captions.images), ("entities.images", self.entities.images)):
            if pattern is not None and not _image_pattern_ok(pattern):
                return (f"{key}: the pattern needs an '{{image_id}}' field (e.g. images/{{image_id}}.png), "
                        f"got {pattern!r}")
        return None

    @classmethod
    def load_assets(cls, folder: Path) -> VLAssets:
        return VLAssets.load(folder)

    def build(self, *, seed: int) -> VLData:
        from vlmt.data.sources import resolve_source

        root = resolve_source(self.root, progress=lambda msg: log.info("data: %s", msg))
        if self.check_files:
            from vlmt.data.validate import require_valid_once

            require_valid_once(root)
        return VLData(self, root, seed=seed)


def _image_pattern_ok(pattern: str) -> bool:
    """True when `pattern` formats with an image id and depends on it."""
    try:
        return pattern.format(image_id=1) != pattern.format(image_id=2)
    except (KeyError, IndexError, ValueError):
        return False


@dataclass
class VQASplit:
    """The questions of one split; `annotated` is False for test splits released without answers."""

    path: Path
    examples: list[VQAExample]
    annotated: bool


@dataclass
class CaptionSplit:
    path: Path
    images: list[CaptionedImage]


@dataclass
class EntitySplit:
    path: Path
    sentences: list[GroundedSentence]


def question_tokens(question: str) -> list[str]:
    """The tokens of a VQA question (the VQA preprocessing rule)."""
    return tokenize(question, "vqa")


def caption_tokens(sentence: str) -> list[str]:
    """The tokens of a caption or grounding sentence (the caption rule)."""
    return tokenize(sentence, "caption")


@dataclass
class VLAssets:
    """What a model trained on this data section needs to read new inputs, and nothing of the
    datasets themselves: the vocabulary, the VQA answer pool, the region feature width and the
    phrase lexicon of the grounding phrases. Saved beside a trained model (`save`, `load`), so the
    model can be used without its data."""

    vocab: Vocabulary
    answers: AnswerPool | None
    feature_dim: int
    phrases: PhraseLexicon | None = None

    FILE = "vl_assets.json"

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def padding_idx(self) -> int:
        return self.vocab.pad_index

    @property
    def region_feature_dim(self) -> int:
        return self.feature_dim

    @property
    def word_vectors(self) -> None:
        """None: a model rebuilt from assets takes its embedding from its weights."""
        return None

    def encode_words(self, tokens: list[str] | tuple[str, ...]) -> np.ndarray:
        """Token ids (int64) of one sentence; unknown words map to <unk>."""
        return np.asarray(self.vocab.encode(tokens), dtype=np.int64)

    def save(self, folder: Path) -> list[Path]:
        """Write the assets into `folder` (vl_assets.json, vocab.json, answers.json); returns the files."""
        folder.mkdir(parents=True, exist_ok=True)
        self.vocab.save(folder / "vocab.json")
        files = [folder / "vocab.json"]
        if self.answers is not None:
            write_json(folder / "answers.json", self.answers.to_dict())
            files.append(folder / "answers.json")
        write_json(folder / self.FILE, {"feature_dim": self.feature_dim,
                                        "phrases": self.phrases.to_dict() if self.phrases else None})
        return [*files, folder / self.FILE]

    @classmethod
    def load(cls, folder: Path) -> VLAssets:
        """The assets `save` wrote; DataError naming the file when one is missing or malformed."""
        meta = load_json(folder / cls.FILE)
        try:
            phrases = PhraseLexicon.from_dict(meta["phrases"]) if meta.get("phrases") else None
            feature_dim = int(meta["feature_dim"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(folder / cls.FILE, f"malformed assets: {e}") from None
        answers = None
        if (folder / "answers.json").is_file():
            try:
                answers = AnswerPool.from_dict(load_json(folder / "answers.json"))
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(folder / "answers.json", f"malformed answer list: {e}") from None
        return cls(vocab=Vocabulary.load(folder / "vocab.json"), answers=answers, feature_dim=feature_dim,
                   phrases=phrases)


class VLData:
    """Everything the vision-language tasks share, read once (see the module docstring)."""

    def __init__(self, cfg: VLDatasetsConfig, root: Path, *, seed: int = 0):
        self.cfg = cfg
        self.root = Path(root)
        self.seed = seed
        wanted = set(cfg.datasets) if cfg.datasets is not None else None
        self.vqa: dict[str, VQASplit] = {}
        self.captions: dict[str, CaptionSplit] = {}
        self.entities: dict[str, EntitySplit] = {}
        self._stores: dict[str, FeatureStore] = {}
        if wanted is None or "vqa" in wanted:
            self._read_vqa(required=wanted is not None)
        if wanted is None or "captions" in wanted:
            self._read_captions(required=wanted is not None)
        if wanted is None or "entities" in wanted:
            self._read_entities(required=wanted is not None)
        if not self.datasets:
            raise ConfigError(f"data.root: {cfg.root!r} ({self.root}) holds none of the datasets "
                              f"(VQA {cfg.vqa.questions}, captions dataset_*.json, {cfg.entities.folder}/)")
        self._check_features()
        self._check_contamination()
        vocab = Vocabulary.build(self._training_tokens(), min_count=cfg.min_word_count)
        self.word_vectors = self._load_word_vectors(vocab)
        answers: AnswerPool | None = None
        if "vqa" in self.datasets:
            train = [e for s in cfg.vqa.train_splits for e in self.vqa_split(s).examples]
            answers = answer_pool_from_examples(train, more_than=cfg.answer_more_than)
            if len(answers) == 0:
                raise ConfigError(f"data.answer_more_than: no training answer is seen more than "
                                  f"{cfg.answer_more_than} times in {self.vqa_split('train').path}; lower it")
        phrases = None
        if self.entities:
            phrases = phrase_lexicon(tokenize(p.text, "caption") for g in self.entities["train"].sentences
                                     for p in g.phrases if p.boxes)
        self.assets = VLAssets(vocab=vocab, answers=answers, feature_dim=self.feature_dim, phrases=phrases)
        log.info("data: %s from %s; %d words, %s answers", ", ".join(self.datasets), self.root, len(vocab),
                 len(answers) if answers is not None else "no")

    # -- what is loaded ---------------------------------------------------------------------------
    @property
    def datasets(self) -> list[str]:
        """Names of the datasets in use, among vqa, captions, entities."""
        return [name for name, held in (("vqa", self.vqa), ("captions", self.captions),
                                        ("entities", self.entities)) if held]

    def require(self, dataset: str, task: str) -> None:
        """ConfigError when `task` needs a dataset this data section did not load."""
        if dataset not in self.datasets:
            raise ConfigError(f"tasks.{task}: needs the {dataset} dataset, but data.root {self.cfg.root!r} "
                              f"({self.root}) has none (loaded: {', '.join(self.datasets)}); check the "
                              f"data.{dataset} file names or data.datasets")

    def vqa_split(self, split: str) -> VQASplit:
        if split not in self.vqa:
            raise ConfigError(f"data.vqa: no VQA {split} split under {self.root} "
                              f"(looked for {self._vqa_path('questions', split)})")
        return self.vqa[split]

    def caption_split(self, split: str) -> CaptionSplit:
        if split not in self.captions:
            raise ConfigError(f"data.captions: no {split} images in the caption file under {self.root}")
        return self.captions[split]

    def entity_split(self, split: str) -> EntitySplit:
        if split not in self.entities:
            raise ConfigError(f"data.entities: no {split}.txt under {self.root / self.cfg.entities.folder}")
        return self.entities[split]

    def store(self, dataset: str) -> FeatureStore:
        """The region feature store of a dataset's images."""
        return self._stores[dataset]

    @property
    def vocab(self) -> Vocabulary:
        return self.assets.vocab

    @property
    def answers(self) -> AnswerPool | None:
        return self.assets.answers

    @property
    def vocab_size(self) -> int:
        return self.assets.vocab_size

    @property
    def padding_idx(self) -> int:
        return self.assets.padding_idx

    @property
    def region_feature_dim(self) -> int:
        """D, the width of the region features (every store of the section has the same)."""
        return self.feature_dim

    @property
    def feature_dim(self) -> int:
        dims = {s.feature_dim for s in self._stores.values()}
        if len(dims) != 1:
            raise ConfigError(f"data: the feature stores have different feature sizes {sorted(dims)}")
        return dims.pop()

    def image_path(self, image_id: int, dataset: str | None = None) -> Path:
        """Where the picture of `image_id` is (for drawing attention); it may not exist."""
        pattern = self.cfg.images
        if dataset is not None:
            pattern = getattr(self.cfg, dataset).images or pattern
        return self.root / pattern.format(image_id=int(image_id))

    def encode_words(self, tokens: list[str] | tuple[str, ...]) -> np.ndarray:
        """Token ids (int64) of one sentence; unknown words map to <unk>."""
        return self.assets.encode_words(tokens)

    # -- reading ----------------------------------------------------------------------------------
    def _vqa_path(self, kind: str, split: str) -> Path:
        subtype = self.cfg.vqa.subtypes.get(split, split)
        return self.root / getattr(self.cfg.vqa, kind).format(subtype=subtype)

    def _read_vqa(self, *, required: bool) -> None:
        for split in self.cfg.vqa.subtypes:
            questions = self._vqa_path("questions", split)
            if not questions.is_file():
                continue
            annotations = self._vqa_path("annotations", split)
            annotated = annotations.is_file()
            examples = read_vqa(questions, annotations if annotated else None)
            self.vqa[split] = VQASplit(questions, examples, annotated)
        if self.vqa and "train" not in self.vqa:
            raise DataError(self._vqa_path("questions", "train"), "VQA training questions not found")
        if required and not self.vqa:
            raise DataError(self._vqa_path("questions", "train"), "VQA questions not found (data.datasets names vqa)")
        if self.vqa:
            self._stores["vqa"] = self._open_store(self.cfg.vqa.features)

    def _caption_file(self) -> Path | None:
        if self.cfg.captions.file is not None:
            path = self.root / self.cfg.captions.file
            if not path.is_file():
                raise DataError(path, "caption file not found (data.captions.file)")
            return path
        found = sorted(p for p in self.root.glob("dataset_*.json") if captions_reader.KARPATHY_RE.match(p.name))
        if len(found) > 1:
            raise ConfigError(f"data.captions.file: {self.root} holds several caption files "
                              f"({', '.join(p.name for p in found)}); name one")
        return found[0] if found else None

    def _read_captions(self, *, required: bool) -> None:
        path = self._caption_file()
        if path is None:
            if required:
                raise DataError(self.root / "dataset_*.json", "no Karpathy caption file (data.datasets names captions)")
            return
        images = captions_reader.read_karpathy(path)
        for split in SPLITS:
            wanted = {split} | ({"restval"} if split == "train" and self.cfg.captions.include_restval else set())
            chosen = [im for im in images if im.split in wanted]
            if chosen:
                self.captions[split] = CaptionSplit(path, chosen)
        if "train" not in self.captions:
            raise DataError(path, "no image of the train split")
        self._stores["captions"] = self._open_store(self.cfg.captions.features)

    def _read_entities(self, *, required: bool) -> None:
        folder = self.root / self.cfg.entities.folder
        if not (folder / "Sentences").is_dir():
            if required:
                raise DataError(folder / "Sentences",
                                "Flickr30k Entities folder not found (data.datasets names entities)")
            return
        for split in SPLITS:
            if (folder / f"{split}.txt").is_file():
                self.entities[split] = EntitySplit(folder / "Sentences",
                                                   entities_reader.read_flickr30k_entities(folder, split=split))
        if "train" not in self.entities:
            raise DataError(folder / "train.txt", "Flickr30k Entities training split not found")
        self._stores["entities"] = self._open_store(self.cfg.entities.features)

    def _open_store(self, override: str | None) -> FeatureStore:
        path = self.root / (override or self.cfg.features)
        for store in self._stores.values():
            if store.path == path:
                return store
        if not (path / "header.json").is_file():
            raise DataError(path, "region feature store not found (data.features)")
        return FeatureStore(path)

    def _image_ids(self, dataset: str) -> dict[str, list[tuple[int, Path, str]]]:
        """Per split: (image id, file, record) of every example of a dataset."""
        out: dict[str, list[tuple[int, Path, str]]] = {}
        if dataset == "vqa":
            for split, vs in self.vqa.items():
                out[split] = [(e.image_id, vs.path, f"question_id {e.question_id}") for e in vs.examples]
        elif dataset == "captions":
            for split, cs in self.captions.items():
                out[split] = [(im.image_id, cs.path, f"image {im.filename}") for im in cs.images]
        else:
            for split, es in self.entities.items():
                out[split] = [(g.image_id, es.path / f"{g.image_id}.txt", f"sentence {g.sentence_index}")
                              for g in es.sentences]
        return out

    def _check_features(self) -> None:
        """Every image an example refers to must have region features (never skipped)."""
        for dataset in self.datasets:
            store = self._stores[dataset]
            checked: set[int] = set()
            for rows in self._image_ids(dataset).values():
                for image_id, path, record in rows:
                    if image_id in checked:
                        continue
                    if image_id not in store:
                        raise DataError(path, f"image id {image_id} has no region features in {store.path}",
                                        record=record, field="image_id")
                    checked.add(image_id)

    def _check_contamination(self) -> None:
        """Sec. 5.1: no task may train on images that any task is tested on (same namespace)."""
        training, testing = [], []
        train_splits = {"vqa": self.cfg.vqa.train_splits, "captions": ["train"], "entities": ["train"]}
        for dataset in self.datasets:
            namespace = getattr(self.cfg, dataset).namespace
            per_split = self._image_ids(dataset)
            for split, rows in per_split.items():
                images = SplitImages(dataset, split, namespace, frozenset(r[0] for r in rows))
                if split in train_splits[dataset]:
                    training.append(images)
                elif split == "test":
                    testing.append(images)
        overlaps = contamination_report(training, testing)
        if overlaps and not self.cfg.allow_contamination:
            raise ConfigError("data: Sec. 5.1 contamination: " + "; ".join(o.describe() for o in overlaps)
                              + ". Train VQA on train+val in a separate run (see docs/hierarchical.md), or set "
                                "data.allow_contamination: true knowingly")
        for o in overlaps:
            log.warning("data: contamination allowed: %s", o.describe())

    # -- text -------------------------------------------------------------------------------------
    def question_tokens(self, example: VQAExample) -> list[str]:
        return question_tokens(example.question)

    @staticmethod
    def caption_tokens(image: CaptionedImage, index: int) -> list[str]:
        """The caption file's own tokens (what Karpathy's files ship), else the caption rule."""
        if image.tokens:
            return list(image.tokens[index])
        return tokenize(image.captions[index], "caption")

    @staticmethod
    def sentence_tokens(sentence: GroundedSentence) -> list[str]:
        return list(align_words(sentence.sentence, "caption").tokens)

    def _training_tokens(self):
        for split in self.cfg.vqa.train_splits if self.vqa else ():
            for e in self.vqa_split(split).examples:
                yield self.question_tokens(e)
        if self.captions:
            for im in self.captions["train"].images:
                for j in range(len(im.captions)):
                    yield self.caption_tokens(im, j)
        if self.entities:
            for g in self.entities["train"].sentences:
                yield self.sentence_tokens(g)

    def _load_word_vectors(self, vocab: Vocabulary) -> torch.Tensor | None:
        if self.cfg.word_vectors is None:
            return None
        from vlmt.data.text import load_word_vectors

        path = Path(self.cfg.word_vectors).expanduser()
        if not path.is_absolute():
            path = self.root / path
        vectors = load_word_vectors(path, vocab, file_format=self.cfg.word_vectors_format, seed=self.seed)
        log.info("data: word vectors %s cover %.1f %% of the vocabulary", path, 100 * vectors.coverage)
        return vectors.as_tensor()
