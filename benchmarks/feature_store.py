"""Build a synthetic 100k-image region feature store, then time random access and watch memory.

Run: PYTHONPATH=src python benchmarks/feature_store.py [--images 100000] [--feature-dim 128]
     [--tsv-images N] [--json]

Each image gets T ~ U[10, 100] regions (the adaptive bottom-up range) of D floats. D defaults to
128 rather than the detector's 2048 so the store (about 2.9 GB at 100k images) fits a laptop disk
and builds in a minute; lookups and memory do not depend on D except through bytes copied per
read. Reports build time, random reads/s with the files in the page cache (warm) and after
asking the kernel to drop them (cold, posix_fadvise DONTNEED), and memory: peak RSS of the
process, plus anonymous (private) and file-backed RSS sampled while building and reading.
Anonymous memory is what the store costs the process; file-backed pages are the kernel's page
cache mapped in, shared between processes and reclaimable.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vlmt.cli import at_least
from vlmt.data.features.convert import convert, encode_tsv_line
from vlmt.data.features.store import FeatureStore
from vlmt.data.features.validate import validate_store
from vlmt.data.features.writer import FeatureStoreWriter
from vlmt.errors import reports_errors


def rss_kib() -> dict[str, int]:
    """Current RssAnon / RssFile of this process in KiB (Linux); empty elsewhere."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssFile:", "VmRSS:")):
                    key, value = line.split(":")
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)  # bytes on macOS, KiB on Linux


