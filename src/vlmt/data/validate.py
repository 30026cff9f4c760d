"""Find every dataset file and feature store under a folder, parse them with the readers and
cross-check them. Used by `vlmt data validate` and by training, which refuses data that does not
validate (`require_valid`), so both print the same one-line messages (file, record, field)."""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from vlmt.data.readers import captions, easy_vqa, flickr30k_entities, visual_genome, vqa
from vlmt.data.readers._common import collector
from vlmt.errors import DataError, format_problem

log = logging.getLogger("vlmt.data.validate")  # a training run's train.log and terminal show it
MAX_MISSING_PER_FILE = 20  # images without features: list this many, then count the rest
MAX_PROBLEMS_PER_FILE = 50  # any problem: list this many per file, then count the rest


@dataclass
class Report:
    """What validation found: one line per problem, one summary line per clean-read dataset."""

    root: Path
    problems: list[str] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)
    unrecognised: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Dataset:
    """Image ids a dataset file refers to, for the feature cross-check."""

    file: Path
    image_ids: list[tuple[int, str]]  # (image id, record) pairs


def _guard(report: Report, path: Path, fn: Callable[[], None]) -> None:
    """Run one dataset's check; a fatal `DataError` (e.g. unparsable JSON) becomes one problem line,
    and so does content so malformed that a reader trips over it. Logs what it checks and how long
    it took (a full-size release takes minutes: a training run says so as it goes)."""
    started, problems, summaries = time.perf_counter(), len(report.problems), len(report.summaries)
    size = sum(p.stat().st_size for p in ([path] if path.is_file() else path.glob("*")) if p.is_file())
    log.info("validating %s (%.0f MB) ...", path, size / 1e6)
    try:
        fn()
    except DataError as e:
        report.problems.append(str(e))
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError) as e:
        report.problems.append(format_problem(path, f"unreadable content ({type(e).__name__}: {e})"))
    found = len(report.problems) - problems
    what = f"{found} problem(s)" if found else "; ".join(report.summaries[summaries:]) or "ok"
    log.info("  %s (%.1f s)", what, time.perf_counter() - started)


def _annotation_name(questions: Path) -> str | None:
    m = vqa.QUESTIONS_RE.match(questions.name)
    if not m:
        return None
    prefix = "v2_" if questions.name.startswith("v2_") else ""
    return f"{prefix}{m.group(2)}_{m.group(3)}_annotations.json"


def _check_vqa(report: Report, questions: Path, datasets: list[_Dataset], stores: list) -> None:
    problems, collect = collector()
    ann_name = _annotation_name(questions)
    annotations = questions.parent / ann_name if ann_name else None
    if annotations is not None and not annotations.exists():
        annotations = None
    has_image = (lambda i: any(i in s for s in stores)) if stores else None
    examples = vqa.read_vqa(questions, annotations, report=collect, has_image=has_image)
    report.problems += problems
    if not problems:
        kind = "multiple choice" if examples and examples[0].choices is not None else "open-ended"
        images = {e.image_id for e in examples}
        with_answers = "with annotations" if annotations else "questions only"
        report.summaries.append(f"VQA {kind} {questions.name}: {len(examples)} questions, {len(images)} images, "
                                f"{with_answers}")
    datasets.append(_Dataset(questions, [(e.image_id, f"question_id {e.question_id}") for e in examples]))


def _check_karpathy(report: Report, path: Path, datasets: list[_Dataset]) -> None:
    problems, collect = collector()
    images = captions.read_karpathy(path, report=collect)
    report.problems += problems
    if not problems:
        counts = {s: sum(im.split == s for im in images) for s in captions.KARPATHY_SPLITS}
        n = sum(len(im.captions) for im in images)
        report.summaries.append(f"captions {path.name}: {len(images)} images, {n} sentences, splits "
                                + ", ".join(f"{k} {v}" for k, v in counts.items()))
    datasets.append(_Dataset(path, [(im.image_id, f"image {im.filename}") for im in images]))


def _check_coco(report: Report, path: Path, datasets: list[_Dataset]) -> None:
    problems, collect = collector()
    images = captions.read_coco_captions(path, report=collect)
    report.problems += problems
    if not problems:
        n = sum(len(im.captions) for im in images)
        report.summaries.append(f"COCO captions {path.name}: {len(images)} images, {n} captions")
    datasets.append(_Dataset(path, [(im.image_id, f"image id {im.image_id}") for im in images]))


