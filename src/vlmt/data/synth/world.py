"""`generate(size, out, seed)`: the whole synthetic world, written in the official formats.

Stages (each output is written atomically; a rerun into the same folder with the same size and
seed skips what is already there, so an interrupted run resumes):

1. sample scenes (per image, from its own random stream: independent of order and resumable)
2. render images/<id>.png
3. language: VQA v2 + v1 multiple-choice files, Karpathy captions, Flickr30k Entities
4. Visual Genome files for the disjoint Genome-like images, and the hypernym file
5. with `proposals="detector"`, train the detector on the Genome-like training boxes
   (`detector/`); then the region CNN on Genome-like training regions (`region_extractor/`):
   the true boxes and jittered copies (oracle), or the detector's own boxes on those pictures
   labelled by the true box they overlap most (detector)
6. proposals for every image + features into the feature store (`features/`)
7. `world.json` (what was made, counts, rarity statistics) and `README.md`

Proposals (stage 6) come one of two ways (`PROPOSAL_METHODS`):
- "detector": the boxes `vlmt.data.features.detector` finds in the pixels, the way the papers'
  regions come from a detector trained on Visual Genome; no split's true boxes enter any
  feature (the detector learns only from the Genome-like training split).
- "oracle": every image's true boxes, jittered copies and random boxes
  (`vlmt.data.synth.proposals`); test features then contain the test annotations. For ablation
  only: name it (`world:<size>:<seed>:oracle`, `--proposals oracle`).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from vlmt.data.features.extractor import BACKGROUND_IOU, FOREGROUND_IOU
from vlmt.data.synth import taxonomy as tx
from vlmt.data.synth import writers
from vlmt.data.synth.language import Caption, Question, captions, questions
from vlmt.data.synth.proposals import make_proposals
from vlmt.data.synth.render import png_bytes, render
from vlmt.data.synth.scene import Scene, sample_scene
from vlmt.errors import ConfigError
from vlmt.io import atomic_write, write_json

WORLD_VERSION = 1
SPLITS = ("train", "val", "test")
VQA_SUBTYPES = {"train": "train2014", "val": "val2014", "test": "test2015"}
GENOME_ID_OFFSET = 1_000_000
DATASET_NAME = "synth"
PROPOSAL_METHODS = ("oracle", "detector")
# how a world's regions are proposed when nothing says otherwise (`world:<size>`, `vlmt data synth`)
DEFAULT_PROPOSALS = "detector"
DETECTOR_STEPS = 400  # detector updates of 16 pictures (about a minute of one core); more in detector1200, sharp
DETECTOR_LR = 3e-3    # the detector's peak learning rate (one-cycle schedule)


@dataclass(frozen=True)
class WorldSize:
    """How much to generate."""

    main: tuple[int, int, int]      # images per split (train, val, test) for VQA / captions / grounding
    genome: tuple[int, int, int]    # Genome-like images per split (disjoint from the main images)
    questions_per_image: int
    image_size: int = 128
    proposals: int = 16             # regions per image in the feature store
    feature_dim: int = 128
    extractor_epochs: int = 8
    train_captions: int = 5         # captions written per training picture (val / test keep CAPTIONS_PER_IMAGE)
    detector_steps: int = DETECTOR_STEPS  # updates of the detector (detector proposals only)
    detector_lr: float = DETECTOR_LR      # its peak learning rate
    region_crop: str = "box"        # what the region CNN's crops show (`vlmt.data.features.extractor.CROPS`)
    crop_size: int = 24             # the crops' side in pixels


SIZES: dict[str, WorldSize] = {
    "tiny": WorldSize(main=(24, 8, 8), genome=(32, 4, 4), questions_per_image=4, feature_dim=64, extractor_epochs=10),
    "default": WorldSize(main=(560, 120, 120), genome=(320, 40, 40), questions_per_image=6),
    # `default` with 4x its training pictures (same val / test counts, Genome-like pictures, hence
    # detector and region CNN): retrieval memorises the default's 560 (docs/hierarchical.md)
    "train2240": WorldSize(main=(2240, 120, 120), genome=(320, 40, 40), questions_per_image=6),
    # `default`'s pictures with 20 captions per training picture (the first 5 are the default's):
    # whether retrieval memorises pictures or their few captions (docs/hierarchical.md)
    "captions20": WorldSize(main=(560, 120, 120), genome=(320, 40, 40), questions_per_image=6, train_captions=20),
    # `default` with a detector trained 3x longer: tighter boxes, the measured limit of retrieval
    # and grounding on detector regions (docs/synthetic_world.md)
    "detector1200": WorldSize(main=(560, 120, 120), genome=(320, 40, 40), questions_per_image=6, detector_steps=1200),
    # `default` with a detector trained 6x longer and square region crops (the object's own aspect,
    # whatever the box's): detector regions within the seed spread of the true boxes on retrieval
    "sharp": WorldSize(main=(560, 120, 120), genome=(320, 40, 40), questions_per_image=6, detector_steps=2400,
                       region_crop="square", crop_size=32),
}
CAPTIONS_PER_IMAGE = 5  # captions of a val / test picture (COCO's and Flickr30k's five)
TEST_SUFFIX = re.compile(r"^(?P<base>.+)-test(?P<n>[0-9]+)$")


# added after worlds were cached: left out of a marker at their defaults
_LATER_FIELDS = ("train_captions", "detector_steps", "detector_lr", "region_crop", "crop_size")


def spec_of(size: WorldSize) -> dict[str, Any]:
    """A size as its folder's marker and manifest record it. Fields added later (`train_captions`,
    `detector_steps`, `detector_lr`, `region_crop`, `crop_size`) are left out at their defaults, so the worlds
    written before they existed keep matching their own size."""
    spec = asdict(size)
    for name in _LATER_FIELDS:
        if spec[name] == WorldSize.__dataclass_fields__[name].default:
            del spec[name]
    return spec


def world_size(name: str) -> WorldSize:
    """The size a name stands for: one of SIZES, or `<size>-test<N>`, that size with N test images.

    Why: retrieval at a benchmark's scale (COCO's 1K test: 1,000 images x 5,000 captions) needs a
    larger test split and nothing else. Main image ids run train, val, then test, and every scene,
    caption and question comes from its image id's own random stream, so `<size>-test<N>` keeps
    the train and val images, the Genome-like images (hence the region CNN) of `<size>` exactly,
    and its first test images too; only the test split differs."""
    match = TEST_SUFFIX.match(name)
    base = match.group("base") if match else name
    if base not in SIZES:
        raise ConfigError(f"unknown world size {name!r}; choose one of {', '.join(SIZES)}, "
                          f"or <size>-test<N> for N test images (e.g. default-test1000)")
    size = SIZES[base]
    if match is None:
        return size
    n = int(match.group("n"))
    train, val, _ = size.main
    if not 1 <= n < GENOME_ID_OFFSET - train - val:
        raise ConfigError(f"world size {name!r}: the number of test images must be between 1 and "
                          f"{GENOME_ID_OFFSET - train - val - 1}, got {n}")
    return replace(size, main=(train, val, n))


@dataclass
class World:
    """Everything generated, in memory (what the files hold, plus the scene graphs)."""

    seed: int
    size: WorldSize
    scenes: dict[int, Scene]
    split_of: dict[int, str]                    # main image id -> split
    genome_split_of: dict[int, str]             # genome image id -> split
    captions: dict[int, list[Caption]]
    questions: dict[int, list[Question]]

    def main_ids(self, split: str | None = None) -> list[int]:
        return [i for i, s in self.split_of.items() if split is None or s == split]

    def genome_ids(self, split: str | None = None) -> list[int]:
        return [i for i, s in self.genome_split_of.items() if split is None or s == split]


def _rng(seed: int, stream: int, image_id: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, image_id])


DETECTOR_DIR = "detector"
STREAM_SCENE, STREAM_CAPTIONS, STREAM_QUESTIONS, STREAM_PROPOSALS = range(4)


def build(size: WorldSize, seed: int) -> World:
    """Sample every scene, caption and question (no files)."""
    scenes: dict[int, Scene] = {}
    split_of: dict[int, str] = {}
    genome_split_of: dict[int, str] = {}
    next_id = 1
    for split, n in zip(SPLITS, size.main):
        banned = tx.RARITY.unseen_in_vqa_train if split == "train" else frozenset()
        for _ in range(n):
            scenes[next_id] = sample_scene(_rng(seed, STREAM_SCENE, next_id), image_id=next_id,
                                           image_size=size.image_size, family="main", banned_pairs=banned)
            split_of[next_id] = split
            next_id += 1
    gid = GENOME_ID_OFFSET + 1
    for split, n in zip(SPLITS, size.genome):
        for _ in range(n):
            scenes[gid] = sample_scene(_rng(seed, STREAM_SCENE, gid), image_id=gid, image_size=size.image_size,
                                       family="genome")
            genome_split_of[gid] = split
            gid += 1
    caps = {i: captions(scenes[i], _rng(seed, STREAM_CAPTIONS, i),
                        size.train_captions if split == "train" else CAPTIONS_PER_IMAGE)
            for i, split in split_of.items()}
    qs = {i: questions(scenes[i], _rng(seed, STREAM_QUESTIONS, i), size.questions_per_image) for i in split_of}
    return World(seed, size, scenes, split_of, genome_split_of, caps, qs)


def filename(image_id: int) -> str:
    return f"{image_id}.png"


class OtherWorldError(ConfigError):
    """The folder holds a world generated with another size, seed, method or definition."""

    def __init__(self, folder: Path, have: dict, want: dict):
        self.folder, self.have, self.want = folder, have, want
        super().__init__(f"{folder}: holds a synthetic world made with {have}, not {want}; "
                         "use an empty folder or the same --size and --seed")

    def differences(self) -> list[str]:
        """The marker's keys (spec fields as `spec.<field>`) whose values differ."""
        def flat(d: dict) -> dict:
            return {**{k: v for k, v in d.items() if k != "spec"},
                    **{f"spec.{k}": v for k, v in (d.get("spec") or {}).items()}}
        have, want = flat(self.have), flat(self.want)
        return sorted(k for k in have.keys() | want.keys() if have.get(k) != want.get(k))


