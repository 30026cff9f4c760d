"""Region features from pixels: a small CNN trained to recognise the objects and attributes of
annotated regions (the analogue of the Visual Genome-trained detector behind "bottom-up"
features), then run over any boxes of any images to give one D-dim vector per region.

Regions are cut out of the image with bilinear sampling (`crop_regions`, an RoIAlign-style crop
to a fixed S x S grid in plain torch) and the network sees the crop plus the box geometry
(normalised corners and area), so the feature also carries where and how large the region is,
which a crop resized to S x S alone would lose (size words, spatial relations); the last 6
feature dims are that geometry, appended as is.

Nothing here is specific to the synthetic world: `RegionExtractor.extract(images, boxes)` takes
any RGB images and pixel boxes (e.g. easy-VQA images, user photos with their own proposals).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vlmt.errors import DataError
from vlmt.io import atomic_path, write_json
from vlmt.seeding import seeded

GEOMETRY_DIM = 6
CROPS = ("box", "square")  # what a region's crop shows: the box stretched to S x S, or a square around it
SQUARE_MARGIN = 0.15  # a "square" crop's side: the box's longer side plus this share of it on each end


def crop_window(boxes: torch.Tensor, crop: str) -> torch.Tensor:
    """(N, 4) pixel boxes -> the windows their crops sample. "box": the box itself (stretched to
    S x S, so a loose box changes the object's apparent shape); "square": a square centred on the
    box, its longer side plus SQUARE_MARGIN on each end, so the crop keeps the object's own aspect
    and outline whatever the box's (parts outside the picture repeat its border)."""
    if crop == "box":
        return boxes
    if crop != "square":
        raise ValueError(f"unknown crop {crop!r}; choose one of {', '.join(CROPS)}")
    x1, y1, x2, y2 = boxes.unbind(1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = torch.maximum(x2 - x1, y2 - y1) * (0.5 + SQUARE_MARGIN)
    return torch.stack([cx - half, cy - half, cx + half, cy + half], dim=1)


def box_geometry(boxes: torch.Tensor, width: torch.Tensor | float, height: torch.Tensor | float) -> torch.Tensor:
    """(N, 4) pixel xyxy boxes -> (N, 6): x1/W, y1/H, x2/W, y2/H, sqrt(area / image area), log(w/h)."""
    w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-3)
    h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-3)
    W = torch.as_tensor(width, dtype=boxes.dtype)
    H = torch.as_tensor(height, dtype=boxes.dtype)
    return torch.stack([boxes[:, 0] / W, boxes[:, 1] / H, boxes[:, 2] / W, boxes[:, 3] / H,
                        torch.sqrt(w * h / (W * H)), torch.log(w / h)], dim=1)


