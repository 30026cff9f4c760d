"""easy-VQA (PyPI package `easy-vqa`) converted into the layout of the synthetic world, so the
same data section, readers, validation and tasks serve it:

    v2_OpenEnded_mscoco_{train2014,val2014,test2015}_questions.json + v2_mscoco_*_annotations.json
    images/<image_id>.png            the package's PNGs under the reader's image ids
    region_extractor/                the region CNN that made the features (reused by `vlmt predict`)
    features/                        region features extracted from the pixels (feature store)
    easy_vqa.json, README.md         what was made and how

Splits: the package's train images are divided by image into train (90 %) and val (10 %, fixed
seed); the package's test images are the test split, used for nothing but the final evaluation.
Each question's single answer is written as 10 identical annotator answers (official VQA
accuracy is then 1 for that answer, 0 otherwise).

Regions (`proposals`): every easy-VQA image is one solid shape on a near-uniform light background,
so a class-agnostic proposal straight from the pixels - the box around the pixels that differ
from the border colour - finds the object; the whole image and its four quadrants are added so
that an image where that proposal fails (a photo given to `vlmt predict`) still has sensible
regions. T = 6 regions per image.

Region CNN supervision: easy-VQA has no box labels, but its training answers name every image's
shape and colour ("what shape ..." -> circle, "is there a red shape?" -> yes, ...). Those words
label the foreground box (object = shape, attribute = colour) of the training images only, and the
extractor is trained as the synthetic world trains its own (`genome_training_regions`: the box, a
jittered copy, random background boxes). `extractor="world"` instead starts from the region CNN
of the synthetic world (default size) and fine-tunes it on the same labels.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from vlmt.data.examples import GenomeImage, GenomeObject, VQAExample
from vlmt.data.features.proposals import REGIONS_PER_IMAGE, foreground_box, load_image, proposals
from vlmt.data.readers import easy_vqa as reader
from vlmt.errors import ConfigError, DataError
from vlmt.io import atomic_write, write_json
from vlmt.seeding import seeded

EASY_VQA_VERSION = 1
SHAPES = ("circle", "rectangle", "triangle")
VAL_FRACTION = 0.1
SPLIT_SEED = 0
SUBTYPES = {"train": "train2014", "val": "val2014", "test": "test2015"}
EXTRACTORS = ("scratch", "world")
DEFAULT_EXTRACTOR = "scratch"
FEATURE_DIM = 128
EXTRACTOR_EPOCHS = 6
MANIFEST = "easy_vqa.json"
VQA_INFO = {"description": "easy-VQA (pip package easy-vqa) written in the VQA v2 format by vlmt",
            "url": "https://github.com/vzhou842/easy-VQA", "version": "1.0", "year": 2020,
            "contributor": "Victor Zhou", "date_created": "2020-01-01"}
VQA_LICENSE = {"name": "MIT", "url": "https://opensource.org/licenses/MIT"}


def easy_vqa_dir(*, limit: int | None = None, extractor: str = DEFAULT_EXTRACTOR) -> Path:
    """Where the converted easy-VQA lives in the cache (whether or not it exists yet); a subset or
    another extractor initialisation gets its own folder."""
    from vlmt.data.synth.cache import cache_root

    suffix = ((f"-limit{limit}" if limit is not None else "")
              + (f"-{extractor}" if extractor != DEFAULT_EXTRACTOR else ""))
    return cache_root() / f"easy_vqa-{EASY_VQA_VERSION}{suffix}"


# --- labels for the region CNN ------------------------------------------------------------------

def image_labels(examples: Sequence[VQAExample], colours: Sequence[str]) -> dict[int, tuple[str | None, str | None]]:
    """image_id -> (shape, colour) read off the questions and answers: an answer that is a shape or
    colour word names it; a shape/colour word in a "what ..." question, or in a yes/no question
    whose answer makes it present ("is there a red shape?" yes, "is there not a circle?" no), is
    present. The majority wins if questions disagree; None when nothing names it."""
    votes: dict[int, tuple[Counter, Counter]] = {}
    colour_set, shape_set = set(colours), set(SHAPES)
    for e in examples:
        shape_votes, colour_votes = votes.setdefault(e.image_id, (Counter(), Counter()))
        answer = e.multiple_choice_answer or (e.answers[0] if e.answers else "")
        words = re.findall(r"[a-z]+", e.question.lower())
        if answer in ("yes", "no"):
            negated = "not" in words or words[:2] == ["is", "no"]
            present = (answer == "yes") != negated
        else:
            present = True
            if answer in shape_set:
                shape_votes[answer] += 1
            elif answer in colour_set:
                colour_votes[answer] += 1
        if present:
            shape_votes.update(w for w in words if w in shape_set)
            colour_votes.update(w for w in words if w in colour_set)
    return {i: (s.most_common(1)[0][0] if s else None, c.most_common(1)[0][0] if c else None)
            for i, (s, c) in votes.items()}


# --- the region CNN -----------------------------------------------------------------------------

def _training_images(images: dict[int, np.ndarray],
                     labels: dict[int, tuple[str | None, str | None]]) -> list[GenomeImage]:
    """One Visual Genome-style image per labelled training image: its foreground box named by the
    shape, with the colour as its attribute (the form `genome_training_regions` takes)."""
    out = []
    for image_id, (shape, colour) in sorted(labels.items()):
        if shape is None or image_id not in images:
            continue
        im = images[image_id]
        out.append(GenomeImage(image_id, im.shape[1], im.shape[0], objects=(
            GenomeObject(1, foreground_box(im), (shape,), attributes=(colour,) if colour else ()),)))
    return out


def train_extractor(images: dict[int, np.ndarray], labels: dict[int, tuple[str | None, str | None]], *,
                    colours: Sequence[str], init: str = DEFAULT_EXTRACTOR, epochs: int = EXTRACTOR_EPOCHS,
                    seed: int = 0, progress: Callable[[str], None] | None = None, log: list | None = None):
    """The region CNN for easy-VQA, trained on the answer-derived labels of `images` (training
    images only). `init="scratch"` trains it from random weights; `init="world"` starts from the
    synthetic world's region CNN (its conv, geometry and feature layers) with new heads."""
    from vlmt.data.features.extractor import RegionExtractor, genome_training_regions, train_region_extractor

    if init not in EXTRACTORS:
        raise ConfigError(f"easy-VQA extractor: unknown initialisation {init!r}; one of {', '.join(EXTRACTORS)}")
    genome = _training_images(images, labels)
    if not genome:
        raise DataError("easy_vqa", "no training image has a shape named by its questions")
    regions = genome_training_regions(genome, SHAPES, list(colours), seed=seed)
    pixels = [images[g.image_id] for g in genome]
    if init == "scratch":
        return train_region_extractor(pixels, regions, object_names=SHAPES, attribute_names=list(colours),
                                      feature_dim=FEATURE_DIM, epochs=epochs, seed=seed, log=log)
    from vlmt.data.synth.cache import ensure_world

    world = RegionExtractor.load(ensure_world("default", 0, progress=progress) / "region_extractor")
    return fine_tune_extractor(world, pixels, regions, object_names=SHAPES, attribute_names=list(colours),
                               epochs=epochs, seed=seed, log=log)