def _check_folder(out: Path, config: dict) -> None:
    marker = out / ".synth_config.json"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: --out must be a folder, this is a file")
    if marker.exists():
        have = json.loads(marker.read_text(encoding="utf-8"))
        if have != config:
            raise OtherWorldError(out, have, config)
    elif out.exists() and any(p.name != ".synth_config.json" for p in out.iterdir()):
        raise ConfigError(f"{out}: folder is not empty and holds no synthetic world; use an empty folder")
    write_json(marker, config)


def _write_language(out: Path, w: World) -> None:
    for split in SPLITS:
        items = [(i, writers.question_id(i, k), q) for i in w.main_ids(split) for k, q in enumerate(w.questions[i])]
        writers.write_vqa(out, VQA_SUBTYPES[split], items)
    writers.write_karpathy(out / f"dataset_{DATASET_NAME}.json", DATASET_NAME,
                           [(i, filename(i), w.split_of[i], w.captions[i]) for i in w.main_ids()])
    entities = out / "flickr30k_entities"
    for i in w.main_ids():
        writers.write_entities(entities, w.scenes[i], filename(i), w.captions[i])
    for split in SPLITS:
        writers.write_id_list(entities / f"{split}.txt", w.main_ids(split))


def _write_genome(out: Path, w: World) -> None:
    genome = out / "visual_genome"
    writers.write_genome(genome, [w.scenes[i] for i in w.genome_ids()], {i: filename(i) for i in w.genome_ids()})
    write_json(genome / "splits.json", {s: w.genome_ids(s) for s in SPLITS})
    write_json(out / "hypernyms.json", tx.hypernym_table())