def crop_regions(images: torch.Tensor, boxes: torch.Tensor, image_index: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear crops of boxes resized to size x size.

    images: (B, C, H, W) float; boxes: (N, 4) pixel xyxy; image_index: (N,) long, which image
    each box is on. Returns (N, C, size, size)."""
    _, _, H, W = images.shape
    x1, y1, x2, y2 = boxes.unbind(1)
    # affine map from the output grid [-1, 1]^2 to the box in normalised image coordinates
    theta = torch.zeros(boxes.shape[0], 2, 3, dtype=images.dtype)
    theta[:, 0, 0] = (x2 - x1) / W
    theta[:, 0, 2] = (x1 + x2) / W - 1
    theta[:, 1, 1] = (y2 - y1) / H
    theta[:, 1, 2] = (y1 + y2) / H - 1
    grid = F.affine_grid(theta, [boxes.shape[0], images.shape[1], size, size], align_corners=False)  # (N, S, S, 2)
    out = images.new_empty(boxes.shape[0], images.shape[1], size, size)
    # sample each image once for all its boxes (grids stacked along height) instead of copying
    # the image per box: memory stays O(B * H * W), not O(N * H * W)
    for b in torch.unique(image_index).tolist():
        rows = (image_index == b).nonzero().flatten()
        g = grid[rows].reshape(1, len(rows) * size, size, 2)
        crops = F.grid_sample(images[b:b + 1], g, mode="bilinear", padding_mode="border", align_corners=False)
        out[rows] = crops.reshape(images.shape[1], len(rows), size, size).transpose(0, 1)
    return out


@dataclass(frozen=True)
class RegionCNNConfig:
    """Constructor arguments of `RegionCNN` (stored with the weights)."""

    num_objects: int
    num_attributes: int
    feature_dim: int = 128
    crop_size: int = 24
    channels: tuple[int, ...] = (16, 32, 64)
    crop: str = "box"  # one of CROPS (`crop_window`)


class RegionCNN(nn.Module):
    """Conv blocks over the crop -> flatten, concatenated with embedded box geometry -> FC -> ReLU: the
    region feature. Heads on the feature: object class (softmax over names + background) and
    attributes (independent sigmoids), as in the detector behind bottom-up features."""

    def __init__(self, *, num_objects: int, num_attributes: int, feature_dim: int = 128, crop_size: int = 24,
                 channels: Sequence[int] = (16, 32, 64), crop: str = "box"):
        super().__init__()
        if crop not in CROPS:
            raise ValueError(f"unknown crop {crop!r}; choose one of {', '.join(CROPS)}")
        self.config = RegionCNNConfig(num_objects, num_attributes, feature_dim, crop_size, tuple(channels), crop)
        blocks: list[nn.Module] = []
        c_in = 3
        for c in channels:
            blocks += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c
        self.conv = nn.Sequential(*blocks)
        side = crop_size // 2 ** len(channels)
        self.geometry = nn.Sequential(nn.Linear(GEOMETRY_DIM, 32), nn.ReLU(inplace=True))
        if feature_dim <= GEOMETRY_DIM:
            raise ValueError(f"feature_dim must exceed {GEOMETRY_DIM} (the box geometry is part of the feature)")
        self.fc = nn.Linear(c_in * side * side + 32, feature_dim - GEOMETRY_DIM)
        self.object_head = nn.Linear(feature_dim, num_objects + 1)  # last class = background
        self.attribute_head = nn.Linear(feature_dim, num_attributes)

    def features(self, crops: torch.Tensor, geometry: torch.Tensor) -> torch.Tensor:
        """crops (N, 3, S, S) in [0, 1], geometry (N, 6) -> features (N, D): D - 6 learned
        appearance dims (ReLU) followed by the 6 geometry values themselves, so size and position
        stay linearly readable (the "spatial features" many VQA models append to bottom-up ones)."""
        x = self.conv(crops - 0.5).flatten(1)
        appearance = F.relu(self.fc(torch.cat([x, self.geometry(geometry)], dim=1)))
        return torch.cat([appearance, geometry], dim=1)

    def forward(self, crops: torch.Tensor, geometry: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(crops, geometry)
        return {"features": f, "object_logits": self.object_head(f), "attribute_logits": self.attribute_head(f)}


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1]."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float() / 255.0


@dataclass(frozen=True)
class RegionExample:
    """One training region: its image (index into the image list), pixel box, object class
    (index into the object names, or -1 for background) and attribute indices."""

    image: int
    box: tuple[float, float, float, float]
    object: int
    attributes: tuple[int, ...] = ()


def _box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def genome_training_regions(images: Sequence, object_names: Sequence[str], attribute_names: Sequence[str], *,
                            seed: int = 0, background_per_image: int = 2) -> list[RegionExample]:
    """Training regions from Visual Genome-style images (`vlmt.data.examples.GenomeImage`, as the
    readers give them), indexed like `images`: every object whose first name is in
    `object_names` with its box and one jittered box of IoU >= 0.5 (labelled like the object, as
    a detector labels its positives), plus random background boxes (IoU < 0.3 with every object).
    Attributes outside `attribute_names` are ignored."""
    rng = np.random.default_rng(seed)
    obj_index = {n: k for k, n in enumerate(object_names)}
    att_index = {a: k for k, a in enumerate(attribute_names)}
    regions: list[RegionExample] = []
    for n, im in enumerate(images):
        W, H = float(im.width), float(im.height)
        boxes = []
        for o in im.objects:
            boxes.append(o.box)  # background boxes avoid every annotated object, named or not
            if not o.names or o.names[0] not in obj_index:
                continue
            label = obj_index[o.names[0]]
            atts = tuple(sorted({att_index[a] for a in o.attributes if a in att_index}))
            x1, y1, x2, y2 = o.box
            regions.append(RegionExample(n, (float(x1), float(y1), float(x2), float(y2)), label, atts))
            w, h = x2 - x1, y2 - y1
            for _ in range(5):
                cx, cy = (x1 + x2) / 2 + rng.uniform(-0.15, 0.15) * w, (y1 + y2) / 2 + rng.uniform(-0.15, 0.15) * h
                jw, jh = w * np.exp(rng.uniform(-0.15, 0.15)), h * np.exp(rng.uniform(-0.15, 0.15))
                j = (max(0.0, cx - jw / 2), max(0.0, cy - jh / 2), min(W, cx + jw / 2), min(H, cy + jh / 2))
                if j[2] - j[0] >= 2 and j[3] - j[1] >= 2 and _box_iou(j, o.box) >= 0.5:
                    regions.append(RegionExample(n, j, label, atts))
                    break
        for _ in range(background_per_image):
            for _try in range(10):
                bw, bh = rng.uniform(0.1, 0.6) * W, rng.uniform(0.1, 0.6) * H
                bx, by = rng.uniform(0, W - bw), rng.uniform(0, H - bh)
                b = (bx, by, bx + bw, by + bh)
                if all(_box_iou(b, o) < 0.3 for o in boxes):
                    regions.append(RegionExample(n, b, -1))
                    break
    return regions


# Labelling a proposal by its best-overlapping annotated object (`proposal_training_regions`): at
# least FOREGROUND_IOU -> that object; below BACKGROUND_IOU with every object -> background; in
# between -> not used (a box covering part of an object is neither a clean positive nor a clean
# negative). 0.5 is the detectors' positive threshold (and the recall / grounding criterion here);
# 0.3 is the background rule `genome_training_regions` already uses for its random boxes.
FOREGROUND_IOU = 0.5
BACKGROUND_IOU = 0.3


def proposal_training_regions(images: Sequence, proposals: Sequence[np.ndarray], object_names: Sequence[str],
                              attribute_names: Sequence[str], *, foreground_iou: float = FOREGROUND_IOU,
                              background_iou: float = BACKGROUND_IOU,
                              with_true_boxes: bool = True) -> list[RegionExample]:
    """Training regions from a detector's own boxes on Visual Genome-style images (`GenomeImage`s,
    with `proposals[n]` the (T, 4) pixel boxes the detector gave image n), so the region CNN learns
    to name objects from the boxes it will be given, as a detector's classification head learns
    from its proposals. Each proposal takes the object it overlaps most: IoU >= `foreground_iou`
    -> that object's first name and attributes (skipped when the name is not in `object_names`);
    IoU < `background_iou` with every object -> background; otherwise skipped. With
    `with_true_boxes`, every named object's own box is added too (as two-stage detectors add the
    annotated boxes to the proposals they train on). Indexed like `images`."""
    if len(images) != len(proposals):
        raise ValueError(f"{len(images)} images but {len(proposals)} proposal arrays")
    if not 0.0 <= background_iou <= foreground_iou <= 1.0:
        raise ValueError(f"need 0 <= background_iou <= foreground_iou <= 1, got {background_iou}, {foreground_iou}")
    obj_index = {n: k for k, n in enumerate(object_names)}
    att_index = {a: k for k, a in enumerate(attribute_names)}
    regions: list[RegionExample] = []
    for n, (im, props) in enumerate(zip(images, proposals)):
        labels: list[tuple[int, tuple[int, ...]] | None] = []
        for o in im.objects:
            if o.names and o.names[0] in obj_index:
                atts = tuple(sorted({att_index[a] for a in o.attributes if a in att_index}))
                labels.append((obj_index[o.names[0]], atts))
            else:
                labels.append(None)
        if with_true_boxes:
            for o, lab in zip(im.objects, labels):
                if lab is not None:
                    x1, y1, x2, y2 = (float(v) for v in o.box)
                    regions.append(RegionExample(n, (x1, y1, x2, y2), lab[0], lab[1]))
        for p in np.asarray(props, dtype=np.float32).reshape(-1, 4):
            box = (float(p[0]), float(p[1]), float(p[2]), float(p[3]))
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                continue
            ious = [_box_iou(box, o.box) for o in im.objects]
            best = int(np.argmax(ious)) if ious else -1
            top = ious[best] if ious else 0.0
            if top < background_iou:
                regions.append(RegionExample(n, box, -1))
            elif top >= foreground_iou and labels[best] is not None:
                lab = labels[best]
                assert lab is not None
                regions.append(RegionExample(n, box, lab[0], lab[1]))
    return regions


def _crops_and_geometry(images: Sequence[np.ndarray], image_idx: np.ndarray, boxes: np.ndarray,
                        size: int, batch_images: int = 256, crop: str = "box") -> tuple[torch.Tensor, torch.Tensor]:
    """Crops (of each box's `crop_window`) and geometry (of the box itself) for boxes spread over
    many images, in chunks of images to bound memory."""
    crops = torch.empty(len(boxes), 3, size, size)
    geometry = torch.empty(len(boxes), GEOMETRY_DIM)
    order = np.argsort(image_idx, kind="stable")
    sorted_idx = image_idx[order]
    unique = np.unique(sorted_idx)
    for start in range(0, len(unique), batch_images):
        chunk = unique[start:start + batch_images]
        lo, hi = np.searchsorted(sorted_idx, chunk[0]), np.searchsorted(sorted_idx, chunk[-1], side="right")
        rows = order[lo:hi]
        local = {int(g): k for k, g in enumerate(chunk)}
        tensors = [image_tensor(images[int(g)]) for g in chunk]
        shapes = {t.shape for t in tensors}
        b = torch.from_numpy(boxes[rows]).float()
        window = crop_window(b, crop)
        if len(shapes) == 1:
            stack = torch.stack(tensors)
            idx = torch.tensor([local[int(g)] for g in image_idx[rows]], dtype=torch.long)
            crops[torch.from_numpy(rows)] = crop_regions(stack, window, idx, size)
        else:  # images of different sizes: one at a time
            for k, r in enumerate(rows):
                t = tensors[local[int(image_idx[r])]].unsqueeze(0)
                crops[int(r)] = crop_regions(t, window[k:k + 1], torch.zeros(1, dtype=torch.long), size)[0]
        for k, r in enumerate(rows):
            _, H, W = tensors[local[int(image_idx[r])]].shape
            geometry[int(r)] = box_geometry(b[k:k + 1], float(W), float(H))[0]
    return crops, geometry


class RegionExtractor:
    """A trained `RegionCNN` with its label names: `extract` gives features for any boxes."""

    WEIGHTS = "region_cnn.safetensors"
    META = "region_cnn.json"

    def __init__(self, model: RegionCNN, object_names: Sequence[str], attribute_names: Sequence[str]):
        self.model = model.eval()
        self.object_names = list(object_names)
        self.attribute_names = list(attribute_names)

    @property
    def feature_dim(self) -> int:
        return self.model.config.feature_dim

    @torch.no_grad()
    def extract(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray], *,
                batch_size: int = 1024) -> list[np.ndarray]:
        """Features (T_i, D) float32 for the (T_i, 4) pixel boxes of each (H, W, 3) uint8 image."""
        counts = [len(b) for b in boxes]
        flat = (np.concatenate([np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in boxes]) if boxes
                else np.zeros((0, 4), np.float32))
        image_idx = np.repeat(np.arange(len(images)), counts)
        out = np.zeros((len(flat), self.feature_dim), dtype=np.float32)
        size = self.model.config.crop_size
        for start in range(0, len(flat), batch_size * 4):
            sl = slice(start, start + batch_size * 4)
            crops, geometry = _crops_and_geometry(images, image_idx[sl], flat[sl], size, crop=self.model.config.crop)
            for s in range(0, len(crops), batch_size):
                out[start + s:start + s + batch_size] = self.model.features(
                    crops[s:s + batch_size], geometry[s:s + batch_size]).numpy()
        return np.split(out, np.cumsum(counts)[:-1]) if counts else []

    @torch.no_grad()
    def predict(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> list[list[dict[str, Any]]]:
        """Per image, per box: the most likely object name and the attributes scored above 0.5."""
        feats = self.extract(images, boxes)
        out = []
        for f in feats:
            t = torch.from_numpy(f)
            obj = self.model.object_head(t).argmax(1).tolist()
            att = torch.sigmoid(self.model.attribute_head(t)) > 0.5
            names = self.object_names + ["__background__"]
            out.append([{"object": names[o],
                         "attributes": [self.attribute_names[j] for j in a.nonzero().flatten().tolist()]}
                        for o, a in zip(obj, att)])
        return out

    def save(self, folder: str | os.PathLike) -> None:
        """Weights as safetensors plus a JSON with the constructor arguments and label names."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / self.WEIGHTS) as tmp:
            save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(tmp))
        write_json(folder / self.META, {"config": asdict(self.model.config), "object_names": self.object_names,
                                        "attribute_names": self.attribute_names})

    @classmethod
    def load(cls, folder: str | os.PathLike) -> RegionExtractor:
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            meta = json.loads((folder / cls.META).read_text(encoding="utf-8"))
            cfg = meta["config"]
            model = RegionCNN(num_objects=cfg["num_objects"], num_attributes=cfg["num_attributes"],
                              feature_dim=cfg["feature_dim"], crop_size=cfg["crop_size"], channels=cfg["channels"],
                              crop=cfg.get("crop", "box"))  # files written before the choice: "box"
            model.load_state_dict(load_file(str(folder / cls.WEIGHTS)))
        except (OSError, KeyError, ValueError, RuntimeError) as e:
            raise DataError(folder / cls.META, f"cannot load the region extractor: {e}") from None
        return cls(model, meta["object_names"], meta["attribute_names"])


