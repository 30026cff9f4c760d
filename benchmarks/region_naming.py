"""How well the region CNN names an object from the detector's box of it against from its true box.

For every object of the chosen pictures that some detector box covers with IoU >= 0.5, the box of
highest IoU and the true box are given to a region CNN (`RegionExtractor.predict`), and the shape
it names (the best object class, background left out) and its colour, size and texture (the
best-scored word of each) are compared with the annotation. Two region CNNs are compared on the
same boxes: the oracle world's (trained on true boxes and tight jitters) and the detector world's
(trained on the detector's own boxes of the Genome-like training split). Both worlds are
generated into the cache when missing; the detector is the detector world's.

    PYTHONPATH=src python benchmarks/region_naming.py [--size default] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from vlmt.errors import reports_errors


def families(ext) -> list[tuple[list[str], list[int]]]:
    """(words, their attribute columns) for colours, sizes and textures."""
    from vlmt.data.synth import taxonomy as tx

    return [(list(fam), [ext.attribute_names.index(a) for a in fam]) for fam in (tx.COLOURS, tx.SIZES, tx.TEXTURES)]


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="default", help="world size (default: default)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default: 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)

    from vlmt.data.features.detector import ObjectDetector, box_iou
    from vlmt.data.features.extractor import RegionExtractor
    from vlmt.data.synth.cache import ensure_world
    from vlmt.data.synth.world import DETECTOR_DIR, _load_image, build, filename, world_size

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        folders = {m: ensure_world(args.size, args.seed, proposals=m) for m in ("oracle", "detector")}
        extractors = {m: RegionExtractor.load(f / "region_extractor") for m, f in folders.items()}
        detector = ObjectDetector.load(folders["detector"] / DETECTOR_DIR)
        w = build(world_size(args.size), args.seed)
        load = lambda i: _load_image(folders["detector"] / "images" / filename(i))  # noqa: E731
        sets = {"Genome-like test": w.genome_ids("test"), "main test": w.main_ids("test")}
        rows = []
        for set_name, ids in sets.items():
            pictures = [load(i) for i in ids]
            found, _ = detector.detect_batch(pictures)
            det_boxes, true_boxes, objects, pics = [], [], [], []
            for k, i in enumerate(ids):
                objs = w.scenes[i].objects
                truth = np.array([o.box for o in objs], np.float32)
                ious = box_iou(torch.from_numpy(truth), torch.from_numpy(found[k])).numpy()
                keep = ious.max(1) >= 0.5
                if not keep.any():
                    continue
                pics.append(pictures[k])
                det_boxes.append(found[k][ious.argmax(1)[keep]])
                true_boxes.append(truth[keep])
                objects += [o for o, ok in zip(objs, keep) if ok]
            for method, ext in extractors.items():
                for box_kind, boxes in (("detector box", det_boxes), ("true box", true_boxes)):
                    f = torch.from_numpy(np.concatenate(ext.extract(pics, boxes)))
                    with torch.no_grad():
                        obj = ext.model.object_head(f)[:, :-1].argmax(1).tolist()  # the best name, not background
                        att = ext.model.attribute_head(f)
                    shape = np.mean([ext.object_names[k] == o.shape for k, o in zip(obj, objects)])
                    # each of colour, size and texture: the best-scored word of its family
                    picked = [[fam[int(att[r, cols].argmax())] for fam, cols in families(ext)] for r in range(len(f))]
                    atts = np.mean([p == [o.colour, o.size, o.texture] for p, o in zip(picked, objects)])
                    rows.append({"pictures": set_name, "region_cnn": f"{method} world", "box": box_kind,
                                 "objects": len(objects), "shape": float(shape), "all_attributes": float(atts)})
    finally:
        torch.set_num_threads(threads)
    if args.json:
        print(json.dumps({"size": args.size, "seed": args.seed, "rows": rows}))
        return 0
    print(f"world {args.size}, seed {args.seed}: objects with a detector box of IoU >= 0.5")
    print(f"{'pictures':<18} {'region CNN':<16} {'box':<14} {'objects':>7} {'shape':>7} {'colour+size+texture':>20}")
    for r in rows:
        print(f"{r['pictures']:<18} {r['region_cnn']:<16} {r['box']:<14} {r['objects']:>7} "
              f"{100 * r['shape']:>6.1f}% {100 * r['all_attributes']:>19.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