def _check_entities(report: Report, root: Path, datasets: list[_Dataset]) -> None:
    problems, collect = collector()
    ids = flickr30k_entities.image_ids(root)
    for xml in (root / "Annotations").glob("*.xml"):
        if not (root / "Sentences" / f"{xml.stem}.txt").exists():
            collect(xml, "has no sentence file in Sentences/", field="filename")
    sentences = []
    for image_id in ids:
        sentences += flickr30k_entities.read_image(root, image_id, report=collect)
    split_of: dict[int, str] = {}
    for split in flickr30k_entities.SPLITS:
        path = root / f"{split}.txt"
        if not path.exists():
            continue
        try:
            split_ids = flickr30k_entities.read_split(root, split)
        except DataError as e:
            problems.append(str(e))
            continue
        for n, image_id in enumerate(split_ids, start=1):
            if image_id in split_of:
                collect(path, f"image {image_id} is also in {split_of[image_id]}.txt", record=f"entry {n}",
                        field="image id")
            elif image_id not in ids:
                collect(path, f"image {image_id} has no Sentences/{image_id}.txt", record=f"entry {n}",
                        field="image id")
            split_of[image_id] = split
    for other in root.glob("*.txt"):
        if other.stem not in flickr30k_entities.SPLITS:
            collect(other, f"unknown split name {other.stem!r}; expected train, val or test", field="split")
    report.problems += problems
    if not problems:
        phrases = sum(len(s.phrases) for s in sentences)
        multi = sum(len(p.boxes) > 1 for s in sentences for p in s.phrases)
        report.summaries.append(f"Flickr30k Entities {root.name}/: {len(ids)} images, {len(sentences)} sentences, "
                                f"{phrases} phrases ({multi} with several boxes)")
    datasets.append(_Dataset(root / "Sentences", [(i, f"image {i}") for i in ids]))


def _check_genome(report: Report, folder: Path, datasets: list[_Dataset], vqa_image_ids: set[int],
                  id_offset: int = 0) -> None:
    problems, collect = collector()
    objects = folder / "objects.json"
    attributes = folder / "attributes.json"
    if not objects.exists():
        collect(objects, "missing: image_data.json needs objects.json beside it")
        report.problems += problems
        return
    images, n = visual_genome.scan_visual_genome(folder / "image_data.json", objects,
                                                 attributes if attributes.exists() else None, report=collect)
    report.problems += problems
    if not problems:
        overlap = sum(im.coco_id in vqa_image_ids for im in images if im.coco_id is not None)
        report.summaries.append(f"Visual Genome {folder.name}/: {len(images)} images, {n} objects, "
                                f"{overlap} images also in VQA (left out of training by the overlap rule)")
    datasets.append(_Dataset(folder / "image_data.json",
                             [(im.image_id + id_offset, f"image_id {im.image_id}") for im in images]))


def _check_easy_vqa(report: Report, root: Path, datasets: list[_Dataset]) -> None:
    problems, collect = collector()
    for split in easy_vqa.SPLITS:
        if not (root / split / "questions.json").exists():
            continue
        examples = easy_vqa.read_easy_vqa(split, root=root, report=collect)
        missing = [e for e in examples if not easy_vqa.image_path(split, e.image_id, root=root).exists()]
        for e in missing[:MAX_MISSING_PER_FILE]:
            collect(root / split / "questions.json",
                    f"image {e.image_id - easy_vqa.SPLIT_OFFSET[split]}.png is missing",
                    record=f"[{e.question_id - easy_vqa.SPLIT_OFFSET[split]}]", field="image_id")
        if len(missing) > MAX_MISSING_PER_FILE:
            collect(root / split / "questions.json", f"... and {len(missing) - MAX_MISSING_PER_FILE} more questions "
                    "whose image is missing", field="image_id")
        if not problems:
            report.summaries.append(f"easy-VQA {split}: {len(examples)} questions, "
                                    f"{len({e.image_id for e in examples})} images")
    report.problems += problems


def _check_store(report: Report, path: Path, stores: list) -> None:
    from vlmt.data.features.store import FeatureStore
    from vlmt.data.features.validate import validate_store

    problems = validate_store(path)
    report.problems += problems
    if not problems:
        store = FeatureStore(path)
        stores.append(store)
        report.summaries.append(f"feature store {path.name}/: {len(store)} images, {store.feature_dim}-d features"
                                + (f" ({store.dtype})" if store.dtype != "float32" else ""))


def _check_features(report: Report, datasets: Iterable[_Dataset], stores: list) -> None:
    """With feature stores present, every image a dataset refers to must have features."""
    for ds in datasets:
        missing = [(i, rec) for i, rec in ds.image_ids if not any(i in s for s in stores)]
        seen: set[int] = set()
        for image_id, rec in missing:
            if image_id in seen:
                continue
            seen.add(image_id)
            if len(seen) > MAX_MISSING_PER_FILE:
                break
            report.problems.append(format_problem(ds.file, f"image {image_id} has no region features in any feature "
                                                  "store found", record=rec, field="image_id"))
        rest = len({i for i, _ in missing}) - MAX_MISSING_PER_FILE
        if rest > 0:
            report.problems.append(format_problem(ds.file, f"... and {rest} more images without region features",
                                                  field="image_id"))


