"""The data section of SVLR experiments: Visual Genome regions + VQA v1 multiple choice.

`SVLRDataConfig` (config type `svlr_datasets`) names a source folder (`root: world:default`, a
synthetic world, or a folder with the official files) and the file names inside it; `build()`
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

Model selection (S Sec. 5.1): `vqa_splits.val: holdout` carves the validation questions out of the
training subtype instead of reading a file: whole images, taken in the order of a CRC32 hash of
the image id until `vqa_holdout` questions (a count, or a fraction of the training questions) are
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
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from vlmt.config import DataConfig, register_data
from vlmt.data.examples import GenomeImage, VQAExample
from vlmt.data.features.store import FeatureStore
from vlmt.data.question_bins import QuestionBinner
from vlmt.data.readers.visual_genome import drop_vqa_overlap, read_visual_genome
from vlmt.data.readers.vqa import read_vqa
from vlmt.data.sources import resolve_source
from vlmt.data.text import HypernymMap, PosLexicon, load_word_vectors, tokenize
from vlmt.data.text.cache import TEXT_CACHE_SIZE, LRUCache
from vlmt.errors import ConfigError, DataError
from vlmt.io import atomic_path, load_json, write_json

log = logging.getLogger("vlmt.data.svlr")

SPLITS = ("train", "val", "test")
HOLDOUT = "holdout"  # vqa_splits.val: carved from the train subtype (`holdout_images`)


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


@dataclass(frozen=True)
class MCQuestion:
    """One VQA v1 multiple-choice question, pre-processed for SVLR."""

    question_id: int
    image_id: int
    question: str
    question_type: str
    answer_type: str
    answers: tuple[str, ...]            # the 10 annotator answers (official scoring)
    choices: tuple[str, ...]            # the 18 candidate answers
    correct: int                        # index of multiple_choice_answer in `choices`
    bins: tuple[tuple[str, ...], ...]   # 4 question bins (vlmt.data.question_bins)
    nouns: tuple[str, ...]              # lemmatised question nouns
    adjectives: tuple[str, ...]         # lemmatised question adjectives
    choice_words: tuple[tuple[str, ...], ...]
    choice_nouns: tuple[tuple[str, ...], ...]
    choice_adjectives: tuple[tuple[str, ...], ...]


# --------------------------------------------------------------------------- word vectors


def fallback_vector(word: str, dim: int, *, seed: int = 0) -> np.ndarray:
    """A fixed random vector for `word`: N(0, 1/dim) per entry, seeded by (seed, CRC32(word)).

    Used when no pretrained vectors are configured (the synthetic world's words have none). The
    vector depends on the word alone, so every run, split and process sees the same input
    vectors; distinct words are nearly orthogonal, so the input carries no similarity at all and
    everything `g` knows about a word it learned from the tasks.
    """
    rng = np.random.default_rng([seed, zlib.crc32(word.encode("utf-8"))])
    return (rng.standard_normal(dim) / np.sqrt(dim)).astype(np.float32)


class WordTable:
    """Vectors of words and multi-word terms: a term's vector is the mean of its tokens'.

    `fallback`: the table holds `fallback_vector`s (no word-vector file), so a word it never
    collected has one too (a new question's words); otherwise such a word has no vector."""

    FILE = "word_vectors.safetensors"

    def __init__(self, token_vectors: dict[str, np.ndarray], dim: int, *, source: str, coverage: float | None,
                 fallback: bool = False):
        self._tokens = token_vectors
        self.dim = dim
        self.source = source
        self.coverage = coverage
        self.fallback = fallback
        self._cache: LRUCache[str, np.ndarray] = LRUCache(TEXT_CACHE_SIZE)  # keyed by client text

    def __contains__(self, term: object) -> bool:
        """Whether every token of `term` has a vector."""
        return isinstance(term, str) and bool(term.split()) and (
            self.fallback or all(t in self._tokens for t in term.split()))

    def vector(self, term: str) -> np.ndarray:
        v = self._cache.get(term)
        if v is None:
            toks = term.split()
            if toks and self.fallback:
                vecs = [self._tokens[t] if t in self._tokens else fallback_vector(t, self.dim) for t in toks]
            else:
                missing = [t for t in toks if t not in self._tokens]
                if missing or not toks:
                    raise KeyError(f"no word vector for {term!r} (the data section did not collect it)")
                vecs = [self._tokens[t] for t in toks]
            v = np.mean(vecs, axis=0).astype(np.float32)
            self._cache[term] = v
        return v

    def matrix(self, terms: Sequence[str]) -> np.ndarray:
        """(len(terms), dim) float32."""
        if not terms:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.vector(t) for t in terms])

    def tokens(self) -> list[str]:
        return list(self._tokens)

    def save(self, folder: Path) -> Path:
        """The collected rows (and only those) as safetensors, the words in its metadata."""
        from safetensors.numpy import save_file

        words = self.tokens()
        matrix = np.stack([self._tokens[w] for w in words]) if words else np.zeros((0, self.dim), np.float32)
        path = folder / self.FILE
        with atomic_path(path) as tmp:
            save_file({"vectors": np.ascontiguousarray(matrix, dtype=np.float32)}, str(tmp),
                      metadata={"words": json.dumps(words), "source": self.source, "fallback": str(self.fallback),
                                "coverage": json.dumps(self.coverage)})
        return path

    @classmethod
    def load(cls, folder: Path) -> WordTable:
        from safetensors import safe_open

        path = folder / cls.FILE
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata()
                matrix = f.get_tensor("vectors")
            words = json.loads(meta["words"])
            fallback = meta["fallback"] == "True"
        except FileNotFoundError:
            raise DataError(path, "file not found") from None
        except Exception as e:  # safetensors raises its own error types for damaged files
            raise DataError(path, f"not a word-vector table: {e}") from None
        if len(words) != len(matrix):
            raise DataError(path, f"{len(words)} words for {len(matrix)} vectors")
        return cls(dict(zip(words, matrix)), int(matrix.shape[1]), source=meta.get("source", str(path)),
                   coverage=json.loads(meta.get("coverage", "null")), fallback=fallback)