def train_region_extractor(images: Sequence[np.ndarray], regions: Sequence[RegionExample], *,
                           object_names: Sequence[str], attribute_names: Sequence[str],
                           feature_dim: int = 128, crop_size: int = 24, epochs: int = 8,
                           batch_size: int = 128, lr: float = 2e-3, seed: int = 0, crop: str = "box",
                           log: list | None = None) -> RegionExtractor:
    """Train the CNN on labelled regions: cross-entropy over object names + background, and
    binary cross-entropy over attributes (object regions only). `crop`: what each crop shows
    (`crop_window`). Deterministic given `seed`."""
    if not regions:
        raise ValueError("no training regions")
    with seeded(seed):
        gen = torch.Generator().manual_seed(seed)
        model = RegionCNN(num_objects=len(object_names), num_attributes=len(attribute_names),
                          feature_dim=feature_dim, crop_size=crop_size, crop=crop)
        fit_region_cnn(model, images, regions, num_attributes=len(attribute_names), epochs=epochs,
                       batch_size=batch_size, lr=lr, generator=gen, log=log)
    return RegionExtractor(model, object_names, attribute_names)


def fit_region_cnn(model: RegionCNN, images: Sequence[np.ndarray], regions: Sequence[RegionExample], *,
                   num_attributes: int, epochs: int, batch_size: int, lr: float, generator: torch.Generator,
                   log: list | None = None) -> None:
    """Train `model` in place on labelled regions (Adam, one-cycle learning rate): cross-entropy over
    its object classes + background, BCE over attributes of object regions; `generator` orders the
    regions of each epoch. What `train_region_extractor` and easy-VQA's fine-tuning both run."""
    crop_size = model.config.crop_size
    boxes = np.array([r.box for r in regions], dtype=np.float32)
    image_idx = np.array([r.image for r in regions], dtype=np.int64)
    crops, geometry = _crops_and_geometry(images, image_idx, boxes, crop_size, crop=model.config.crop)
    bg = model.config.num_objects
    obj = torch.tensor([r.object if r.object >= 0 else bg for r in regions], dtype=torch.long)
    att = torch.zeros(len(regions), num_attributes)
    for i, r in enumerate(regions):
        att[i, list(r.attributes)] = 1.0
    is_obj = (obj != bg).float()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(regions) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(regions), generator=generator)
        total = 0.0
        for s in range(0, len(regions), batch_size):
            b = perm[s:s + batch_size]
            out = model(crops[b], geometry[b])
            loss_obj = F.cross_entropy(out["object_logits"], obj[b])
            per_att = F.binary_cross_entropy_with_logits(out["attribute_logits"], att[b], reduction="none").mean(1)
            loss_att = (per_att * is_obj[b]).sum() / is_obj[b].sum().clamp(min=1)
            loss = loss_obj + loss_att
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        if log is not None:
            log.append({"epoch": epoch + 1, "loss": total / len(regions)})