def fine_tune_extractor(base, images: Sequence[np.ndarray], regions: Sequence, *, object_names: Sequence[str],
                        attribute_names: Sequence[str], epochs: int = EXTRACTOR_EPOCHS, batch_size: int = 128,
                        lr: float = 1e-3, seed: int = 0, log: list | None = None):
    """A copy of `base` (a RegionExtractor) with fresh object/attribute heads for the new label
    names, all weights then trained on `regions` with the loss `train_region_extractor` uses
    (cross-entropy over objects + background, BCE over attributes of object regions)."""
    from vlmt.data.features.extractor import RegionCNN, RegionExtractor, fit_region_cnn

    cfg = base.model.config
    with seeded(seed):
        gen = torch.Generator().manual_seed(seed)
        model = RegionCNN(num_objects=len(object_names), num_attributes=len(attribute_names),
                          feature_dim=cfg.feature_dim, crop_size=cfg.crop_size, channels=cfg.channels, crop=cfg.crop)
        trunk = {k: v for k, v in base.model.state_dict().items()
                 if not k.startswith(("object_head", "attribute_head"))}
        model.load_state_dict(trunk, strict=False)
        if epochs > 0:
            fit_region_cnn(model, images, regions, num_attributes=len(attribute_names), epochs=epochs,
                           batch_size=batch_size, lr=lr, generator=gen, log=log)
    return RegionExtractor(model, object_names, attribute_names)


