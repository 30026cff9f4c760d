"""Linear probes on a world's stored region features: do the features of the regions that cover
the objects carry shape, colour, size and texture? (Trained on VQA training images, tested on VQA
test images, neither of which the region CNN saw.) Each object is represented by its stored region
of highest IoU: its true box in an oracle world, the detector's box of it in a detector world
(objects no region covers with IoU >= 0.5 are left out and counted)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vlmt.data.synth import taxonomy as tx
from vlmt.data.synth.scene import iou
from vlmt.data.synth.world import SIZES, World, build
from vlmt.seeding import seeded

MIN_IOU = 0.5


def object_region_features(world: World, store, image_ids: list[int]) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Features of the stored region of highest IoU with each object (at least MIN_IOU), the
    object's labels, and how many objects no region covered."""
    feats: list[np.ndarray] = []
    labels: dict[str, list[int]] = {"shape": [], "colour": [], "size": [], "texture": []}
    missed = 0
    for i in image_ids:
        r = store[i]
        for o in world.scenes[i].objects:
            ious = [iou(o.box, (float(b[0]), float(b[1]), float(b[2]), float(b[3]))) for b in r.boxes]
            k = int(np.argmax(ious))
            if ious[k] < MIN_IOU:
                missed += 1
                continue
            feats.append(r.features[k])
            labels["shape"].append(tx.SHAPES.index(o.shape))
            labels["colour"].append(list(tx.COLOURS).index(o.colour))
            labels["size"].append(tx.SIZES.index(o.size))
            labels["texture"].append(tx.TEXTURES.index(o.texture))
    return np.stack(feats), {k: np.array(v) for k, v in labels.items()}, missed


def linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *,
                 steps: int = 300, weight_decay: float = 1e-4, seed: int = 0) -> float:
    """Multinomial logistic regression (full-batch LBFGS on standardised features); test accuracy."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    xt = torch.from_numpy((x_train - mu) / sd).float()
    xe = torch.from_numpy((x_test - mu) / sd).float()
    yt = torch.from_numpy(y_train).long()
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    with seeded(seed):  # the probe's initial weights from its seed alone
        lin = torch.nn.Linear(xt.shape[1], n_classes)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(lin(xt), yt) + weight_decay * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((lin(xe).argmax(1).numpy() == y_test).mean())


def probe_world(out: str | Path, size: str, seed: int = 0) -> dict[str, float]:
    """Probe accuracies (fractions) for shape, colour, size and texture on a generated world."""
    from vlmt.data.features.store import FeatureStore

    world = build(SIZES[size], seed)
    store = FeatureStore(Path(out) / "features")
    x_tr, y_tr, missed_tr = object_region_features(world, store, world.main_ids("train"))
    test_ids = world.main_ids("val") + world.main_ids("test")
    x_te, y_te, missed_te = object_region_features(world, store, test_ids)
    result = {k: linear_probe(x_tr, y_tr[k], x_te, y_te[k]) for k in y_tr}
    result["num_train_regions"] = len(x_tr)
    result["num_test_regions"] = len(x_te)
    result["objects_without_a_region"] = missed_tr + missed_te
    return result
