"""The papers' datasets at their published sizes, from files to a training step.

Writes VQA v2 and v1 (multiple choice), COCO with Karpathy's splits, Flickr30k Entities and
Visual Genome in their official layouts at the published counts times `--scale` (random but
valid contents; COCO and Genome image ids in their real ranges, Genome's from 1), plus
paper-shaped feature stores (36 regions x 2048-d, float16, features as sparse files), then
measures, each stage in its own process (peak memory = that process's maximum RSS):

  validate   `vlmt data validate` on each config's folder
  build      each config's data section (hierarchical_paper, svlr_paper, composed_paper: both
             folders' files in one, composed/), without the validation it would run first (measured above)
  train      per task: input pipeline examples/s (a cold first pass, then train.num_workers 0 and 2
             over the same batches with their pages cached), a few training
             steps at the paper's batch sizes and dimensions with the step's FLOPs, checkpoint
             save / load and size, and evaluation at paper size extrapolated from a measured subset

    python benchmarks/paper_scale.py --scale 0.01                # a quick run (about a minute)
    python benchmarks/paper_scale.py --scale 1 --json out.json   # full size (tens of minutes)

Every figure printed is measured, except the ones labelled "extrapolated" (from the measured
subset's rate) and "projected" (GPU time from FLOPs at a stated rate).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from vlmt.cli import at_least
from vlmt.errors import ConfigError, reports_errors

REPO = Path(__file__).resolve().parents[1]

# published sizes
VQA2 = {"train2014": 443_757, "val2014": 214_354, "test2015": 447_793}
VQA1 = {"train2014": 248_349, "val2014": 121_512}
COCO_IMAGES = {"train2014": 82_783, "val2014": 40_504, "test2015": 81_434}
KARPATHY = {"test": 5_000, "val": 5_000}  # of val2014; the rest of val2014 is restval, train2014 is train
FLICKR_IMAGES, FLICKR_SENTENCES, FLICKR_HELD = 31_783, 158_915, 1_000  # val and test: 1,000 images each
GENOME_IMAGES, GENOME_OBJECTS, GENOME_MAX_ID, GENOME_WITH_COCO = 108_077, 3_800_000, 2_417_997, 51_208
COCO_MAX_ID = 581_929
GENOME_OFFSET = 1_000_000_000  # data.datasets.genome.id_offset: Genome keys in the shared SVLR store
REGIONS, FEATURE_DIM = 36, 2048
H100_DENSE_TFLOPS = 989.0  # H100 SXM dense bf16 tensor-core peak, TFLOP/s
H100_UTILISATION = 0.30    # assumed model FLOP utilisation for these small-batch models
WORDS = [f"w{i}" for i in range(6_000)]
COLOURS = ["red", "blue", "green", "white", "black", "yellow", "brown", "grey"]
ANSWERS = ["yes", "no", *[str(i) for i in range(20)], *COLOURS, *WORDS[:3_000]]
NAMES = WORDS[:4_000]
YES_NO, NUMBERS, OTHER = ["yes", "no"], [str(k) for k in range(10)], ANSWERS[22:]
ATTRIBUTES = COLOURS + WORDS[4_000:5_000]


def scaled(n: int, scale: float, low: int = 10) -> int:
    return max(low, int(round(n * scale)))


# ----------------------------------------------------------------------------- writing

class JsonArrayWriter:
    """Writes `{header..., key: [records]}` (or a bare list with key None) record by record."""

    def __init__(self, path: Path, key: str | None, header: dict[str, Any] | None = None):
        self.f = open(path, "w", encoding="utf-8")
        self.first = True
        self.key = key
        if key is None:
            self.f.write("[")
        else:
            head = json.dumps(header or {})[1:-1]
            self.f.write("{" + (head + ", " if head else "") + json.dumps(key) + ": [")

    def add(self, record: Any) -> None:
        self.f.write(("" if self.first else ",\n") + json.dumps(record, separators=(",", ":")))
        self.first = False

    def close(self) -> None:
        self.f.write("]" if self.key is None else "]}")
        self.f.close()


_CUMULATIVE: dict[int, list[float]] = {}


def zipf_choice(rng: random.Random, items: list[str], n: int) -> list[str]:
    """n draws from `items` with weight 1/rank (long-tailed, as real labels and answers are)."""
    cum = _CUMULATIVE.get(id(items))
    if cum is None or len(cum) != len(items):
        cum = _CUMULATIVE[id(items)] = list(np.cumsum([1.0 / (i + 1) for i in range(len(items))]))
    return rng.choices(items, cum_weights=cum, k=n)


def distinct_ids(rng: np.random.Generator, n: int, high: int, *, must: tuple[int, ...] = ()) -> np.ndarray:
    ids = rng.choice(np.arange(1, high + 1), size=n, replace=False)
    for k, m in enumerate(must):
        if m not in ids:
            ids[k] = m
    return np.sort(ids)


def write_vqa(root: Path, rng: random.Random, images: dict[str, np.ndarray], counts: dict[str, int], *,
              multiple_choice: bool) -> None:
    """Question (and, for train / val, annotation) files of VQA v2 open-ended or v1 multiple choice."""
    for subtype, n in counts.items():
        ids = images[subtype]
        prefix = "MultipleChoice_mscoco" if multiple_choice else "v2_OpenEnded_mscoco"
        task = "Multiple-Choice" if multiple_choice else "Open-Ended"
        head = {"info": {"description": "paper_scale benchmark"}, "license": {"name": "none"},
                "task_type": task, "data_type": "mscoco", "data_subtype": subtype}
        q = JsonArrayWriter(root / f"{prefix}_{subtype}_questions.json", "questions", head)
        a = None
        if subtype != "test2015":
            name = f"mscoco_{subtype}_annotations.json" if multiple_choice else f"v2_mscoco_{subtype}_annotations.json"
            a = JsonArrayWriter(root / name, "annotations", {k: v for k, v in head.items() if k != "task_type"})
        per_image = max(1, math.ceil(n / len(ids)))
        for i in range(n):
            image_id = int(ids[i // per_image % len(ids)])
            qid = image_id * 1000 + i % per_image
            kind = rng.random()
            if kind < 0.38:
                text, atype, qtype, pool = f"is there a {rng.choice(NAMES)} ?", "yes/no", "is there a", YES_NO
            elif kind < 0.5:
                text, atype, qtype, pool = f"how many {rng.choice(NAMES)} are there ?", "number", "how many", NUMBERS
            else:
                text, atype, qtype, pool = f"what color is the {rng.choice(NAMES)} ?", "other", "what color is the", \
                    OTHER
            answers = zipf_choice(rng, pool, 10)
            record = {"image_id": image_id, "question": text, "question_id": qid}
            if multiple_choice:
                choices = list(dict.fromkeys([answers[0], *rng.sample(ANSWERS, 30)]))[:18]
                rng.shuffle(choices)
                record["multiple_choices"] = choices
            q.add(record)
            if a is not None:
                a.add({"question_id": qid, "image_id": image_id, "question_type": qtype, "answer_type": atype,
                       "multiple_choice_answer": answers[0],
                       "answers": [{"answer": ans, "answer_confidence": "yes", "answer_id": j + 1}
                                   for j, ans in enumerate(answers)]})
        q.close()
        if a is not None:
            a.close()


def write_karpathy(root: Path, rng: random.Random, train: np.ndarray, val: np.ndarray, scale: float) -> None:
    test_n, val_n = (scaled(KARPATHY[s], scale, 5) for s in ("test", "val"))
    out = JsonArrayWriter(root / "dataset_coco.json", "images", {"dataset": "coco"})
    sentid = 0
    for imgid, (image_id, split, folder) in enumerate(
            [(i, "train", "train2014") for i in train] +
            [(i, "test" if k < test_n else "val" if k < test_n + val_n else "restval", "val2014")
             for k, i in enumerate(val)]):
        sentences = []
        for _ in range(5):
            tokens = ["a", *rng.choices(WORDS, k=rng.randint(6, 14))]
            sentences.append({"tokens": tokens, "raw": " ".join(tokens).capitalize() + ".", "imgid": imgid,
                              "sentid": sentid})
            sentid += 1
        out.add({"filepath": folder, "sentids": [s["sentid"] for s in sentences], "filename":
                 f"COCO_{folder}_{int(image_id):012d}.jpg", "imgid": imgid, "split": split,
                 "sentences": sentences, "cocoid": int(image_id)})
    out.close()


def write_entities(root: Path, rng: random.Random, scale: float) -> list[tuple[int, int, int]]:
    """Flickr30k Entities: Sentences/, Annotations/, train/val/test.txt; (id, w, h) of each image."""
    n = scaled(FLICKR_IMAGES, scale)
    held = scaled(FLICKR_HELD, scale, 2)
    ids = sorted(rng.sample(range(10_000_000, 9_999_999_999), n))
    (root / "Sentences").mkdir(parents=True)
    (root / "Annotations").mkdir()
    per_image = FLICKR_SENTENCES / FLICKR_IMAGES  # 5.0
    sizes = []
    entity = 1
    for image_id in ids:
        w, h = rng.randint(300, 500), rng.randint(300, 500)
        sizes.append((image_id, w, h))
        objects, lines = [], []
        ents = []
        for _ in range(rng.randint(2, 5)):
            ents.append(entity)
            x1, y1 = rng.randint(0, w // 2), rng.randint(0, h // 2)
            objects.append(f"<object><name>{entity}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
                           f"<xmax>{rng.randint(x1 + 10, w)}</xmax><ymax>{rng.randint(y1 + 10, h)}</ymax>"
                           f"</bndbox></object>")
            entity += 1
        for _ in range(int(per_image)):
            e1, e2 = rng.sample(ents, 2)
            lines.append(f"[/EN#{e1}/people A {rng.choice(NAMES)}] near [/EN#{e2}/other the "
                         f"{rng.choice(NAMES)} {rng.choice(NAMES)}] .")
        (root / "Sentences" / f"{image_id}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size>{''.join(objects)}</annotation>\n", encoding="utf-8")
    for split, part in (("test", ids[:held]), ("val", ids[held:2 * held]), ("train", ids[2 * held:])):
        (root / f"{split}.txt").write_text("".join(f"{i}\n" for i in part), encoding="utf-8")
    return sizes


def write_genome(root: Path, rng: random.Random, nrng: np.random.Generator, coco_ids: np.ndarray,
                 scale: float) -> dict[int, tuple[int, int, list[tuple[float, float, float, float]]]]:
    """image_data.json, objects.json, attributes.json at Genome's counts, ids from 1 in its real
    range; returns {id: (w, h, the first boxes)} for the feature store."""
    n = scaled(GENOME_IMAGES, scale)
    ids = distinct_ids(nrng, n, GENOME_MAX_ID, must=(1,))
    with_coco = set(nrng.choice(n, size=min(n, scaled(GENOME_WITH_COCO, scale)), replace=False).tolist())
    coco_pick = iter(nrng.choice(coco_ids, size=len(with_coco), replace=False).tolist())
    per_image = GENOME_OBJECTS / GENOME_IMAGES
    img = JsonArrayWriter(root / "image_data.json", None)
    obj = JsonArrayWriter(root / "objects.json", None)
    atr = JsonArrayWriter(root / "attributes.json", None)
    object_id = 1
    out = {}
    for k, image_id in enumerate(ids.tolist()):
        w, h = rng.randint(400, 800), rng.randint(300, 600)
        coco_id = next(coco_pick) if k in with_coco else None
        img.add({"width": w, "url": f"https://example.invalid/{image_id}.jpg", "height": h, "image_id": image_id,
                 "coco_id": coco_id, "flickr_id": None})
        objects, attrs, boxes = [], [], []
        for _ in range(int(per_image) + (rng.random() < per_image % 1)):
            x, y = rng.randint(0, w - 20), rng.randint(0, h - 20)
            bw, bh = rng.randint(10, w - x), rng.randint(10, h - y)
            names = zipf_choice(rng, NAMES, 1)
            objects.append({"object_id": object_id, "x": x, "y": y, "w": bw, "h": bh, "names": names,
                            "synsets": [f"{names[0]}.n.01"], "merged_object_ids": []})
            attrs.append({"object_id": object_id, "x": x, "y": y, "w": bw, "h": bh, "names": names,
                          "synsets": [f"{names[0]}.n.01"],
                          "attributes": zipf_choice(rng, ATTRIBUTES, rng.randint(0, 2))})
            boxes.append((float(x), float(y), float(x + bw), float(y + bh)))
            object_id += 1
        obj.add({"image_id": image_id, "objects": objects})
        atr.add({"image_id": image_id, "attributes": attrs})
        out[image_id] = (w, h, boxes[:REGIONS])
    for f in (img, obj, atr):
        f.close()
    hyp = {name: ["thing"] for name in NAMES[:2_000]}
    (root.parent / "hypernyms.json").write_text(json.dumps(hyp), encoding="utf-8")
    return out


def write_store(path: Path, images: list[tuple[int, int, int]], nrng: np.random.Generator, *,
                known_boxes: dict[int, list] | None = None, dtype: str = "float16") -> None:
    """A feature store of the vlmt format with REGIONS boxes per image (Genome images: their own
    object boxes first) and FEATURE_DIM-d features left as a sparse file of zeros."""
    from vlmt.data.features.format import BOXES_FILE, RECORD_DTYPE, RECORDS_FILE

    path.mkdir(parents=True)
    n = len(images)
    rec = np.zeros(n, dtype=RECORD_DTYPE)
    rec["image_id"] = [i for i, _, _ in images]
    rec["start"] = np.arange(n) * REGIONS
    rec["count"] = REGIONS
    rec["width"] = [w for _, w, _ in images]
    rec["height"] = [h for _, _, h in images]
    rec.tofile(path / RECORDS_FILE)
    with open(path / BOXES_FILE, "wb") as f:
        for lo in range(0, n, 8192):
            chunk = images[lo:lo + 8192]
            wh = np.array([(w, h) for _, w, h in chunk], dtype=np.float32).repeat(REGIONS, axis=0)
            xy1 = nrng.uniform(0, 0.5, (len(wh), 2)).astype(np.float32) * wh
            xy2 = xy1 + nrng.uniform(0.1, 0.5, (len(wh), 2)).astype(np.float32) * wh
            boxes = np.concatenate([xy1, np.minimum(xy2, wh)], axis=1)
            if known_boxes:
                for k, (image_id, _, _) in enumerate(chunk):
                    own = known_boxes.get(image_id - GENOME_OFFSET)
                    if own and own[2]:
                        boxes[k * REGIONS:k * REGIONS + len(own[2])] = own[2]
            f.write(boxes.astype("<f4").tobytes())
    finish_store(path, rec, dtype)


def finish_store(path: Path, rec: np.ndarray, dtype: str = "float16") -> None:
    """The rest of a store whose records and boxes are written: features as a sparse file of
    zeros, the id index and the header."""
    from vlmt.data.features.format import (
        BOXES_LAYOUT,
        FEATURE_DTYPES,
        FEATURES_FILE,
        FORMAT_NAME,
        FORMAT_VERSION,
        HEADER_FILE,
        INDEX_DTYPE,
        INDEX_FILE,
        MIN_INDEX_BITS,
        RECORD_DTYPE,
    )
    from vlmt.data.features.index import fill_table

    n = len(rec)
    r = int(rec["count"].sum())
    with open(path / FEATURES_FILE, "wb") as f:
        f.truncate(r * FEATURE_DIM * FEATURE_DTYPES[dtype].itemsize)  # sparse: no disk blocks
    bits = max(MIN_INDEX_BITS, (2 * n - 1).bit_length())
    table = np.full((1 << bits, 2), -1, dtype=INDEX_DTYPE)
    fill_table(table, rec["image_id"].astype(np.int64), np.arange(n, dtype=np.int64), bits)
    table.tofile(path / INDEX_FILE)
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "feature_dim": FEATURE_DIM, "num_images": n,
              "num_regions": r, "index_slots": 1 << bits, "dtype": dtype, "byte_order": "little",
              "boxes": BOXES_LAYOUT, "record_fields": list(RECORD_DTYPE.names or ())}
    (path / HEADER_FILE).write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")


def write_all(out: Path, scale: float, seed: int = 0) -> dict[str, Any]:
    """Both config folders: hier/ (VQA v2, Karpathy COCO, Flickr30k Entities, two stores) and
    svlr/ (VQA v1 multiple choice, Visual Genome, hypernyms, one store with Genome under the offset)."""
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    counts = {k: scaled(v, scale) for k, v in COCO_IMAGES.items()}
    all_ids = distinct_ids(nrng, sum(counts.values()), COCO_MAX_ID)
    nrng.shuffle(all_ids)
    coco: dict[str, np.ndarray] = {}
    lo = 0
    for split, n in counts.items():
        coco[split] = np.sort(all_ids[lo:lo + n])
        lo += n
    sizes = {int(i): (rng.randint(400, 640), rng.randint(300, 480)) for i in all_ids.tolist()}
    timings = {}
    hier, svlr = out / "hier", out / "svlr"
    hier.mkdir(parents=True)
    (svlr / "visual_genome").mkdir(parents=True)

    def timed(name, fn):
        t = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - t, 1)
        return result

    timed("vqa v2", lambda: write_vqa(hier, rng, coco, {k: scaled(v, scale) for k, v in VQA2.items()},
                                      multiple_choice=False))
    timed("karpathy", lambda: write_karpathy(hier, rng, coco["train2014"], coco["val2014"], scale))
    flickr = timed("flickr30k entities", lambda: write_entities(hier / "flickr30k_entities", rng, scale))
    coco_images = [(i, *sizes[i]) for i in sorted(sizes)]
    timed("coco store", lambda: write_store(hier / "features", coco_images, nrng))
    timed("flickr30k store", lambda: write_store(hier / "features_flickr30k", flickr, nrng))
    timed("vqa v1", lambda: write_vqa(svlr, rng, coco, {k: scaled(v, scale) for k, v in VQA1.items()},
                                      multiple_choice=True))
    trainval = np.concatenate([coco["train2014"], coco["val2014"]])
    genome = timed("visual genome", lambda: write_genome(svlr / "visual_genome", rng, nrng, trainval, scale))
    svlr_images = [(int(i), *sizes[int(i)]) for i in trainval] + \
        [(GENOME_OFFSET + i, w, h) for i, (w, h, _) in genome.items()]
    timed("svlr store", lambda: write_store(svlr / "features", svlr_images, nrng, known_boxes=genome))
    timings["composed"] = write_composed(out)
    return {"seconds": timings, "disk_mb": {d.name: round(disk_bytes(d) / 1e6) for d in (hier, svlr)},
            "apparent_mb": {d.name: round(apparent_bytes(d) / 1e6) for d in (hier, svlr)},
            "counts": {"coco_images": {k: int(v) for k, v in counts.items()}, "flickr30k_images": len(flickr),
                       "genome_images": len(genome),
                       "vqa2_questions": {k: scaled(v, scale) for k, v in VQA2.items()},
                       "vqa1_questions": {k: scaled(v, scale) for k, v in VQA1.items()}}}


def write_composed(out: Path) -> float:
    """composed/ (`composed_paper.yaml`): both folders' files hard-linked into one, and one store with
    the COCO images of hier/features and the Genome images of svlr/features (under the offset),
    their records and boxes copied, features sparse. Returns the seconds it took."""
    from vlmt.data.features.format import BOXES_FILE, RECORD_DTYPE, RECORDS_FILE

    t = time.perf_counter()
    folder = out / "composed"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    for part in ("hier", "svlr"):  # hard links: the files are the same, validation walks real folders
        for base, dirs, files in os.walk(out / part):
            rel = Path(base).relative_to(out / part)
            if rel.parts[:1] == ("features",):
                continue
            (folder / rel).mkdir(exist_ok=True)
            for name in files:
                os.link(Path(base) / name, folder / rel / name)
    store = folder / "features"
    store.mkdir()
    parts = []
    for part, keep in (("hier", lambda ids: ids < GENOME_OFFSET), ("svlr", lambda ids: ids >= GENOME_OFFSET)):
        rec = np.fromfile(out / part / "features" / RECORDS_FILE, dtype=RECORD_DTYPE)
        boxes = np.fromfile(out / part / "features" / BOXES_FILE, dtype="<f4").reshape(-1, 4)
        rec = rec[keep(rec["image_id"])]
        rows = (rec["start"][:, None] + np.arange(REGIONS)).ravel()
        parts.append((rec.copy(), boxes[rows]))
    rec = np.concatenate([r for r, _ in parts])
    rec["start"] = np.arange(len(rec)) * REGIONS
    rec.tofile(store / RECORDS_FILE)
    np.concatenate([b for _, b in parts]).astype("<f4").tofile(store / BOXES_FILE)
    finish_store(store, rec)
    return round(time.perf_counter() - t, 1)


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def apparent_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- stages (child processes)

HIER_SETS = ["data.datasets.captions.file=dataset_coco.json", "data.datasets.entities.features=features_flickr30k",
             "data.datasets.entities.namespace=flickr30k", "data.check_files=false", "train.device=cpu"]
SVLR_SETS = [f"data.datasets.genome.id_offset={GENOME_OFFSET}", "data.check_files=false",
             "data.families.svlr.tagger=lexicon", "data.families.svlr.lemmatizer=rules",
             "data.families.svlr.question_parser=heuristic", "train.device=cpu"]
COMPOSED_SETS = [*HIER_SETS[:3], f"data.datasets.genome.id_offset={GENOME_OFFSET}", *SVLR_SETS[1:]]
CONFIGS = {"hierarchical_paper": ("hier", HIER_SETS), "svlr_paper": ("svlr", SVLR_SETS),
           "composed_paper": ("composed", COMPOSED_SETS)}
STAGES = ("validate", "build", "train")
VALIDATE = (("hier", 0), ("svlr", GENOME_OFFSET), ("composed", GENOME_OFFSET))
# training examples per epoch of each task (the projection's epochs)
EPOCH = {"retrieval": 413_915, "vqa": VQA2["train2014"], "grounding": 148_915}
EPOCHS = {"hierarchical_paper": EPOCH, "svlr_paper": {"vqa": VQA1["train2014"] - 12_072, "recognition": 0},
          "composed_paper": {**EPOCH, "recognition": 0}}


def run_child(args: list[str], timeout: float) -> dict[str, Any]:
    """Run this script's stage in a fresh process; its result plus wall time and peak RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return {"error": f"timed out after {timeout:.0f} s", "seconds": round(time.perf_counter() - started, 1)}
    seconds = round(time.perf_counter() - started, 1)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    if proc.returncode != 0 and "error" not in result:
        result["error"] = (err.strip().splitlines() or ["?"])[-1][:300]
    return {**result, "seconds": result.get("seconds", seconds)}