# --- VQA files ----------------------------------------------------------------------------------

def question_type(question: str) -> str:
    """A VQA-style question type: the question's first three words ("what color is", "is there a")."""
    return " ".join(re.findall(r"[a-z]+", question.lower())[:3])


def write_vqa_v2(out: Path, subtype: str, examples: Sequence[VQAExample]) -> None:
    """VQA v2 open-ended questions + annotations of one split; each answer 10 times (confidence yes)."""
    questions = [{"image_id": e.image_id, "question": e.question, "question_id": e.question_id} for e in examples]
    annotations = [{
        "question_type": question_type(e.question),
        "multiple_choice_answer": e.multiple_choice_answer,
        "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": n + 1} for n, a in enumerate(e.answers)],
        "image_id": e.image_id,
        "answer_type": "yes/no" if e.multiple_choice_answer in ("yes", "no") else "other",
        "question_id": e.question_id,
    } for e in examples]
    write_json(out / f"v2_OpenEnded_mscoco_{subtype}_questions.json",
               {"info": VQA_INFO, "task_type": "Open-Ended", "data_type": "mscoco", "license": VQA_LICENSE,
                "data_subtype": subtype, "questions": questions}, indent=None)
    write_json(out / f"v2_mscoco_{subtype}_annotations.json",
               {"info": VQA_INFO, "license": VQA_LICENSE, "data_subtype": subtype, "data_type": "mscoco",
                "annotations": annotations}, indent=None)


def split_train(image_ids: Sequence[int], *, fraction: float = VAL_FRACTION, seed: int = SPLIT_SEED) -> set[int]:
    """The image ids of the package's train split that become the validation split."""
    ids = np.array(sorted(set(image_ids)), dtype=np.int64)
    n_val = int(round(len(ids) * fraction))
    return set(np.random.default_rng(seed).permutation(ids)[:n_val].tolist())


# --- the whole conversion -----------------------------------------------------------------------

def _config(limit: int | None, extractor: str) -> dict:
    return {"version": EASY_VQA_VERSION, "limit": limit, "extractor": extractor, "val_fraction": VAL_FRACTION,
            "split_seed": SPLIT_SEED, "feature_dim": FEATURE_DIM, "extractor_epochs": EXTRACTOR_EPOCHS}


def _finished(folder: Path, config: dict) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if manifest.get("config") != config:
        raise ConfigError(f"{folder}: holds easy-VQA converted with {manifest.get('config')}, not {config}; "
                          "use another folder")
    return True


def ensure_easy_vqa(progress: Callable[[str], None] | None = None, out: str | os.PathLike | None = None, *,
                    limit: int | None = None, extractor: str = DEFAULT_EXTRACTOR) -> Path:
    """Folder of easy-VQA converted to the synthetic world's layout (see the module docstring),
    converted on first use and reused afterwards.

    `out` places it in a chosen folder instead of the cache; `limit` keeps only the first `limit`
    images of each package split (tests); `extractor` picks the region CNN's initialisation.
    The folder is built under a temporary name and renamed when complete, under a lock so that
    concurrent callers convert once.
    """
    folder = Path(out) if out is not None else easy_vqa_dir(limit=limit, extractor=extractor)
    if limit is not None and limit < 2:
        raise ConfigError("easy-VQA limit: need at least 2 images per split")
    config = _config(limit, extractor)
    if extractor not in EXTRACTORS:
        raise ConfigError(f"easy-VQA extractor: unknown initialisation {extractor!r}; one of {', '.join(EXTRACTORS)}")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: must be a folder, this is a file")
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_path = folder.parent / f".{folder.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _finished(folder, config):
                (progress or (lambda m: None))(f"reusing converted easy-VQA in {folder}")
                return folder
            if folder.exists() and any(folder.iterdir()):
                raise ConfigError(f"{folder}: folder is not empty and holds no converted easy-VQA; use an empty folder")
            tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                _convert(tmp, config, progress or (lambda m: None))
                if folder.exists():
                    folder.rmdir()  # empty (checked above)
                os.replace(tmp, folder)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return folder


