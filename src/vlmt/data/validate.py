"""Find every dataset file and feature store under a folder (or take those a data section reads),
parse them with the readers and cross-check them. Used by `vlmt data validate` and by training,
which refuses data that does not validate (`require_valid`), so both print the same one-line
messages (file, record, field).

The formats are the dataset modules' (`vlmt.data.datasets.base.FORMATS`: each registers how it
finds its files in a folder and how it checks them); this module walks the folder, checks the
feature stores first (the other checks ask which images have features), runs the formats' checks
and then the cross-check that every image a file refers to has region features.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from vlmt.data.datasets import FORMATS, dataset_kind
from vlmt.data.datasets.base import CheckContext, CheckUnit
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


def _guard(report: CheckContext, path: Path, fn: Callable[[], None], also: Iterable[Path | None] = ()) -> None:
    """Run one dataset's check; a fatal `DataError` (e.g. unparsable JSON) becomes one problem line,
    and so does content so malformed that a reader trips over it. Logs what it checks and how long
    it took (a full-size release takes minutes: a training run says so as it goes)."""
    started, problems, summaries = time.perf_counter(), len(report.problems), len(report.summaries)
    files = [p for q in (path, *also) if q is not None for p in ([q] if q.is_file() else q.glob("*"))]
    size = sum(p.stat().st_size for p in files if p.is_file())
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


def _check_store(report: CheckContext, path: Path) -> None:
    from vlmt.data.features.store import FeatureStore
    from vlmt.data.features.validate import validate_store

    problems = validate_store(path)
    report.problems += problems
    if not problems:
        store = FeatureStore(path)
        report.stores.append(store)
        report.summaries.append(f"feature store {path.name}/: {len(store)} images, {store.feature_dim}-d features"
                                + (f" ({store.dtype})" if store.dtype != "float32" else ""))


def _check_features(report: CheckContext) -> None:
    """With feature stores present, every image a dataset refers to must have features."""
    for file, image_ids in report.image_refs:
        missing = [(i, rec) for i, rec in image_ids if not report.has_image(i)]
        seen: set[int] = set()
        for image_id, rec in missing:
            if image_id in seen:
                continue
            seen.add(image_id)
            if len(seen) > MAX_MISSING_PER_FILE:
                break
            report.problems.append(format_problem(file, f"image {image_id} has no region features in any feature "
                                                  "store found", record=rec, field="image_id"))
        rest = len({i for i, _ in missing}) - MAX_MISSING_PER_FILE
        if rest > 0:
            report.problems.append(format_problem(file, f"... and {rest} more images without region features",
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


def _run(root: Path, units: Iterable[CheckUnit], store_dirs: Iterable[Path], *, genome_id_offset: int = 0,
         others: list[Path] | None = None, problems: list[str] | None = None) -> Report:
    """Check the stores, then every unit through its format (by stage), then the features."""
    ctx = CheckContext(genome_id_offset=genome_id_offset, problems=list(problems or []))
    for d in store_dirs:  # first: the other checks ask which images have features
        _guard(ctx, d, lambda d=d: _check_store(ctx, d))  # type: ignore[misc]
    for unit in sorted(units, key=lambda u: FORMATS[u.format].stage):  # stable: the walk's order within a stage
        fmt = FORMATS[unit.format]
        _guard(ctx, unit.path, lambda fmt=fmt, unit=unit: fmt.check(unit, ctx), unit.files)  # type: ignore[misc]
    if ctx.stores or list(store_dirs):
        _check_features(ctx)
    report = Report(root, problems=capped(ctx.problems), summaries=ctx.summaries, unrecognised=others or [])
    if not report.summaries and not report.problems:
        report.problems.append(format_problem(root, "no dataset file or feature store found"))
    return report


def validate_dir(path: str | os.PathLike, *, genome_id_offset: int = 0) -> Report:
    """Validate everything found under `path` (recursively) and return the report. Genome images
    are looked up in the feature stores as id + `genome_id_offset` (data.datasets.genome.id_offset)."""
    from vlmt.data.features.store import is_feature_store

    root = Path(path)
    if not root.is_dir():
        return Report(root, problems=[format_problem(root, "not a directory")])
    units: list[CheckUnit] = []
    store_dirs: list[Path] = []
    others: list[Path] = []
    visited: set[tuple[int, int]] = set()
    # symlinked folders are followed (datasets and stores often live on another disk, linked in);
    # a folder reached twice through links is read once
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        d = Path(dirpath)
        st = d.stat()
        if (st.st_dev, st.st_ino) in visited:
            dirnames[:] = []
            continue
        visited.add((st.st_dev, st.st_ino))
        if is_feature_store(d):
            store_dirs.append(d)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        names = sorted(n for n in filenames if not n.startswith("."))
        claimed: set[str] = set()
        skip: set[str] = set()
        whole = False
        for fmt in FORMATS.values():
            found = fmt.find(d, dirnames, names)
            units += found.units
            claimed |= found.claimed
            skip |= found.skip
            whole = whole or found.whole
        dirnames[:] = [] if whole else [n for n in dirnames if n not in skip]
        others += [d / n for n in names if n not in claimed]
    return _run(root, units, store_dirs, genome_id_offset=genome_id_offset, others=others)


def validate_datasets(root: str | os.PathLike, datasets: Mapping[str, Any], stores: Iterable[str | os.PathLike],
                      ) -> Report:
    """Validate only what a data section reads: the files of `datasets` (dataset name -> files
    config, `DataConfig.dataset_files()`) under `root` and the feature stores `stores`."""
    root = Path(root)
    units = [u for name, files in datasets.items() for u in dataset_kind(name).check_units(root, files)]
    store_dirs = list(dict.fromkeys(Path(s) for s in stores))
    missing = [format_problem(s, "region feature store not found") for s in store_dirs if not s.is_dir()]
    return _run(root, units, [s for s in store_dirs if s.is_dir()], problems=missing)


def require_valid(path: str | os.PathLike, *, genome_id_offset: int = 0, datasets: Mapping[str, Any] | None = None,
                  stores: Iterable[str | os.PathLike] = ()) -> Report:
    """Validate `path` (all of it, or with `datasets` only those datasets' files and `stores`);
    raise `DataError` listing every problem (same lines as the CLI) if any."""
    if datasets is None:
        report = validate_dir(path, genome_id_offset=genome_id_offset)
    else:
        report = validate_datasets(path, datasets, stores)
    if not report.ok:
        raise DataError(path, f"{len(report.problems)} problem(s) in the data:\n" + "\n".join(report.problems))
    return report


_VALIDATED: set[str] = set()


def require_valid_once(path: str | os.PathLike, *, genome_id_offset: int = 0,
                       datasets: Mapping[str, Any] | None = None, stores: Iterable[str | os.PathLike] = ()) -> None:
    """`require_valid` for a training or evaluation process: each folder (and selection of its
    datasets) is checked once per process (several data sections and rebuilds may read the same)."""
    store_paths = sorted(str(Path(s).resolve()) for s in stores)
    what = "" if datasets is None else repr(sorted((k, repr(v)) for k, v in datasets.items())) + repr(store_paths)
    key = f"{Path(path).resolve()}|{genome_id_offset}|{what}"
    if key not in _VALIDATED:
        require_valid(path, genome_id_offset=genome_id_offset, datasets=datasets, stores=store_paths)
        _VALIDATED.add(key)