def peak_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def cpu_seconds() -> float:
    """CPU time of this process so far (user + system): unlike wall time, it does not grow when
    other processes compete for the cores."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return round(r.ru_utime + r.ru_stime, 1)


def stage_validate(root: Path, offset: int) -> dict[str, Any]:
    from vlmt.data.validate import validate_dir

    t = time.perf_counter()
    report = validate_dir(root, genome_id_offset=offset)
    return {"seconds": round(time.perf_counter() - t, 1), "cpu_seconds": cpu_seconds(), "peak_mb": peak_mb(),
            "ok": report.ok,
            "problems": report.problems[:5], "summaries": report.summaries}


def load(config: str, root: Path, extra: list[str] = ()):
    from vlmt.training.build import load_experiment

    folder, sets = CONFIGS[config]
    return load_experiment(REPO / "configs" / f"{config}.yaml", [f"data.root={root / folder}", *sets, *extra])


def stage_build(config: str, root: Path) -> dict[str, Any]:
    cfg = load(config, root)
    t = time.perf_counter()
    built = cfg.data.build(seed=0)
    data = [built.family(name) for name in cfg.data.families][-1]  # each family the config names
    seconds = round(time.perf_counter() - t, 1)
    summary = getattr(data, "summary", None)
    return {"seconds": seconds, "cpu_seconds": cpu_seconds(), "peak_mb": peak_mb(),
            "summary": summary if isinstance(summary, dict) else None}


def stage_train(config: str, root: Path, steps: int, batches: int, budget: float,
                sets: list[str] = ()) -> dict[str, Any]:
    """Per task: input pipeline rate, training steps with FLOPs, then checkpoint and evaluation.
    `sets`: config overrides (`data.features_on_device=true`: the batches carry row indices, so
    the input rate is the CPU's part alone and the gather happens in `move_to`, on the device)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vlmt.tasks.base import move_to
    from vlmt.training.build import build_parts
    from vlmt.training.prefetch import prefetched

    torch.set_num_threads(2)
    cfg = load(config, root, sets)
    t = time.perf_counter()
    parts = build_parts(cfg, torch.device("cpu"))
    out: dict[str, Any] = {"build_parts_seconds": round(time.perf_counter() - t, 1), "tasks": {}}
    params = sum(p.numel() for p in parts.objective.parameters())
    out["parameters"] = params
    optimizer = torch.optim.Adam([p for p in parts.objective.parameters() if p.requires_grad], lr=1e-4)
    trained = getattr(cfg.schedule, "order", None) or list(parts.tasks)
    for name, task in parts.tasks.items():
        if name not in trained:  # evaluated only (composed_paper's zero_shot)
            continue
        row: dict[str, Any] = {"batch_size": cfg.tasks[name].batch_size}
        # a first pass over the same batches reads their features cold (a sparse store's pages are
        # made on first read): that is the disk's rate; the passes after it are batch building's
        stream = iter(task.batches("train"))
        next(stream)
        t = time.perf_counter()
        for _ in range(batches):
            next(stream)
        row["examples_per_s_cold"] = round(batches * row["batch_size"] / (time.perf_counter() - t), 1)
        for workers in (0, 2):
            # one torch thread while batches are built: process time counts every thread, and on a
            # loaded machine a second OpenMP thread spinning in each feature copy multiplied it
            torch.set_num_threads(1 if workers == 0 else 2)
            stream = prefetched(iter(task.batches("train")), workers, name=name)
            next(stream)  # the first batch pays one-off set-up
            t, cpu = time.perf_counter(), time.process_time()
            for _ in range(batches):
                next(stream)
            rate = batches * row["batch_size"] / (time.perf_counter() - t)
            row[f"examples_per_s_workers_{workers}"] = round(rate, 1)
            if workers == 0:  # examples per CPU second: what one core gives, whatever the machine's load
                row["examples_per_cpu_s"] = round(batches * row["batch_size"] / (time.process_time() - cpu), 1)
            close = getattr(stream, "close", None)
            if close:
                close()
        stream = iter(task.batches("train"))
        step_times = []
        flops = None
        for k in range(steps):
            batch = move_to(next(stream), torch.device("cpu"))
            t = time.perf_counter()
            optimizer.zero_grad()
            if k == 0:
                with FlopCounterMode(display=False) as counter:
                    total, _ = parts.objective([(name, 1.0, batch)])
                    total.backward()
                flops = counter.get_total_flops()
            else:
                total, _ = parts.objective([(name, 1.0, batch)])
                total.backward()
            optimizer.step()
            step_times.append(time.perf_counter() - t)
        row["step_seconds"] = round(float(np.median(step_times[1:] or step_times)), 2)
        row["step_tflop"] = round(flops / 1e12, 4) if flops else None
        out["tasks"][name] = row
    # checkpoint
    from safetensors.torch import load_file, save_file

    ckpt = Path(os.environ.get("TMPDIR", "/tmp")) / f"paper_scale_{os.getpid()}.safetensors"
    state = {k: v.contiguous() for k, v in parts.objective.state_dict().items()}
    t = time.perf_counter()
    save_file(state, str(ckpt))
    out["checkpoint_save_seconds"] = round(time.perf_counter() - t, 2)
    out["checkpoint_mb"] = round(ckpt.stat().st_size / 1e6, 1)
    t = time.perf_counter()
    parts.objective.load_state_dict(load_file(str(ckpt)))
    out["checkpoint_load_seconds"] = round(time.perf_counter() - t, 2)
    ckpt.unlink()
    out["evaluation"] = evaluate_rates(config, cfg, parts, budget)
    out["peak_mb"] = peak_mb()
    out["cpu_seconds"] = cpu_seconds()
    return out


# paper-size evaluation sets, in each task's examples: VQA v2 test-dev questions, Flickr30k
# Entities test sentences, VQA v1 val2014 questions (SVLR's test), Genome test regions (10 %)
EVAL_SIZES = {"hierarchical_paper": {"vqa": 107_394, "grounding": 5_000},
              "svlr_paper": {"vqa": VQA1["val2014"], "recognition": GENOME_OBJECTS // 10},
              "composed_paper": {"vqa": 107_394, "grounding": 5_000, "recognition": GENOME_OBJECTS // 10,
                                 "zero_shot": VQA1["val2014"]}}


def evaluate_rates(config: str, cfg, parts, budget: float) -> dict[str, Any]:
    """Evaluation cost at paper size, extrapolated from the measured rate of a subset."""
    import torch

    from vlmt.tasks.base import EvalMode, move_to

    out: dict[str, Any] = {}
    model = parts.model
    cpu = torch.device("cpu")
    with torch.no_grad():
        for name, task in parts.tasks.items():
            with EvalMode(model, task):
                if name == "retrieval":
                    images, rows = task.eval_layout("test")
                    caches = task.image_caches(model, images[:8], cpu)
                    t = time.perf_counter()
                    pairs = 0
                    for _, captions in task.caption_blocks(model, "test", rows[:40], cpu):
                        for _, cache in caches:
                            pairs += task.score_pairs(model, cache, captions).numel()
                    rate = pairs / (time.perf_counter() - t)
                    full, folds = 5000 * 25000, 5 * 1000 * 5000
                    two_stage = 5000 * 50 + 25000 * 20  # rerank_k 50 captions per image, 20 images per caption
                    out["retrieval_pairs_per_s"] = round(rate, 1)
                    out["retrieval_5k_exhaustive_hours_extrapolated"] = round(full / rate / 3600, 1)
                    out["retrieval_1k_x5_exhaustive_hours_extrapolated"] = round(folds / rate / 3600, 1)
                    out["retrieval_5k_two_stage_hours_extrapolated"] = round(two_stage / rate / 3600, 2)
                    continue
                size = getattr(cfg.tasks[name], "eval_batch_size", cfg.tasks[name].batch_size)
                n = 0
                t = time.perf_counter()
                if name in (getattr(cfg.schedule, "order", None) or parts.tasks):
                    for batch in task.batches("val"):
                        task(model, move_to(batch, cpu))
                        n += size
                        if time.perf_counter() - t > budget:
                            break
                else:  # evaluated only: multiple-choice scores of the test questions (composed zero_shot)
                    from vlmt.tasks.collate import item_batches

                    for chunk in item_batches(task.data.vqa["test"], size, split="eval"):
                        task.choice_scores(model, task.batch_of(chunk).inputs)
                        n += len(chunk)
                        if time.perf_counter() - t > budget:
                            break
                rate = n / (time.perf_counter() - t)
                total = EVAL_SIZES[config].get(name)
                out[f"{name}_eval_examples_per_s"] = round(rate, 1)
                if total:
                    out[f"{name}_test_minutes_extrapolated"] = round(total / rate / 60, 1)
    return out


# ----------------------------------------------------------------------------- the whole benchmark

def projection(rows: dict[str, Any], counts: dict[str, float]) -> dict[str, Any]:
    """GPU hours per epoch of each task from its step's FLOPs (a projection, not a measurement)."""
    rate = H100_DENSE_TFLOPS * 1e12 * H100_UTILISATION
    out = {}
    for name, row in rows.items():
        if not row.get("step_tflop"):
            continue
        steps = counts.get(name, 0) / row["batch_size"]
        step_s = row["step_tflop"] * 1e12 / rate
        out[name] = {"h100_step_ms_projected": round(step_s * 1e3, 2),
                     "h100_minutes_per_epoch_projected": round(steps * step_s / 60, 1),
                     "examples_per_s_needed": round(row["batch_size"] / step_s),
                     "cpu_cores_needed_for_input": round(row["batch_size"] / step_s / max(
                         row.get("examples_per_cpu_s", row["examples_per_s_workers_0"]), 1e-9), 2)}
    return out


def benchmark(out: Path, scale: float, *, steps: int, batches: int, stages: list[str], timeout: float,
              keep: bool, reuse: bool = False, configs: list[str] | None = None, sets: list[str] = ()
              ) -> dict[str, Any]:
    result: dict[str, Any] = {"scale": scale, "machine": {"cpus": os.cpu_count(), "load_at_start": os.getloadavg()},
                              "set": list(sets)}
    t = time.perf_counter()
    if reuse and (out / "written.json").is_file():
        result["write"] = json.loads((out / "written.json").read_text(encoding="utf-8"))
        if result["write"].get("scale") != scale:
            raise ConfigError(f"{out / 'written.json'}: holds scale {result['write'].get('scale')}, not {scale} "
                              "(--reuse measures the data a --keep run of the same --scale left)")
        say(f"reusing {out}")
    else:
        if out.exists():
            shutil.rmtree(out)
        result["write"] = write_all(out, scale)
        result["write"]["total_seconds"] = round(time.perf_counter() - t, 1)
        result["write"]["scale"] = scale
        (out / "written.json").write_text(json.dumps(result["write"]), encoding="utf-8")
        say(f"wrote {out} in {result['write']['total_seconds']} s: {result['write']['disk_mb']} MB on disk")
    try:
        chosen = configs or list(CONFIGS)
        if not (out / "composed" / "features").is_dir():  # data a --keep run left before composed/ existed
            result["write"].setdefault("seconds", {})["composed"] = write_composed(out)
        if "validate" in stages:
            for folder, offset in [(f, o) for f, o in VALIDATE if f in {CONFIGS[c][0] for c in chosen}]:
                result[f"validate {folder}"] = run_child(["--stage", "validate", "--root", str(out / folder),
                                                          "--offset", str(offset)], timeout)
                say(f"validate {folder}: {brief(result[f'validate {folder}'])}")
        if "build" in stages:
            for config in chosen:
                result[f"build {config}"] = run_child(["--stage", "build", "--config", config, "--root", str(out)],
                                                      timeout)
                say(f"build {config}: {brief(result[f'build {config}'])}")
        if "train" in stages:
            for config in chosen:
                r = run_child(["--stage", "train", "--config", config, "--root", str(out), "--steps", str(steps),
                               "--batches", str(batches), *[f"--set={s}" for s in sets]], timeout)
                r["projection"] = projection(r.get("tasks", {}), EPOCHS[config])
                result[f"train {config}"] = r
                say(f"train {config}: {json.dumps(r)[:600]}")
    finally:
        if not keep:
            shutil.rmtree(out, ignore_errors=True)
    return result


def brief(r: dict[str, Any]) -> str:
    text = f"{r.get('seconds')} s ({r.get('cpu_seconds')} s CPU), peak {r.get('peak_mb')} MB"
    if "error" in r:
        text += f", ERROR {r['error']}"
    if r.get("problems"):
        text += f", problems {r['problems']}"
    return text


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@reports_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the published counts (default 1)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "vlmt_paper_scale")
    p.add_argument("--stages", default="validate,build,train")
    p.add_argument("--configs", default=",".join(CONFIGS), help="configs to measure (default: all three)")
    p.add_argument("--steps", type=at_least(1), default=3, help="training steps per task")
    p.add_argument("--batches", type=at_least(1), default=10, help="batches per input-pipeline measurement")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per stage process")
    p.add_argument("--keep", action="store_true", help="keep the written data")
    p.add_argument("--reuse", action="store_true", help="measure the data a --keep run left at --out (same scale)")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE", help="write the result as JSON")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the train stage, repeatable (e.g. data.features_on_device=true: "
                        "batches carry row indices, the features are gathered on the device)")
    # internal: one stage in this process
    p.add_argument("--stage", help=argparse.SUPPRESS)
    p.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not (args.scale > 0 and args.timeout > 0):
        p.error("--scale and --timeout must be > 0")
    unknown = [c for c in args.configs.split(",") if c not in CONFIGS]
    if unknown:
        p.error(f"--configs: unknown {', '.join(map(repr, unknown))}; choose among {', '.join(CONFIGS)}")
    unknown = [s for s in args.stages.split(",") if s not in STAGES]
    if unknown:
        p.error(f"--stages: unknown {', '.join(map(repr, unknown))}; choose among {', '.join(STAGES)}")
    if args.stage:
        if args.stage == "validate":
            r = stage_validate(args.root, args.offset)
        elif args.stage == "build":
            r = stage_build(args.config, args.root)
        else:
            r = stage_train(args.config, args.root, args.steps, args.batches, budget=20.0, sets=args.set)
        print(json.dumps(r, default=str))
        return 0
    result = benchmark(args.out, args.scale, steps=args.steps, batches=args.batches,
                       stages=args.stages.split(","), timeout=args.timeout, keep=args.keep or args.reuse,
                       reuse=args.reuse, configs=args.configs.split(","), sets=args.set)
    text = json.dumps(result, indent=2, default=str)
    if args.json == "-":
        print(text)
    elif args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