def _convert(out: Path, config: dict, say: Callable[[str], None]) -> None:
    from vlmt.data.features.writer import FeatureStoreWriter

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    root = reader.package_root()
    answers = reader.read_answers(root)
    colours = [a for a in answers if a not in SHAPES and a not in ("yes", "no")]
    limit = config["limit"]
    examples: dict[str, list[VQAExample]] = {}
    for split in reader.SPLITS:
        exs = reader.read_easy_vqa(split, root=root)
        if limit is not None:
            keep = {reader.SPLIT_OFFSET[split] + n for n in range(limit)}
            exs = [e for e in exs if e.image_id in keep]
        examples[split] = exs
    val_images = split_train([e.image_id for e in examples["train"]])
    splits = {"train": [e for e in examples["train"] if e.image_id not in val_images],
              "val": [e for e in examples["train"] if e.image_id in val_images],
              "test": examples["test"]}
    for split, exs in splits.items():
        write_vqa_v2(out, SUBTYPES[split], exs)
    say("wrote VQA v2 files: " + ", ".join(f"{s} {len(e)} questions" for s, e in splits.items()))

    t = time.perf_counter()
    images: dict[int, np.ndarray] = {}
    source_split = {}
    for split, exs in examples.items():
        for image_id in sorted({e.image_id for e in exs}):
            src = reader.image_path(split, image_id, root=root)
            dst = out / "images" / f"{image_id}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            images[image_id] = load_image(dst)
            source_split[image_id] = split
    timings["images"] = time.perf_counter() - t
    say(f"copied {len(images)} images")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: threads cost more than they give on few cores
    try:
        t = time.perf_counter()
        labels = image_labels(splits["train"], colours)  # training images only: val and test stay unseen
        log: list = []
        extractor = train_extractor(images, labels, colours=colours, init=config["extractor"],
                                    epochs=config["extractor_epochs"], progress=say, log=log)
        extractor.save(out / "region_extractor")
        timings["train_extractor"] = time.perf_counter() - t
        say(f"trained the region CNN ({config['extractor']}, {len(log)} epochs, final loss {log[-1]['loss']:.4f})")

        t = time.perf_counter()
        ids = sorted(images)
        with FeatureStoreWriter(out / "features", feature_dim=extractor.feature_dim) as writer:
            for start in range(0, len(ids), 512):
                chunk = ids[start:start + 512]
                boxes = [proposals(images[i]) for i in chunk]
                feats = extractor.extract([images[i] for i in chunk], boxes)
                for i, b, f in zip(chunk, boxes, feats):
                    h, w = images[i].shape[:2]
                    writer.add(i, boxes=b, features=f, width=w, height=h)
        timings["features"] = time.perf_counter() - t
        say(f"extracted features of {len(ids)} images")
    finally:
        torch.set_num_threads(threads)

    labelled = sum(s is not None for s, _ in labels.values())
    timings["total"] = time.perf_counter() - t0
    manifest = {
        "dataset": "easy-VQA", "config": config, "subtypes": SUBTYPES,
        "images": {s: len({e.image_id for e in exs}) for s, exs in splits.items()},
        "questions": {s: len(exs) for s, exs in splits.items()},
        "answers": answers, "shapes": list(SHAPES), "colours": colours,
        "extractor_training_images": labelled, "extractor_log": log,
        "regions_per_image": REGIONS_PER_IMAGE, "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    with atomic_write(out / "README.md", "w", encoding="utf-8") as f:
        f.write(_readme(manifest))
    write_json(out / MANIFEST, manifest)  # written last: its presence marks a complete folder


def _readme(m: dict) -> str:
    return f"""# easy-VQA in the VQA v2 format (vlmt)

Converted from the `easy-vqa` package: one coloured shape per 64x64 PNG, 13 answers.

- Splits (VQA subtypes {', '.join(f'{k} -> {v}' for k, v in m['subtypes'].items())}): images {m['images']},
  questions {m['questions']}. val is carved from the package's train split by image
  (fraction {m['config']['val_fraction']}, seed {m['config']['split_seed']}); test is the package's test split.
- Each question's one answer is written as 10 identical annotator answers.
- Image ids: train images keep their PNG number, test images are 1000000 + their PNG number
  (`images/<image_id>.png`).
- Region features (`features/`): 6 boxes per image (foreground box from the pixels, whole image,
  four quadrants), {m['config']['feature_dim']}-d, from the region CNN in `region_extractor/`
  ({m['config']['extractor']} initialisation, trained on the shapes and colours named by the
  answers of {m['extractor_training_images']} training images).
"""