def drop_from_page_cache(root: Path) -> bool:
    if not hasattr(os, "posix_fadvise"):
        return False
    for path in root.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def build(path: Path, *, images: int, dim: int, min_boxes: int, max_boxes: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    # a pool of random rows; each image takes a window of it and stamps its id into column 0
    pool = rng.standard_normal((max_boxes * 64, dim), dtype=np.float32)
    box_pool = np.sort(rng.uniform(0, 480, (max_boxes * 64, 2, 2)), axis=1).astype(np.float32).reshape(-1, 4)
    counts = rng.integers(min_boxes, max_boxes + 1, images)
    offsets = rng.integers(0, len(pool) - max_boxes, images)
    anon = []
    start = time.perf_counter()
    with FeatureStoreWriter(path, feature_dim=dim) as writer:
        for i in range(images):
            t, o = int(counts[i]), int(offsets[i])
            feats = pool[o:o + t].copy()
            feats[:, 0] = i
            writer.add(i * 7 + 3, boxes=box_pool[o:o + t], features=feats, width=640, height=480)
            if i % 10_000 == 0:
                anon.append(rss_kib().get("RssAnon", 0))
    seconds = time.perf_counter() - start
    anon.append(rss_kib().get("RssAnon", 0))
    return {"seconds": seconds, "regions": int(counts.sum()), "rss_anon_mib_first": anon[0] / 1024,
            "rss_anon_mib_max": max(anon) / 1024}


def time_reads(store: FeatureStore, ids: np.ndarray) -> dict:
    before = rss_kib()
    start = time.perf_counter()
    checksum = 0.0
    for image_id in ids:
        r = store[int(image_id)]
        checksum += float(r.features[0, 0])
    seconds = time.perf_counter() - start
    after = rss_kib()
    expected = float(((ids.astype(np.int64) - 3) // 7).sum())
    assert checksum == expected, "read back the wrong images"
    return {"reads": len(ids), "seconds": seconds, "reads_per_s": len(ids) / seconds,
            "rss_anon_mib_before": before.get("RssAnon", 0) / 1024,
            "rss_anon_mib_after": after.get("RssAnon", 0) / 1024,
            "rss_file_mib_after": after.get("RssFile", 0) / 1024}


def time_tsv_conversion(work: Path, *, images: int, dim: int, seed: int) -> dict:
    """Write `images` images as a bottom-up TSV, then time `convert` into a store."""
    rng = np.random.default_rng(seed)
    tsv = work / "bench.tsv"
    with open(tsv, "wb") as f:
        for i in range(images):
            t = int(rng.integers(10, 101))
            x = np.sort(rng.uniform(0, 640, (t, 2)), axis=1)
            y = np.sort(rng.uniform(0, 480, (t, 2)), axis=1)
            boxes = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)
            f.write(encode_tsv_line(i, 640, 480, boxes, rng.standard_normal((t, dim), dtype=np.float32)))
    start = time.perf_counter()
    convert("tsv", [tsv], work / "from_tsv")
    seconds = time.perf_counter() - start
    return {"images": images, "tsv_bytes": tsv.stat().st_size, "seconds": seconds}


@reports_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=at_least(1), default=100_000)
    p.add_argument("--feature-dim", type=at_least(1), default=128)
    p.add_argument("--min-boxes", type=at_least(0), default=10)
    p.add_argument("--max-boxes", type=at_least(1), default=100)
    p.add_argument("--reads", type=at_least(1), default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tsv-images", type=at_least(0), default=0,
                   help="also time `vlmt data convert` of a bottom-up TSV with this many images")
    p.add_argument("--dir", type=Path, default=None, help="where to build (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the store afterwards")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = p.parse_args(argv)
    if args.max_boxes < args.min_boxes:
        p.error(f"--max-boxes {args.max_boxes} is below --min-boxes {args.min_boxes}")

    work = Path(tempfile.mkdtemp(prefix="vlmt-store-bench-", dir=args.dir))
    path = work / "store"
    try:
        log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
        log(f"building {args.images} images, T in [{args.min_boxes}, {args.max_boxes}], D={args.feature_dim} ...")
        built = build(path, images=args.images, dim=args.feature_dim, min_boxes=args.min_boxes,
                      max_boxes=args.max_boxes, seed=args.seed)
        size = sum(f.stat().st_size for f in path.iterdir())
        log(f"built in {built['seconds']:.1f}s: {built['regions']} regions, {size / 2**30:.2f} GiB on disk, "
            f"anonymous RSS {built['rss_anon_mib_first']:.0f} -> max {built['rss_anon_mib_max']:.0f} MiB")

        rng = np.random.default_rng(args.seed + 1)
        ids = rng.integers(0, args.images, args.reads) * 7 + 3
        warm = time_reads(FeatureStore(path), ids)
        cold_ok = drop_from_page_cache(path)
        cold = time_reads(FeatureStore(path), rng.integers(0, args.images, args.reads) * 7 + 3) if cold_ok else None
        store = FeatureStore(path)
        t = time.perf_counter()
        misses = sum(int(i) in store for i in rng.integers(0, args.images, args.reads) * 7 + 4)
        miss_rate = args.reads / (time.perf_counter() - t)
        assert misses == 0
        t = time.perf_counter()
        problems = validate_store(store.path)
        validate_s = time.perf_counter() - t
        assert problems == [], problems[:3]

        result = {
            "images": args.images, "feature_dim": args.feature_dim, "regions": built["regions"],
            "store_bytes": size, "build_seconds": round(built["seconds"], 2),
            "build_images_per_s": round(args.images / built["seconds"]),
            "build_rss_anon_mib": [round(built["rss_anon_mib_first"], 1), round(built["rss_anon_mib_max"], 1)],
            "warm_reads_per_s": round(warm["reads_per_s"]),
            "cold_reads_per_s": round(cold["reads_per_s"]) if cold else None,
            "missing_id_lookups_per_s": round(miss_rate),
            "read_rss_anon_mib": [round(warm["rss_anon_mib_before"], 1), round(warm["rss_anon_mib_after"], 1)],
            "read_rss_file_mib": round(warm["rss_file_mib_after"], 1),
            "validate_seconds": round(validate_s, 2),
            "peak_rss_mib": round(peak_rss_mib(), 1),
        }
        log(f"random reads: {result['warm_reads_per_s']}/s warm, {result['cold_reads_per_s']}/s cold; "
            f"missing-id lookups {result['missing_id_lookups_per_s']}/s; validate {validate_s:.1f}s")
        log(f"anonymous RSS while reading {warm['rss_anon_mib_before']:.0f} -> {warm['rss_anon_mib_after']:.0f} MiB; "
            f"peak RSS {result['peak_rss_mib']:.0f} MiB (includes mapped page cache)")
        if args.tsv_images:
            conv = time_tsv_conversion(work, images=args.tsv_images, dim=args.feature_dim, seed=args.seed)
            result["tsv_convert_images_per_s"] = round(conv["images"] / conv["seconds"])
            result["tsv_convert_mib_per_s"] = round(conv["tsv_bytes"] / 2**20 / conv["seconds"], 1)
            result["peak_rss_mib"] = round(peak_rss_mib(), 1)
            log(f"TSV -> store: {conv['images']} images ({conv['tsv_bytes'] / 2**20:.0f} MiB) in "
                f"{conv['seconds']:.1f}s")
        if args.json:
            print(json.dumps(result))
        else:
            for k, v in result.items():
                print(f"{k}: {v}")
    finally:
        if args.keep:
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