def capped(problems: list[str], limit: int = MAX_PROBLEMS_PER_FILE) -> list[str]:
    """The first `limit` problem lines of each file, then one line counting the rest of that file's."""
    shown: dict[str, int] = {}
    hidden: dict[str, int] = {}
    out = []
    for line in problems:
        file = line.split(": ", 1)[0]
        if shown.get(file, 0) < limit:
            shown[file] = shown.get(file, 0) + 1
            out.append(line)
        else:
            hidden[file] = hidden.get(file, 0) + 1
    out += [format_problem(file, f"... and {n} more problems in this file") for file, n in hidden.items()]
    return out


KARPATHY_RE = captions.KARPATHY_RE
COCO_RE = re.compile(r"^captions_\w+\.json$")


def validate_dir(path: str | os.PathLike, *, genome_id_offset: int = 0) -> Report:
    """Validate everything found under `path` (recursively) and return the report. Genome images
    are looked up in the feature stores as id + `genome_id_offset` (data.genome.id_offset)."""
    from vlmt.data.features.store import is_feature_store

    root = Path(path)
    report = Report(root)
    if not root.is_dir():
        report.problems.append(format_problem(root, "not a directory"))
        return report
    datasets: list[_Dataset] = []
    stores: list = []
    store_dirs, entity_dirs, genome_dirs, easy_dirs = [], [], [], []
    vqa_questions, annotation_files, others = [], [], []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if is_feature_store(d):
            store_dirs.append(d)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        if (d / "Sentences").is_dir() and (d / "Annotations").is_dir():
            entity_dirs.append(d)
            dirnames[:] = [n for n in dirnames if n not in ("Sentences", "Annotations")]
            continue
        if (d / "answers.txt").exists() and any((d / s / "questions.json").exists() for s in easy_vqa.SPLITS):
            easy_dirs.append(d)
            dirnames[:] = []
            continue
        for name in sorted(filenames):
            p = d / name
            if name.startswith("."):
                continue
            if vqa.QUESTIONS_RE.match(name):
                vqa_questions.append(p)
            elif vqa.ANNOTATIONS_RE.match(name):
                annotation_files.append(p)
            elif KARPATHY_RE.match(name):
                _guard(report, p, functools.partial(_check_karpathy, report, p, datasets))
            elif COCO_RE.match(name):
                _guard(report, p, functools.partial(_check_coco, report, p, datasets))
            elif name == "image_data.json":
                genome_dirs.append(d)
            elif name in ("objects.json", "attributes.json"):
                if not (d / "image_data.json").exists():
                    report.problems.append(format_problem(p, "needs image_data.json beside it (Visual Genome)"))
            else:
                others.append(p)
    paired = {q.parent / n for q in vqa_questions if (n := _annotation_name(q))}
    for a in annotation_files:
        if a not in paired:
            report.problems.append(format_problem(a, "annotations without their questions file"))
    for d in store_dirs:  # first: the other checks ask which images have features
        _guard(report, d, functools.partial(_check_store, report, d, stores))
    for q in vqa_questions:
        _guard(report, q, functools.partial(_check_vqa, report, q, datasets, stores))
    vqa_images = {i for ds in datasets if vqa.QUESTIONS_RE.match(ds.file.name) for i, _ in ds.image_ids}
    for d in genome_dirs:
        _guard(report, d, functools.partial(_check_genome, report, d, datasets, vqa_images, genome_id_offset))
    for d in entity_dirs:
        _guard(report, d, functools.partial(_check_entities, report, d, datasets))
    for d in easy_dirs:
        _guard(report, d, functools.partial(_check_easy_vqa, report, d, datasets))
    if store_dirs:
        _check_features(report, datasets, stores)
    report.problems = capped(report.problems)
    report.unrecognised = others
    if not report.summaries and not report.problems:
        report.problems.append(format_problem(root, "no dataset file or feature store found"))
    return report


def require_valid(path: str | os.PathLike, *, genome_id_offset: int = 0) -> Report:
    """Validate `path`; raise `DataError` listing every problem (same lines as the CLI) if any."""
    report = validate_dir(path, genome_id_offset=genome_id_offset)
    if not report.ok:
        raise DataError(path, f"{len(report.problems)} problem(s) in the data:\n" + "\n".join(report.problems))
    return report


_VALIDATED: set[str] = set()


def require_valid_once(path: str | os.PathLike, *, genome_id_offset: int = 0) -> None:
    """`require_valid` for a training or evaluation process: each folder is checked once per
    process (several data sections and rebuilds may read the same folder)."""
    key = f"{Path(path).resolve()}|{genome_id_offset}"
    if key not in _VALIDATED:
        require_valid(path, genome_id_offset=genome_id_offset)
        _VALIDATED.add(key)
