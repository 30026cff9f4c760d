"""How much do the detector's loose boxes cost? A diagnostic world whose regions are the
detector's, except that each box overlapping a true box by IoU >= 0.5 is replaced by that box.

The number, order and clutter of the regions stay the detector's (its misses stay missed, its
duplicates and background boxes stay); only the localisation of what it found becomes exact. The
region CNN is retrained on the snapped boxes of the Genome-like training pictures, as a detector
world's is on its own boxes, and every picture's features are extracted from its snapped boxes.
Test annotations enter the test features, so this is an ablation only, like the oracle proposals.

    PYTHONPATH=src python benchmarks/snapped_boxes.py --size default --out worlds/snapped [--seed 0] [--json]
    vlmt train hierarchical_world --set data.root=worlds/snapped --set train.seed=0 --out runs/snapped

The detector world of the same size and seed is generated (cached) first when missing; the new
world links its pictures and language files and writes its own `region_extractor/` and
`features/`. Prints the linear probes of the new features beside the detector world's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vlmt.errors import ConfigError, reports_errors

OWN = ("region_extractor", "features", "world.json", "README.md")  # written here, never linked


class SnappedDetector:
    """Wraps a detector: its boxes, each replaced by the true box of its picture it overlaps most
    when that IoU is >= `threshold`. Pictures are recognised by their pixels."""

    def __init__(self, detector, truth_by_pixels: dict[str, np.ndarray], threshold: float = 0.5):
        self.detector, self.truth, self.threshold = detector, truth_by_pixels, threshold
        self.snapped = self.total = 0

    def detect_batch(self, images, **kw):
        from vlmt.data.features.detector import box_iou

        boxes, scores = self.detector.detect_batch(images, **kw)
        out = []
        for im, b in zip(images, boxes):
            truth = self.truth[_key(im)]
            b = b.copy()
            if len(truth):
                best, j = box_iou(torch.from_numpy(b), torch.from_numpy(truth)).max(1)
                hit = (best >= self.threshold).numpy()
                b[hit] = truth[j.numpy()[hit]]
                self.snapped += int(hit.sum())
            self.total += len(b)
            out.append(b)
        return out, scores


def _key(pixels: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(pixels).tobytes()).hexdigest()


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="default", help="world size (default: default)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default: 0)")
    parser.add_argument("--out", required=True, help="folder for the diagnostic world (empty or missing)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    args = parser.parse_args(argv)

    from vlmt.data.features.detector import ObjectDetector
    from vlmt.data.features.extractor import train_region_extractor
    from vlmt.data.features.writer import FeatureStoreWriter
    from vlmt.data.synth import taxonomy as tx
    from vlmt.data.synth.cache import ensure_world
    from vlmt.data.synth.probe import probe_world
    from vlmt.data.synth.world import DETECTOR_DIR, _load_image, build, extractor_training_data, filename, world_size

    size = world_size(args.size)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: --out must be an empty or missing folder")
    source = ensure_world(args.size, args.seed, proposals="detector")
    out.mkdir(parents=True, exist_ok=True)
    for p in source.iterdir():
        if p.name in OWN:
            continue
        if p.is_dir():
            (out / p.name).symlink_to(p.resolve())
        else:
            shutil.copy(p, out / p.name)
    w = build(size, args.seed)
    load = lambda i: _load_image(source / "images" / filename(i))  # noqa: E731
    truth = {_key(load(i)): np.array([o.box for o in s.objects], np.float32).reshape(-1, 4)
             for i, s in w.scenes.items()}
    detector = SnappedDetector(ObjectDetector.load(source / DETECTOR_DIR), truth)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        images, regions = extractor_training_data(source, w, load, detector)
        extractor = train_region_extractor(images, regions, object_names=tx.SHAPES, attribute_names=tx.ADJECTIVES,
                                           feature_dim=size.feature_dim, epochs=size.extractor_epochs, seed=args.seed)
        extractor.save(out / "region_extractor")
        ids = sorted(w.scenes)
        detector.snapped = detector.total = 0  # count the stored boxes only
        with FeatureStoreWriter(out / "features", feature_dim=extractor.feature_dim) as writer:
            for start in range(0, len(ids), 256):
                chunk = ids[start:start + 256]
                pictures = [load(i) for i in chunk]
                boxes, _ = detector.detect_batch(pictures)
                for i, b, f in zip(chunk, boxes, extractor.extract(pictures, boxes)):
                    writer.add(i, boxes=b, features=f, width=w.scenes[i].width, height=w.scenes[i].height)
    finally:
        torch.set_num_threads(threads)
    manifest = json.loads((source / "world.json").read_text(encoding="utf-8"))
    manifest["proposals"] = {**manifest.get("proposals", {}), "method": "detector, snapped to true boxes",
                             "true_boxes_in_features": True, "what": "ablation: benchmarks/snapped_boxes.py"}
    (out / "world.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    result = {"size": args.size, "seed": args.seed, "out": str(out), "seconds": round(time.perf_counter() - t0, 1),
              "boxes_snapped": detector.snapped, "boxes": detector.total,
              "probe_snapped": probe_world(out, args.size, args.seed),
              "probe_detector": probe_world(source, args.size, args.seed)}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{out}: {detector.snapped} of {detector.total} detector boxes snapped to a true box "
          f"({result['seconds']} s); train with --set data.root={out}")
    print(f"{'probe':<10}{'detector':>10}{'snapped':>10}")
    for k in ("shape", "colour", "size", "texture"):
        print(f"{k:<10}{100 * result['probe_detector'][k]:>9.1f}%{100 * result['probe_snapped'][k]:>9.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
