"""The hierarchical family's data (the `vl` family of a `datasets` section, `vlmt.data.section`):
VQA, Karpathy captions and Flickr30k Entities read once from one source through their dataset
modules (`vlmt.data.datasets`), and the preprocessing the family's tasks share: one vocabulary over
their training text, the VQA answer pool, the grounding phrase lexicon, pretrained word vectors and
the region feature stores.

    data:
      type: datasets
      root: world:tiny            # world:<size>[:<seed>], easy_vqa, or a folder
      datasets: {vqa: {}, captions: {}, entities: {}}
      families:
        vl: {min_word_count: 1, answer_more_than: 8}   # answer pool: training answers seen more than 8 times

File names default to the synthetic world's layout, which is the official one (VQA v2
open-ended files per split subtype, one Karpathy `dataset_*.json`, `flickr30k_entities/`,
`features/`); each can be overridden for real datasets (configs/hierarchical_paper.yaml).

The family's build is a `VLData` holding the examples of every split of the section's vqa,
captions and entities datasets, one word `Vocabulary` over the training text of all of them,
optional pretrained word vectors, the VQA answer pool, the region feature store(s) and
`image_path(image_id)`. With the section's `missing: skip` a listed dataset whose files are not
under the root is left out (a folder with VQA files only, easy-VQA, needs nothing else). Every image
an example refers to must be in its feature store: a missing one is a DataError naming the dataset
file, the record and the store.

Files of the former `type: vl_datasets` section read as a `datasets` section with the `vl` family
(`upgrade_vl_section`, a `vlmt.config.registry` alias): same datasets, same options, same build.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from vlmt.config import DATA
from vlmt.data.answers import AnswerPool, answer_pool_from_examples
from vlmt.data.datasets import dataset_kind, resolve_source
from vlmt.data.datasets.base import image_pattern_ok
from vlmt.data.datasets.captions import CaptionFilesConfig, CaptionSplit
from vlmt.data.datasets.entities import EntityFilesConfig, EntitySplit
from vlmt.data.datasets.vqa import VQAFilesConfig, VQASplit
from vlmt.data.examples import CaptionedImage, GroundedSentence, VQAExample
from vlmt.data.features.store import FeatureStore
from vlmt.data.readers.progress import Progress
from vlmt.data.section import DatasetsConfig, register_family
from vlmt.data.splits import SplitImages, contamination_report
from vlmt.data.text import Vocabulary, align_words, tokenize
from vlmt.data.text.phrases import PhraseLexicon, phrase_lexicon
from vlmt.errors import ConfigError, DataError
from vlmt.io import load_json, write_json

log = logging.getLogger("vlmt.data")  # the data build's lines, wherever its code sits

DATASETS = ("vqa", "captions", "entities")
FAMILY = "vl"
IMAGES = "images/{image_id}.png"


@dataclass
class VLPreprocessing:
    """The `vl` family's options (`data.families.vl`): how its shared vocabularies are built.

    min_word_count: words seen fewer times in training text become <unk>. word_vectors: GloVe /
    word2vec file (the embedding, frozen unless the model section sets freeze_word_vectors: false;
    null: learned). answer_more_than: pool = training answers seen more than N times.
    allow_contamination: train even when a task trains on images another task is tested on.
    """

    min_word_count: int = 1
    word_vectors: str | None = None
    word_vectors_format: Literal["auto", "glove", "word2vec", "word2vec-text"] = "auto"
    answer_more_than: int = 8
    allow_contamination: bool = False

    def validate(self) -> str | None:
        if self.min_word_count < 1:
            return f"min_word_count must be >= 1, got {self.min_word_count}"
        if self.answer_more_than < 0:
            return f"answer_more_than must be >= 0, got {self.answer_more_than}"
        return None


@dataclass
class VLDatasetsConfig(VLPreprocessing):
    """What one build of the `vl` family reads: the family's options and, from the data section,
    the root, its vqa / captions / entities files and the section-wide store and picture pattern.

    root: source string for `vlmt.data.datasets.resolve_source`. datasets: which of vqa,
    captions, entities to load (null: all three). missing: `skip` leaves out a dataset whose files
    are not under the root, `error` refuses it. features: feature store folder under the root.
    images: picture path pattern with `{image_id}`. check_files: validate the files this build
    reads (its datasets' files and feature stores, with the checks and messages of `vlmt data
    validate`) first, so training refuses data that does not validate; other files under the root
    are not read.
    """

    root: str = "world:tiny"
    datasets: list[Literal["vqa", "captions", "entities"]] | None = None
    missing: Literal["error", "skip"] = "error"
    features: str = "features"
    images: str = IMAGES
    vqa: VQAFilesConfig = field(default_factory=VQAFilesConfig)
    captions: CaptionFilesConfig = field(default_factory=CaptionFilesConfig)
    entities: EntityFilesConfig = field(default_factory=EntityFilesConfig)
    check_files: bool = True

    def validate(self) -> str | None:
        problem = super().validate()
        if problem:
            return problem
        for key, pattern in (("images", self.images), ("vqa.images", self.vqa.images),
                             ("captions.images", self.captions.images), ("entities.images", self.entities.images)):
            if pattern is not None and not image_pattern_ok(pattern):
                return (f"{key}: the pattern needs an '{{image_id}}' field (e.g. images/{{image_id}}.png), "
                        f"got {pattern!r}")
        return None

    def dataset_files(self) -> dict[str, VQAFilesConfig | CaptionFilesConfig | EntityFilesConfig]:
        """The datasets this section may read (name -> files config), each with the section's
        store and picture pattern where it sets none."""
        wanted = self.datasets if self.datasets is not None else DATASETS
        return {name: dataclasses.replace(getattr(self, name), features=getattr(self, name).features or self.features,
                                          images=getattr(self, name).images or self.images)
                for name in DATASETS if name in wanted}

    def build(self, *, seed: int) -> VLData:
        root = resolve_source(self.root, progress=lambda msg: log.info("data: %s", msg))
        if self.check_files:
            from vlmt.data.validate import require_valid_once

            datasets = self.dataset_files()
            stores = {root / (getattr(files, "features", None) or self.features) for files in datasets.values()}
            require_valid_once(root, datasets=datasets, stores=sorted(stores))
        return VLData(self, root, seed=seed)


def build_family(section: DatasetsConfig, options: VLPreprocessing, *, root: Path, seed: int) -> VLData:
    """The `vl` family's data from a `datasets` section: its vqa, captions and entities (read from
    `section.root`, which `root` is the folder of)."""
    listed = [name for name in DATASETS if name in section.datasets]
    if not listed:
        raise ConfigError(f"data.datasets: the tasks on the hierarchical encoder read {', '.join(DATASETS)}; the "
                          f"section lists none of them (it lists: {', '.join(section.datasets) or 'nothing'})")
    cfg = VLDatasetsConfig(**dataclasses.asdict(options), root=section.root, datasets=listed,  # type: ignore[arg-type]
                           missing=section.missing, features=section.features, images=section.images or IMAGES,
                           check_files=section.check_files, **{name: section.datasets[name] for name in listed})
    return cfg.build(seed=seed)


def load_family_assets(folder: Path) -> VLAssets | None:
    """The `vl` family's assets saved in a model folder, or None when it saved none there."""
    return VLAssets.load(folder) if (Path(folder) / VLAssets.FILE).is_file() else None


def upgrade_vl_section(raw: dict[str, Any]) -> dict[str, Any]:
    """A former `type: vl_datasets` section as a `datasets` section: its root, store, picture
    pattern and checks; its datasets (all three, each left out when absent, when it named none);
    the rest, the `vl` family's options."""
    raw = dict(raw)
    out: dict[str, Any] = {"root": raw.pop("root", VLDatasetsConfig.root)}
    for key in ("features", "images", "check_files"):
        if key in raw:
            out[key] = raw.pop(key)
    files = {name: raw.pop(name, None) or {} for name in DATASETS}
    listed = raw.pop("datasets", None)
    if listed is None:
        out["datasets"], out["missing"] = files, "skip"
    elif isinstance(listed, (list, tuple)):
        out["datasets"] = {**{n: files[n] for n in DATASETS if n in listed},
                           **{str(n): {} for n in listed if n not in DATASETS}}
    else:
        out["datasets"] = listed  # reported by the loader
    out["families"] = {FAMILY: raw}
    return out


DATA.alias("vl_datasets", "datasets", upgrade_vl_section)


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
        for name in DATASETS:
            if wanted is None or name in wanted:
                self._read(name, required=wanted is not None and cfg.missing == "error")
        if not self.datasets:
            raise ConfigError(f"data.root: {cfg.root!r} ({self.root}) holds none of the datasets "
                              f"(VQA {cfg.vqa.questions}, captions dataset_*.json, {cfg.entities.folder}/)")
        with Progress(log, "data: checking that every image has region features", quiet=True):
            self._check_features()
        with Progress(log, "data: checking that no task trains on another's test images", quiet=True):
            self._check_contamination()
        texts = self._training_texts()
        with Progress(log, "data: vocabulary from the training text", total=texts, unit="texts") as p:
            vocab = Vocabulary.build(self._counted(self._training_tokens(), p), min_count=cfg.min_word_count)
        self.word_vectors = self._load_word_vectors(vocab)
        answers: AnswerPool | None = None
        if "vqa" in self.datasets:
            train = [e for s in cfg.vqa.train_splits for e in self.vqa_split(s).examples]
            answers = answer_pool_from_examples(train, more_than=cfg.answer_more_than)
            if len(answers) == 0:
                raise ConfigError(f"data.families.vl.answer_more_than: no training answer is seen more than "
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
                              f"data.datasets.{dataset} file names, or list it in data.datasets")

    def vqa_split(self, split: str) -> VQASplit:
        if split not in self.vqa:
            raise ConfigError(f"data.datasets.vqa: no VQA {split} split under {self.root} "
                              f"(looked for {self._vqa_path('questions', split)})")
        return self.vqa[split]

    def caption_split(self, split: str) -> CaptionSplit:
        if split not in self.captions:
            raise ConfigError(f"data.datasets.captions: no {split} images in the caption file under {self.root}")
        return self.captions[split]

    def entity_split(self, split: str) -> EntitySplit:
        if split not in self.entities:
            raise ConfigError(f"data.datasets.entities: no {split}.txt under {self.root / self.cfg.entities.folder}")
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
        return self.cfg.vqa.path(self.root, kind, split)

    def _read(self, name: str, *, required: bool) -> None:
        """Read dataset `name` through its module (`vlmt.data.datasets`) and open its store."""
        files = getattr(self.cfg, name)
        progress = Progress(log, f"data: reading {name}")
        try:
            splits = dataset_kind(name).read(self.root, files, required=required)
        except BaseException:
            progress.abandon()
            raise
        counts = {split: len(getattr(held, "examples", None) or getattr(held, "images", None)
                             or getattr(held, "sentences", None) or ()) for split, held in splits.items()}
        progress.close(", ".join(f"{split} {n:,}" for split, n in counts.items()) or "not found")
        setattr(self, name, splits)
        if splits:
            self._stores[name] = self._open_store(files.features)

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
        return dataset_kind(dataset).image_records(getattr(self, dataset))

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
                                "data.families.vl.allow_contamination: true knowingly")
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

    def _training_texts(self) -> int:
        """How many texts `_training_tokens` yields."""
        vqa = sum(len(self.vqa_split(s).examples) for s in self.cfg.vqa.train_splits) if self.vqa else 0
        captions = sum(len(im.captions) for im in self.captions["train"].images) if self.captions else 0
        return vqa + captions + (len(self.entities["train"].sentences) if self.entities else 0)

    @staticmethod
    def _counted(items, progress: Progress):
        for item in items:
            yield item
            progress.update()

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


register_family(FAMILY, options=VLPreprocessing, build=build_family, load_assets=load_family_assets,
                types=(VLData, VLAssets))