def _load_image(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def check_proposals(method: str | None) -> str:
    """The proposal method `method` names (None: DEFAULT_PROPOSALS); a ConfigError otherwise."""
    method = DEFAULT_PROPOSALS if method is None else method
    if method not in PROPOSAL_METHODS:
        raise ConfigError(f"unknown proposal method {method!r}; choose one of {', '.join(PROPOSAL_METHODS)}")
    return method


def detector_training_data(out: Path, w: World, load: Callable[[int], np.ndarray]):
    """(images, objects) for the detector: the Genome-like training split's boxes and first
    names, read back through the Visual Genome reader (the path real Visual Genome data takes)."""
    from vlmt.data.features.detector import DetectorBox
    from vlmt.data.readers.visual_genome import read_visual_genome

    vg = out / "visual_genome"
    train = set(w.genome_ids("train"))
    names = {n: k for k, n in enumerate(tx.SHAPES)}
    genome = [im for im in read_visual_genome(vg / "image_data.json", vg / "objects.json", vg / "attributes.json")
              if im.image_id in train]
    objects = [[DetectorBox((float(o.box[0]), float(o.box[1]), float(o.box[2]), float(o.box[3])),
                            names.get(o.names[0], -1) if o.names else -1)
                for o in im.objects] for im in genome]
    return [load(im.image_id) for im in genome], objects


def extractor_training_data(out: Path, w: World, load: Callable[[int], np.ndarray], detector=None):
    """(images, regions) for the region CNN, read back from the written Visual Genome files
    through the dataset reader (the path real Visual Genome data takes), training split only.
    Without a detector: every object's true box, a jittered copy and random background boxes
    (`genome_training_regions`, the oracle world). With one: the boxes `detector` finds in those
    pictures, each labelled by the true box it overlaps most, plus the true boxes
    (`proposal_training_regions`), so the CNN learns from the boxes it will be given."""
    from vlmt.data.features.extractor import genome_training_regions, proposal_training_regions
    from vlmt.data.readers.visual_genome import read_visual_genome

    vg = out / "visual_genome"
    train = set(w.genome_ids("train"))
    genome = [im for im in read_visual_genome(vg / "image_data.json", vg / "objects.json", vg / "attributes.json")
              if im.image_id in train]
    pictures = [load(im.image_id) for im in genome]
    if detector is None:
        return pictures, genome_training_regions(genome, tx.SHAPES, tx.ADJECTIVES, seed=w.seed)
    boxes, _ = detector.detect_batch(pictures)
    return pictures, proposal_training_regions(genome, boxes, tx.SHAPES, tx.ADJECTIVES)


def generate(size: str | WorldSize, out: str | Path, *, seed: int = 0, proposals: str | None = None,
             progress: Callable[[str], None] | None = None) -> dict:
    """Write the world into `out`; returns the manifest (also written to `out/world.json`).
    `size`: a size name (`world_size`) or a WorldSize; `proposals`: "detector" or "oracle"
    (None: DEFAULT_PROPOSALS), how the feature store's regions are found."""
    from vlmt.data.features.detector import DetectorConfig, ObjectDetector, train_detector
    from vlmt.data.features.extractor import RegionExtractor, train_region_extractor
    from vlmt.data.features.writer import FeatureStoreWriter

    try:
        method = check_proposals(proposals)
    except ConfigError as e:
        raise ConfigError(f"--proposals: {e}") from None

    name = size if isinstance(size, str) else "custom"
    if isinstance(size, str):
        try:
            size = world_size(size)
        except ConfigError as e:
            raise ConfigError(f"--size: {e}") from None
    out = Path(out)
    say = progress or (lambda msg: None)
    config = {"version": WORLD_VERSION, "size": name, "seed": seed, "spec": spec_of(size)}
    if method != "oracle":  # oracle worlds keep the marker they had before the method was a choice
        config["proposals"] = method
    config = json.loads(json.dumps(config))
    _check_folder(out, config)
    t0 = time.perf_counter()
    done = _finished_manifest(out, size, method)
    if done is not None:  # a complete world of this size and seed is already here: reuse it
        say("reusing the complete world already in the folder")
        return {**done, "timings_s": {"total": round(time.perf_counter() - t0, 3)}, "reused": True}
    timings: dict[str, float] = {}

    w = build(size, seed)
    timings["sample"] = time.perf_counter() - t0
    say(f"sampled {len(w.split_of)} VQA/caption images and {len(w.genome_split_of)} Genome-like images")

    t = time.perf_counter()
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    for i, scene in w.scenes.items():
        path = images_dir / filename(i)
        if not path.exists():
            with atomic_write(path, "wb") as f:
                f.write(png_bytes(render(scene)))
    timings["render"] = time.perf_counter() - t
    say(f"rendered {len(w.scenes)} images")

    t = time.perf_counter()
    _write_language(out, w)
    _write_genome(out, w)
    timings["write"] = time.perf_counter() - t
    say("wrote VQA, caption, Flickr30k Entities, Visual Genome and hypernym files")

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: threads cost more than they give on few cores
    try:
        load = lambda i: _load_image(images_dir / filename(i))  # noqa: E731
        detector: ObjectDetector | None = None
        if method == "detector":
            t = time.perf_counter()
            det_dir = out / DETECTOR_DIR
            if (det_dir / "detector.json").exists():
                detector = ObjectDetector.load(det_dir)
            else:
                imgs, objects = detector_training_data(out, w, load)
                detector = train_detector(imgs, objects, class_names=tx.SHAPES, steps=size.detector_steps, seed=seed,
                                          lr=size.detector_lr,
                                          config=DetectorConfig(num_classes=len(tx.SHAPES),
                                                                boxes_per_image=size.proposals))
                detector.save(det_dir)
            timings["train_detector"] = time.perf_counter() - t
            say(f"detector ready ({size.proposals} boxes per picture)")

        t = time.perf_counter()
        ext_dir = out / "region_extractor"
        log: list = []
        if (ext_dir / RegionExtractor.META).exists():
            extractor = RegionExtractor.load(ext_dir)
        else:
            imgs, regions = extractor_training_data(out, w, load, detector)
            extractor = train_region_extractor(imgs, regions, object_names=tx.SHAPES, attribute_names=tx.ADJECTIVES,
                                               feature_dim=size.feature_dim, epochs=size.extractor_epochs,
                                               crop_size=size.crop_size, crop=size.region_crop, seed=seed, log=log)
            extractor.save(ext_dir)
        timings["train_extractor"] = time.perf_counter() - t
        say(f"region CNN ready ({len(log)} epochs trained)")

        t = time.perf_counter()
        store_path = out / "features"
        if not (store_path / "header.json").exists():
            ids = sorted(w.scenes)
            with FeatureStoreWriter(store_path, feature_dim=extractor.feature_dim) as writer:
                for start in range(0, len(ids), 256):
                    chunk = ids[start:start + 256]
                    pictures = [load(i) for i in chunk]
                    if detector is not None:  # from the pixels alone
                        boxes, _ = detector.detect_batch(pictures)
                    else:
                        boxes = [make_proposals([o.box for o in w.scenes[i].objects], _rng(seed, STREAM_PROPOSALS, i),
                                                width=w.scenes[i].width, height=w.scenes[i].height,
                                                count=size.proposals)
                                 for i in chunk]
                    feats = extractor.extract(pictures, boxes)
                    for i, b, feat in zip(chunk, boxes, feats):
                        writer.add(i, boxes=b, features=feat, width=w.scenes[i].width, height=w.scenes[i].height)
        timings["features"] = time.perf_counter() - t
        say("extracted region features")
    finally:
        torch.set_num_threads(torch_threads)

    manifest = manifest_of(w, name, proposals_of(method, detector))
    write_json(out / "world.json", manifest)
    with atomic_write(out / "README.md", "w", encoding="utf-8") as f:
        f.write(readme(w, manifest))
    timings["total"] = time.perf_counter() - t0
    return {**manifest, "timings_s": {k: round(v, 3) for k, v in timings.items()}}


def proposals_of(method: str, detector=None) -> dict:
    """What world.json records about how the feature store's regions were found."""
    if method == "detector" and detector is not None:
        return {**detector.settings(), "trained_on": "Genome-like training split (boxes and names)",
                "region_cnn_trained_on": "the detector's boxes on the Genome-like training split, each "
                                         f"labelled by the true box it overlaps most (IoU >= {FOREGROUND_IOU}: "
                                         f"that object; < {BACKGROUND_IOU}: background; else unused), "
                                         "plus the true boxes",
                "true_boxes_in_features": False, "files": f"{DETECTOR_DIR}/"}
    return {"method": "oracle", "true_boxes_in_features": True,
            "what": "every true box, one jittered copy of each, random boxes (ablation only)"}


def _finished_manifest(out: Path, size: WorldSize, method: str = "oracle") -> dict | None:
    """The manifest of a complete world in `out` (every file of every stage present), else None."""
    from vlmt.data.features.detector import DETECTOR_META, DETECTOR_WEIGHTS
    from vlmt.data.features.extractor import RegionExtractor

    try:
        manifest = json.loads((out / "world.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    n_main, n_genome = sum(size.main), sum(size.genome)
    needed = [out / "README.md", out / "hypernyms.json", out / f"dataset_{DATASET_NAME}.json",
              out / "features" / "header.json", out / "region_extractor" / RegionExtractor.META,
              out / "region_extractor" / RegionExtractor.WEIGHTS]
    if method == "detector":
        needed += [out / DETECTOR_DIR / DETECTOR_META, out / DETECTOR_DIR / DETECTOR_WEIGHTS]
    needed += [out / "visual_genome" / f for f in ("objects.json", "attributes.json", "image_data.json", "splits.json")]
    for sub in VQA_SUBTYPES.values():
        needed += [out / f"v2_OpenEnded_mscoco_{sub}_questions.json", out / f"v2_mscoco_{sub}_annotations.json",
                   out / f"MultipleChoice_mscoco_{sub}_questions.json", out / f"mscoco_{sub}_annotations.json"]
    if not all(p.exists() for p in needed):
        return None
    counts = [sum(1 for _ in (out / d).glob(pattern)) for d, pattern in
              (("images", "*.png"), ("flickr30k_entities/Sentences", "*.txt"),
               ("flickr30k_entities/Annotations", "*.xml"))]
    return manifest if counts == [n_main + n_genome, n_main, n_main] else None


def rarity_statistics(w: World) -> dict:
    """Shape and adjective frequencies (fractions) in the Genome-like objects and in the VQA
    questions, and colour-shape pairs of the VQA training images."""
    genome_objects = [o for i in w.genome_ids() for o in w.scenes[i].objects]
    gs = Counter(o.shape for o in genome_objects)
    ga = Counter(a for o in genome_objects for a in o.attributes)
    qwords = Counter(word.strip("?") for i in w.main_ids() for q in w.questions[i] for word in q.text.lower().split())
    qwords.update(q.answer for i in w.main_ids() for q in w.questions[i])
    n_g = max(1, len(genome_objects))
    n_q = max(1, sum(len(w.questions[i]) for i in w.main_ids()))
    pairs = Counter((o.colour, o.shape) for i in w.main_ids("train") for o in w.scenes[i].objects)
    return {
        "genome_object_fraction": {s: gs[s] / n_g for s in tx.SHAPES},
        "genome_attribute_fraction": {a: ga[a] / n_g for a in tx.ADJECTIVES},
        "questions_mentioning": {wd: (qwords[wd] + qwords[tx.plural(wd)] if wd in tx.SHAPES else qwords[wd]) / n_q
                                 for wd in tx.SHAPES + tx.ADJECTIVES},
        "unseen_pairs_in_vqa_train": {f"{c} {s}": pairs[(c, s)] for c, s in sorted(tx.RARITY.unseen_in_vqa_train)},
    }


def manifest_of(w: World, name: str, proposals: dict | None = None) -> dict:
    proposals = proposals or proposals_of("oracle")
    files = {"detector": proposals["files"]} if "files" in proposals else {}
    return {
        "world": "vlmt synthetic world", "version": WORLD_VERSION, "size": name, "seed": w.seed,
        "spec": spec_of(w.size), "proposals": {k: v for k, v in proposals.items() if k != "files"},
        "images": {s: len(w.main_ids(s)) for s in SPLITS},
        "genome_images": {s: len(w.genome_ids(s)) for s in SPLITS},
        "questions": {s: sum(len(w.questions[i]) for i in w.main_ids(s)) for s in SPLITS},
        "captions_per_image": CAPTIONS_PER_IMAGE,
        "vqa_subtypes": VQA_SUBTYPES,
        "files": {
            "images": "images/<image_id>.png",
            "vqa_questions": "v2_OpenEnded_mscoco_<subtype>_questions.json",
            "vqa_annotations": "v2_mscoco_<subtype>_annotations.json",
            "vqa_multiple_choice": "MultipleChoice_mscoco_<subtype>_questions.json",
            "vqa_v1_annotations": "mscoco_<subtype>_annotations.json",
            "captions": f"dataset_{DATASET_NAME}.json",
            "entities": "flickr30k_entities/{Sentences,Annotations}/<image_id>.{txt,xml}, <split>.txt",
            "genome": "visual_genome/{objects,attributes,image_data}.json, splits.json",
            "hypernyms": "hypernyms.json",
            "features": "features/ (vlmt feature store)",
            "region_extractor": "region_extractor/",
            **files,
        },
        "vocabulary": {"shapes": list(tx.SHAPES), "colours": list(tx.COLOURS), "sizes": list(tx.SIZES),
                       "textures": list(tx.TEXTURES)},
        "rarity": {
            "genome_rare_nouns": list(tx.GENOME_RARE_NOUNS), "genome_rare_adjectives": list(tx.GENOME_RARE_ADJECTIVES),
            "vqa_rare_nouns": list(tx.VQA_RARE_NOUNS), "vqa_rare_adjectives": list(tx.VQA_RARE_ADJECTIVES),
            "unseen_in_vqa_train": sorted(f"{c} {s}" for c, s in tx.RARITY.unseen_in_vqa_train),
            "statistics": rarity_statistics(w),
        },
    }


def readme(w: World, manifest: dict) -> str:
    m = manifest
    return f"""# vlmt synthetic world ({m['size']}, seed {m['seed']})

Scenes of 2-6 simple objects on a plain background, rendered to {w.size.image_size}x{w.size.image_size} PNG,
with every annotation derived from the scene graph, so the ground truth is known exactly.

- VQA / caption / grounding images: {m['images']} (train / val / test, disjoint)
- Visual Genome-like images (disjoint from the above): {m['genome_images']}
- Questions: {m['questions']} (types: colour, shape, count, yes/no existence, relation, size);
  10 human-style answers each (synonyms and mistakes included), and 18 multiple choices.
- Captions: 5 per image; every noun phrase is linked to its boxes in `flickr30k_entities/`.

## Vocabulary
- Shapes: {', '.join(tx.SHAPES)} (is-a hypernyms in `hypernyms.json`, e.g. square -> rectangle ->
  quadrilateral -> polygon -> shape -> object).
- Colours: {', '.join(tx.COLOURS)}; sizes: {', '.join(tx.SIZES)}; textures: {', '.join(tx.TEXTURES)}.
- Relations (computed from the boxes): left of, right of, above, below, next to.

## Controlled rarity
- Rare in the Genome-like split, frequent in VQA: {', '.join(tx.GENOME_RARE_NOUNS + tx.GENOME_RARE_ADJECTIVES)}.
- Frequent in the Genome-like split, rare in VQA: {', '.join(tx.VQA_RARE_NOUNS + tx.VQA_RARE_ADJECTIVES)}.
- Colour-shape pairs never in the VQA training images: {', '.join(m['rarity']['unseen_in_vqa_train'])}.

## Files
{chr(10).join(f'- {k}: `{v}`' for k, v in m['files'].items())}

VQA split names follow the COCO convention: {', '.join(f'{k} -> {v}' for k, v in VQA_SUBTYPES.items())}
(annotations are written for every split, test included, since the ground truth is known).
Region features: {w.size.proposals} proposals per image ({_proposal_words(m['proposals'])}),
{w.size.feature_dim}-dim features from a small CNN trained on the Genome-like training regions
(`region_extractor/`).

Regenerate with `vlmt data synth --size {m['size']} --seed {m['seed']}{_proposal_flag(m['proposals'])} --out DIR`;
`world.json` holds
the counts and the measured rarity statistics.
"""


def _proposal_words(p: dict) -> str:
    if p.get("method") == "detector":
        return ("the boxes the detector in `detector/` finds in the pixels; it was trained on the "
                "Genome-like training boxes only, so no true box enters any feature")
    return "the true boxes, one jittered copy of each, random boxes: an oracle, for ablation"


def _proposal_flag(p: dict) -> str:
    method = p.get("method", "oracle")
    return "" if method == DEFAULT_PROPOSALS else f" --proposals {method}"