# --------------------------------------------------------------------------- text and assets


class SVLRText:
    """How SVLR reads a question and its answers: the tokens (VQA rule), the nouns and adjectives the
    POS lexicon finds (the label sets, and the words of the hypernyms as nouns) and the 4 question
    bins. Built from the label sets and the tools chosen (tagger, lemmatiser, question parser);
    a model saved with its data keeps the tools' resolved names, so it reads questions the same way
    when loaded."""

    def __init__(self, *, object_labels: Sequence[str], attribute_labels: Sequence[str],
                 hypernyms: HypernymMap | None, lemmatizer: str = "auto", tagger: str = "auto",
                 question_parser: str = "auto"):
        self.noun_words = set(object_labels) | (
            {w for n in hypernyms.words() for w in [n, *hypernyms.hypernyms(n)]} if hypernyms else set())
        tagger, spacy_model = _tool(tagger)
        parser, parser_model = _tool(question_parser)
        try:
            self.lexicon = PosLexicon.from_labels(objects=sorted(self.noun_words), attributes=attribute_labels,
                                                  lemmatizer=lemmatizer, tagger=tagger,
                                                  **({"spacy_model": spacy_model} if spacy_model else {}))
        except (RuntimeError, ValueError) as e:
            raise ConfigError(f"data.tagger / data.lemmatizer: {e}") from None
        self.binner = QuestionBinner(is_noun=self._is_noun, parser=parser,  # type: ignore[arg-type]
                                     **({"spacy_model": parser_model} if parser_model else {}))
        self._tag = functools.lru_cache(maxsize=TEXT_CACHE_SIZE)(self._tag_text)

    def settings(self) -> dict[str, str]:
        """The tools as resolved ("auto" replaced by what was found installed)."""
        lemmatizer = "wordnet" if type(self.lexicon.lemmatizer).__name__ == "WordNetLemmatizer" else "rules"
        return {"tagger": self.lexicon.tagger_name, "lemmatizer": lemmatizer, "question_parser": self.binner.method}

    def _is_noun(self, word: str) -> bool:
        return bool(self.lexicon.tag((word,)).nouns)

    def _tag_text(self, text: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        toks = tuple(tokenize(text, "vqa"))
        tagged = self.lexicon.tag(toks)
        return toks, tuple(dict.fromkeys(tagged.nouns)), tuple(dict.fromkeys(tagged.adjectives))

    def tag(self, text: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """(tokens, lemmatised nouns, lemmatised adjectives) of a question or an answer."""
        return self._tag(text)

    def question(self, question: str, choices: Sequence[str], *, question_id: int = 0, image_id: int = 0,
                 correct: int = 0, question_type: str = "", answer_type: str = "",
                 answers: Sequence[str] = ()) -> MCQuestion:
        """A multiple-choice question pre-processed for SVLR (bins, nouns, adjectives, choice words)."""
        toks, nouns, adjs = self.tag(question)
        bins = self.binner(question, toks)
        choice = [self.tag(c) for c in choices]
        return MCQuestion(
            question_id=question_id, image_id=image_id, question=question, question_type=question_type,
            answer_type=answer_type, answers=tuple(answers), choices=tuple(choices), correct=correct,
            bins=tuple(tuple(b) for b in bins.as_lists()), nouns=nouns, adjectives=adjs,
            choice_words=tuple(c[0] for c in choice), choice_nouns=tuple(c[1] for c in choice),
            choice_adjectives=tuple(c[2] for c in choice))


def _tool(name: str) -> tuple[str, str | None]:
    """("spacy", model) for a resolved "spacy:<model>", else (name, None)."""
    kind, _, model = name.partition(":")
    return kind, (model or None)


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

    root: "world:<size>[:<seed>]", "easy_vqa" or a folder (vlmt.data.sources.resolve_source).
    vqa_*: `{subtype}` is replaced by the entry of `vqa_splits` for each split. Real VQA v1 has
    no test annotations: map `test` to `val2014` there (the paper reports on val) and `val` to
    `holdout` (model selection on a part of train, see the module docstring).
    vqa_holdout: with `vqa_splits.val: holdout`, how much of train to hold out: an integer is a
    number of questions (whole images until it is reached), a float in (0, 1) a fraction of the
    training questions.
    genome_splits: a JSON {"train": [image ids], "val": [...], "test": [...]}; when the file does
    not exist, images are split 85/5/10 by a hash of the image id (the paper's proportions).
    hypernyms: a hypernym file (JSON or TSV), "wordnet" (NLTK), or null for none.
    word_vectors: GloVe / word2vec file; null: fixed random vectors per word (`fallback_vector`).
    images: where pictures (Fig. 4) find an image's pixels; `{image_id}` is replaced (e.g.
    "train2014/COCO_train2014_{image_id:012d}.jpg"); null when there are none.
    match_iou: a Genome object takes the store box of its image with the highest IoU, which must
    reach this value (objects below it are counted in the summary and not used).
    check_files: run `vlmt data validate` on the root first, so training refuses data that does
    not validate, with the same messages.
    genome_id_offset: Genome image i is keyed i + genome_id_offset in the feature store. Visual
    Genome numbers its images from 1, in the range of COCO's ids, so a store holding both needs
    the offset (e.g. 1000000000; `vlmt data convert --id-offset`); the worlds need none.
    """

    root: str = "world:default"
    features: str = "features"
    vqa_questions: str = "MultipleChoice_mscoco_{subtype}_questions.json"
    vqa_annotations: str = "mscoco_{subtype}_annotations.json"
    vqa_splits: dict[str, str] = field(default_factory=lambda: {"train": "train2014", "val": "val2014",
                                                                "test": "test2015"})
    vqa_holdout: int | float | None = None
    genome_image_data: str = "visual_genome/image_data.json"
    genome_objects: str = "visual_genome/objects.json"
    genome_attributes: str = "visual_genome/attributes.json"
    genome_splits: str | None = "visual_genome/splits.json"
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
    genome_id_offset: int = 0

    def validate(self) -> str | None:
        for key in ("num_objects", "num_attributes", "word_dim"):
            if getattr(self, key) < 1:
                return f"{key} must be >= 1, got {getattr(self, key)}"
        if not 0.0 < self.match_iou <= 1.0:
            return f"match_iou must be in (0, 1], got {self.match_iou}"
        if self.genome_id_offset < 0:
            return f"genome_id_offset must be >= 0, got {self.genome_id_offset}"
        unknown = sorted(set(self.vqa_splits) - set(SPLITS))
        if unknown:
            return f"vqa_splits: unknown split(s) {unknown}; use train, val, test"
        return self._holdout_problem()

    def _holdout_problem(self) -> str | None:
        splits = self.vqa_splits
        for split in ("train", "test"):
            if splits.get(split) == HOLDOUT:
                return f"vqa_splits.{split}: only val can be {HOLDOUT!r} (carved from train)"
        if splits.get("val") is not None and splits.get("val") == splits.get("test"):
            return (f"vqa_splits: val and test are both {splits['val']!r}, so the checkpoint would be selected "
                    f"on the split it reports; hold out part of train instead (vqa_splits.val: {HOLDOUT} with "
                    f"vqa_holdout: a question count or fraction)")
        size = self.vqa_holdout
        if splits.get("val") == HOLDOUT:
            if "train" not in splits:
                return f"vqa_splits.val: {HOLDOUT!r} needs a train split to carve it from"
            if size is None:
                return (f"vqa_holdout: required with vqa_splits.val: {HOLDOUT} (a question count, or a fraction "
                        f"in (0, 1))")
            if isinstance(size, int) and size < 1 or isinstance(size, float) and not 0.0 < size < 1.0:
                return f"vqa_holdout: a question count >= 1 or a fraction in (0, 1), got {size!r}"
        elif size is not None:
            return f"vqa_holdout: set to {size!r} but vqa_splits.val is not {HOLDOUT!r}; remove one of them"
        return None

    @classmethod
    def load_assets(cls, folder: Path) -> SVLRAssets:
        return SVLRAssets.load(folder)

    def build(self, *, seed: int) -> SVLRData:
        root = resolve_source(self.root, progress=lambda msg: log.info("%s: %s", self.root, msg))
        if self.check_files:
            from vlmt.data.validate import require_valid_once

            require_valid_once(root, genome_id_offset=self.genome_id_offset)
        return _build_cached(json.dumps(asdict(self), sort_keys=True), str(root.resolve()))


@functools.lru_cache(maxsize=4)
def _build_cached(config_json: str, root: str) -> SVLRData:
    cfg = SVLRDataConfig(**json.loads(config_json))
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


def _genome_splits(path: Path | None, images: list[GenomeImage]) -> dict[int, str]:
    if path is not None and path.is_file():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DataError(path, f"not valid JSON: {e}") from None
        if not isinstance(raw, dict):
            raise DataError(path, "expected an object {split: [image ids]}")
        out: dict[int, str] = {}
        for split, ids in raw.items():
            if split not in SPLITS:
                raise DataError(path, f"unknown split {split!r}; expected train, val, test", record=split)
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                raise DataError(path, "expected a list of integer image ids", record=split)
            for i in ids:
                out[i] = split
        return out
    out = {}
    for im in images:  # 85 / 5 / 10 by a hash of the id: stable whatever the file order
        h = zlib.crc32(str(im.image_id).encode()) % 100
        out[im.image_id] = "train" if h < 85 else ("val" if h < 90 else "test")
    return out


def holdout_images(examples: Sequence[VQAExample], size: int | float) -> set[int]:
    """The image ids held out of `examples` for model selection: whole images in the order of
    CRC32(image id) (ties by id; stable whatever the file order), taken until the held-out
    questions reach `size` (an int: a question count; a float in (0, 1): that fraction of the
    questions, rounded). ValueError when that would leave no training image."""
    per_image = Counter(ex.image_id for ex in examples)
    total = sum(per_image.values())
    target = size if isinstance(size, int) else max(1, round(size * total))
    order = sorted(per_image, key=lambda i: (zlib.crc32(str(i).encode()), i))
    taken: set[int] = set()
    count = 0
    for image_id in order:
        if count >= target:
            break
        taken.add(image_id)
        count += per_image[image_id]
    if count < target or len(taken) == len(per_image):
        raise ValueError(f"holding out {target} questions needs fewer than all {total} training questions "
                         f"({len(per_image)} images)")
    return taken


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
    vqa_raw = {}
    for split, subtype in cfg.vqa_splits.items():
        if subtype == HOLDOUT:
            continue
        q_path = root / cfg.vqa_questions.format(subtype=subtype)
        a_path = root / cfg.vqa_annotations.format(subtype=subtype)
        for p in (q_path, a_path):
            if not p.is_file():
                raise DataError(p, f"file not found (data.vqa_splits.{split} = {subtype!r})")
        vqa_raw[split] = (read_vqa(q_path, a_path), q_path)
    holdout: dict | None = None
    if cfg.vqa_splits.get("val") == HOLDOUT:
        train, train_path = vqa_raw["train"]
        try:
            held = holdout_images(train, cfg.vqa_holdout)  # type: ignore[arg-type]  # validate() checked it
        except ValueError as e:
            raise ConfigError(f"data.vqa_holdout: {e} (data.vqa_splits.train = {cfg.vqa_splits['train']!r})") from None
        vqa_raw["val"] = ([ex for ex in train if ex.image_id in held], train_path)
        vqa_raw["train"] = ([ex for ex in train if ex.image_id not in held], train_path)
        holdout = {"from": cfg.vqa_splits["train"], "requested": cfg.vqa_holdout,
                   "rule": "whole images in the order of CRC32(str(image_id)), until the requested questions",
                   "images": sorted(held), "questions": sorted(ex.question_id for ex in vqa_raw["val"][0]),
                   "train_images_left": len({ex.image_id for ex in vqa_raw["train"][0]}),
                   "train_questions_left": len(vqa_raw["train"][0])}
    vqa_images = {ex.image_id for exs, _ in vqa_raw.values() for ex in exs}

    # ---- Visual Genome
    vg_images = read_visual_genome(root / cfg.genome_image_data, root / cfg.genome_objects,
                                   root / cfg.genome_attributes if cfg.genome_attributes else None)
    dropped: list[GenomeImage] = []
    if cfg.drop_vqa_overlap:
        vg_images, dropped = drop_vqa_overlap(vg_images, vqa_images)
    split_of = _genome_splits(root / cfg.genome_splits if cfg.genome_splits else None, vg_images)
    train_images = [im for im in vg_images if split_of.get(im.image_id) == "train"]
    obj_freq: Counter[str] = Counter()
    atr_freq: Counter[str] = Counter()
    for im in train_images:
        for o in im.objects:
            obj_freq.update({_norm(n) for n in o.names})
            atr_freq.update({_norm(a) for a in o.attributes})
    if not obj_freq:
        raise DataError(root / cfg.genome_objects, "no object in the Genome training split")
    # most frequent first; ties by name so the label order does not depend on file order
    object_labels = [w for w, _ in sorted(obj_freq.items(), key=lambda kv: (-kv[1], kv[0]))][: cfg.num_objects]
    attribute_labels = [w for w, _ in sorted(atr_freq.items(), key=lambda kv: (-kv[1], kv[0]))][: cfg.num_attributes]
    if not attribute_labels:
        raise DataError(root / (cfg.genome_attributes or cfg.genome_objects),
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
    for im in vg_images:
        im_split = split_of.get(im.image_id)
        if im_split is None:
            continue
        key = im.image_id + cfg.genome_id_offset  # the image's key in the store
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
    for split, (examples, q_path) in vqa_raw.items():
        out = []
        for ex in sorted(examples, key=lambda e: e.question_id):
            if ex.choices is None:
                raise DataError(q_path, "not a multiple-choice question", record=f"question_id {ex.question_id}",
                                field="multiple_choices")
            try:
                correct = ex.choices.index(ex.multiple_choice_answer)
            except ValueError:
                raise DataError(q_path, f"the annotated answer {ex.multiple_choice_answer!r} is not one of the "
                                "choices", record=f"question_id {ex.question_id}", field="multiple_choices") from None
            out.append(text.question(ex.question, ex.choices, question_id=ex.question_id, image_id=ex.image_id,
                                     correct=correct, question_type=ex.question_type or "",
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
