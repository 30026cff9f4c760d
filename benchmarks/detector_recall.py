"""Recall of the world's true boxes by the region proposals, per split, and the detector's cost.

Trains the detector the way `vlmt data synth --proposals detector` does (the Genome-like training
split's boxes and names, the size's `detector_steps` updates, one thread), timing it, then counts,
for every picture of each split, the true boxes that some proposal of the picture covers with
IoU >= 0.5, for the first k proposals (best first) and k = the regions per image the feature
store holds (the world's `proposals`, 16: every config reads all of them). How tight the boxes
are: the share covered at IoU >= 0.7 by all k, and the mean IoU of each found box's best
proposal (what the region features see: a loose box blurs shape, size and position). Beside it: the six
pixel proposals given to uploads (`vlmt.data.features.proposals`); the oracle proposals contain
every true box by construction (100 %).

    PYTHONPATH=src python benchmarks/detector_recall.py [--size default] [--seed 0] [--json]

The world (oracle, cached) is generated first when missing; its Genome-like files are the same
in both proposal modes, so the detector trained here is the one the detector world holds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from vlmt.cli import at_least
from vlmt.errors import reports_errors


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="default", help="world size (default: default)")
    parser.add_argument("--seed", type=int, default=0, help="world and detector seed (default: 0)")
    parser.add_argument("--steps", type=at_least(1), default=None, help="detector updates (default: the world's)")
    parser.add_argument("--lr", type=float, default=None,
                        help="peak learning rate of the one-cycle schedule (default: the size's detector_lr)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)

    from vlmt.data.features.detector import DetectorConfig, box_iou, recall_at_iou, train_detector
    from vlmt.data.features.proposals import proposals as upload_proposals
    from vlmt.data.synth import taxonomy as tx
    from vlmt.data.synth.cache import ensure_world
    from vlmt.data.synth.world import _load_image, build, detector_training_data, filename, world_size

    size = world_size(args.size)
    folder = ensure_world(args.size, args.seed, proposals="oracle")
    w = build(size, args.seed)
    load = lambda i: _load_image(folder / "images" / filename(i))  # noqa: E731
    steps = args.steps or size.detector_steps
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images, objects = detector_training_data(folder, w, load)
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        lr = size.detector_lr if args.lr is None else args.lr
        detector = train_detector(images, objects, class_names=tx.SHAPES, steps=steps, seed=args.seed, lr=lr,
                                  config=DetectorConfig(num_classes=len(tx.SHAPES), boxes_per_image=size.proposals))
        train_s, train_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        splits = {f"main {s}": w.main_ids(s) for s in ("train", "val", "test")}
        splits.update({f"genome {s}": w.genome_ids(s) for s in ("train", "test")})
        rows = []
        ks = sorted({1, 5, 10, size.proposals})
        detect_s = 0.0
        for name, ids in splits.items():
            pictures = [load(i) for i in ids]
            truth = [np.array([o.box for o in w.scenes[i].objects], np.float32) for i in ids]
            t = time.perf_counter()
            boxes, _ = detector.detect_batch(pictures)
            detect_s += time.perf_counter() - t
            row = {"split": name, "images": len(ids), "objects": int(sum(len(b) for b in truth))}
            for k in ks:
                found, total = recall_at_iou(truth, [b[:k] for b in boxes])
                row[f"detector_recall@{k}"] = found / total
            tight, _ = recall_at_iou(truth, boxes, threshold=0.7)
            row["detector_recall_iou0.7"] = tight / row["objects"]
            best = np.concatenate([box_iou(torch.from_numpy(t), torch.from_numpy(b)).max(1).values.numpy()
                                   for t, b in zip(truth, boxes) if len(t)])
            found_iou = best[best >= 0.5]
            row["mean_iou_of_found"] = float(found_iou.mean()) if len(found_iou) else None  # None: nothing found
            found, total = recall_at_iou(truth, [upload_proposals(p) for p in pictures])
            row["upload_6_recall"] = found / total
            exact = sum(int((np.abs(b[:, None, :] - t[None, :, :]).max(2) == 0).any()) for b, t in zip(boxes, truth))
            row["pictures_with_a_true_box_stored_exactly"] = exact
            rows.append(row)
    finally:
        torch.set_num_threads(threads)
    n_detected = sum(r["images"] for r in rows)
    result = {"size": args.size, "seed": args.seed, "steps": steps, "lr": lr, "train_images": len(images),
              "train_objects": int(sum(len(o) for o in objects)), "train_s": round(train_s, 1),
              "train_cpu_s": round(train_cpu, 1), "proposals_per_image": size.proposals,
              "detect_ms_per_image": round(1000 * detect_s / max(1, n_detected), 2),
              "torch_threads": 1, "rows": rows}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"detector: {result['train_images']} Genome-like training pictures, {result['train_objects']} boxes, "
          f"{steps} updates in {train_s:.1f} s wall ({train_cpu:.1f} s CPU, 1 thread); "
          f"{size.proposals} proposals per picture, {result['detect_ms_per_image']} ms per picture")
    cols = [f"detector_recall@{k}" for k in ks] + ["detector_recall_iou0.7", "upload_6_recall"]
    names = {"detector_recall_iou0.7": "IoU>=0.7@16", "upload_6_recall": "upload 6"}
    print(f"{'split':<14}{'images':>7}{'objects':>8}"
          + "".join(f"{names.get(c, c.replace('detector_', '')):>12}" for c in cols) + f"{'mean IoU':>10}")
    for r in rows:
        print(f"{r['split']:<14}{r['images']:>7}{r['objects']:>8}" + "".join(f"{100 * r[c]:>11.1f}%" for c in cols)
              + (f"{r['mean_iou_of_found']:>10.3f}" if r["mean_iou_of_found"] is not None else f"{'-':>10}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
