"""Region proposals from pixels: a small one-stage detector trained on Visual Genome-style boxes.

The papers' regions come from a detector trained on Visual Genome ("bottom-up attention") and then
run over images it never saw. `ObjectDetector` plays that part for any RGB picture: a fully
convolutional trunk at stride 4 predicts, per cell, how likely an object's centre lies there (a
heatmap), the object's width and height and the centre's sub-cell offset, and (as an auxiliary
task that shapes the trunk, like the detector's class head) the object's name. `detect(pixels)`
takes the heatmap's local maxima, decodes their boxes, suppresses near duplicates (non-maximum
suppression, written here in plain torch) and returns exactly `boxes_per_image` boxes with scores,
best first, so every picture gives a fixed number of regions as the feature store expects.

Training (`train_detector`) sees only annotated boxes and names (e.g. the synthetic world's
Genome-like training split read through the Visual Genome reader); it never sees the pictures it
will later be run over. Everything is seeded through local generators (weights, flips, batch
order), so a seed gives the same weights on a given machine and thread count.
"""

from __future__ import annotations

import json
import math
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

DETECTOR_WEIGHTS = "detector.safetensors"
DETECTOR_META = "detector.json"


@dataclass(frozen=True)
class DetectorConfig:
    """Constructor arguments of `DetectorNet` and the decoding settings (stored with the weights)."""

    num_classes: int
    width: int = 32                 # channels of the stride-4 trunk
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1)  # one 3x3 conv per entry: the receptive field spans ~130 px
    boxes_per_image: int = 16       # proposals returned per picture
    nms_iou: float = 0.5            # a box overlapping a better one by more than this is dropped
    candidates: int = 100           # heatmap peaks decoded before suppression

    @property
    def stride(self) -> int:
        return 4


@dataclass(frozen=True)
class DetectorBox:
    """One annotated object for training: pixel box (x1, y1, x2, y2) and class index (-1: no name)."""

    box: tuple[float, float, float, float]
    label: int = -1


def _conv(c_in: int, c_out: int, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class DetectorNet(nn.Module):
    """Trunk (two stride-2 convs, then dilated 3x3 convs at stride 4) and four 1x1 heads:
    centre heatmap (1), log size in cells (2), centre offset in cells (2), class logits."""

    def __init__(self, config: DetectorConfig, *, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        w = config.width
        layers = [_conv(3, w // 2, stride=2), _conv(w // 2, w, stride=2)]
        layers += [_conv(w, w, dilation=d) for d in config.dilations]
        self.trunk = nn.Sequential(*layers)
        self.heatmap = nn.Conv2d(w, 1, 1)
        self.size = nn.Conv2d(w, 2, 1)
        self.offset = nn.Conv2d(w, 2, 1)
        self.classes = nn.Conv2d(w, config.num_classes, 1)
        self._init(generator)

    @torch.no_grad()
    def _init(self, generator: torch.Generator | None) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
        for head in (self.heatmap, self.size, self.offset, self.classes):
            nn.init.normal_(head.weight, std=0.01, generator=generator)
        assert self.heatmap.bias is not None
        self.heatmap.bias.fill_(-math.log((1 - 0.01) / 0.01))  # start every cell at p = 0.01

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (B, 3, H, W) in [0, 1], H and W multiples of the stride -> per-cell outputs."""
        x = self.trunk(images - 0.5)
        return {"heatmap": self.heatmap(x), "size": self.size(x), "offset": self.offset(x),
                "classes": self.classes(x)}


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box of a (N, 4) with every box of b (M, 4), pixel xyxy -> (N, M)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union, torch.zeros_like(inter))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first."""
    order = torch.argsort(scores, descending=True, stable=True)
    boxes = boxes[order]
    ious = box_iou(boxes, boxes)
    keep = torch.ones(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if keep[i]:
            later = torch.arange(len(order)) > i
            keep &= ~(later & (ious[i] > iou_threshold))
    return order[keep]


def _pad_to_stride(images: torch.Tensor, stride: int) -> torch.Tensor:
    h, w = images.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    return F.pad(images, (0, pw, 0, ph), mode="replicate") if ph or pw else images


def _as_batch(images: Sequence[np.ndarray]) -> torch.Tensor:
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"images of one batch must share a shape, got {sorted(shapes)}")
    arr = np.stack([np.asarray(im, dtype=np.uint8) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0


def check_image(pixels: object) -> np.ndarray:
    """`pixels` as an (H, W, 3) uint8 array; a ValueError saying what is wrong otherwise."""
    if not isinstance(pixels, np.ndarray):
        raise ValueError(f"pixels must be an (H, W, 3) uint8 numpy array, got {type(pixels).__name__}")
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"pixels must be an (H, W, 3) RGB array, got shape {pixels.shape}")
    if pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8 (0-255), got dtype {pixels.dtype}")
    if pixels.shape[0] < 8 or pixels.shape[1] < 8:
        raise ValueError(f"the picture is too small to detect objects in: {pixels.shape[1]} x {pixels.shape[0]}")
    return pixels


class ObjectDetector:
    """A trained `DetectorNet` with its class names: `detect(pixels)` gives a picture's proposals."""

    def __init__(self, model: DetectorNet, class_names: Sequence[str]):
        self.model = model.eval()
        self.class_names = list(class_names)

    @property
    def config(self) -> DetectorConfig:
        return self.model.config

    @property
    def boxes_per_image(self) -> int:
        return self.config.boxes_per_image

    def settings(self) -> dict[str, Any]:
        """What a model folder records about how its regions were proposed."""
        c = self.config
        return {"method": "detector", "boxes_per_image": c.boxes_per_image, "nms_iou": c.nms_iou,
                "candidates": c.candidates, "stride": c.stride}

    def detect(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Proposals of one (H, W, 3) uint8 picture: boxes (N, 4) float32 pixel x1, y1, x2, y2 and
        scores (N,) float32 in [0, 1], best first, N = `boxes_per_image`."""
        boxes, scores = self.detect_batch([check_image(pixels)])
        return boxes[0], scores[0]

    @torch.no_grad()
    def detect_batch(self, images: Sequence[np.ndarray], *,
                     batch_size: int = 64) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """`detect` for many pictures at once (pictures of one shape are run together)."""
        boxes_out: list[np.ndarray] = [np.zeros((0, 4), np.float32)] * len(images)
        scores_out: list[np.ndarray] = [np.zeros(0, np.float32)] * len(images)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for k, im in enumerate(images):
            by_shape.setdefault(check_image(im).shape, []).append(k)
        for shape, idx in by_shape.items():
            for s in range(0, len(idx), batch_size):
                chunk = idx[s:s + batch_size]
                batch = _pad_to_stride(_as_batch([images[k] for k in chunk]), self.config.stride)
                out = self.model(batch)
                for j, k in enumerate(chunk):
                    b, sc = self._decode({n: t[j] for n, t in out.items()}, width=shape[1], height=shape[0])
                    boxes_out[k], scores_out[k] = b, sc
        return boxes_out, scores_out

    def _decode(self, out: dict[str, torch.Tensor], *, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        c, s = self.config, self.config.stride
        heat = torch.sigmoid(out["heatmap"][0])  # (h, w)
        gh, gw = heat.shape
        peak = heat == F.max_pool2d(heat[None, None], 3, stride=1, padding=1)[0, 0]
        # peaks first, then every other cell: a picture always yields enough candidates
        rank = heat + peak.float()
        top = torch.argsort(rank.flatten(), descending=True, stable=True)[:max(c.candidates, c.boxes_per_image)]
        ys, xs = top // gw, top % gw
        off = out["offset"][:, ys, xs]
        size = torch.exp(out["size"][:, ys, xs].clamp(-4, 6)) * s
        cx, cy = (xs.float() + off[0]) * s, (ys.float() + off[1]) * s
        boxes = torch.stack([cx - size[0] / 2, cy - size[1] / 2, cx + size[0] / 2, cy + size[1] / 2], 1)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        scores = heat.flatten()[top]
        valid = ((boxes[:, 2] - boxes[:, 0]) >= 2) & ((boxes[:, 3] - boxes[:, 1]) >= 2)
        order = torch.arange(len(top))
        kept = order[valid][nms(boxes[valid], scores[valid], c.nms_iou)]
        if len(kept) < c.boxes_per_image:  # fill with the best suppressed candidates, then the whole picture
            rest = order[~torch.isin(order, kept)]
            kept = torch.cat([kept, rest[torch.argsort(scores[rest], descending=True, stable=True)]])
        kept = kept[:c.boxes_per_image]
        out_boxes = boxes[kept].numpy().astype(np.float32)
        out_scores = scores[kept].numpy().astype(np.float32)
        if len(kept) < c.boxes_per_image:
            missing = c.boxes_per_image - len(kept)
            out_boxes = np.concatenate([out_boxes, np.tile(np.array([[0, 0, width, height]], np.float32),
                                                           (missing, 1))])
            out_scores = np.concatenate([out_scores, np.zeros(missing, np.float32)])
        return out_boxes, out_scores

    def save(self, folder: str | os.PathLike) -> None:
        """Weights as safetensors plus a JSON with the config and class names (both atomic)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / DETECTOR_WEIGHTS) as tmp:
            save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(tmp))
        write_json(folder / DETECTOR_META, {"config": asdict(self.config), "class_names": self.class_names})

    @classmethod
    def load(cls, folder: str | os.PathLike) -> ObjectDetector:
        """The detector saved in `folder`; a DataError naming the file otherwise."""
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            meta = json.loads((folder / DETECTOR_META).read_text(encoding="utf-8"))
            cfg = dict(meta["config"])
            cfg["dilations"] = tuple(cfg["dilations"])
            model = DetectorNet(DetectorConfig(**cfg))
            model.load_state_dict(load_file(str(folder / DETECTOR_WEIGHTS)))
            names = meta["class_names"]
        except (OSError, KeyError, TypeError, ValueError, RuntimeError) as e:
            raise DataError(folder / DETECTOR_META, f"cannot load the detector: {e}") from None
        return cls(model, names)


# ----------------------------------------------------------------------------- training

def _moved_box(box: Sequence[float], moves: Sequence[bool], width: int, height: int) -> tuple[float, ...]:
    """`box` after the picture's moves (transpose, then mirror left-right, then top-bottom)."""
    x1, y1, x2, y2 = box
    transpose, fx, fy = moves
    if transpose:
        x1, y1, x2, y2 = y1, x1, y2, x2
        width, height = height, width
    if fx:
        x1, x2 = width - x2, width - x1
    if fy:
        y1, y2 = height - y2, height - y1
    return x1, y1, x2, y2


def _move(batch: torch.Tensor, moves: torch.Tensor) -> torch.Tensor:
    """Transpose / mirror each picture of (B, 3, H, W) as its row of `moves` (B, 3) says."""
    if batch.shape[2] == batch.shape[3]:
        batch = torch.where(moves[:, 0, None, None, None], batch.transpose(2, 3), batch)
    batch = torch.where(moves[:, 1, None, None, None], batch.flip(3), batch)
    return torch.where(moves[:, 2, None, None, None], batch.flip(2), batch)


def _targets(objects: Sequence[Sequence[DetectorBox]], grid_h: int, grid_w: int, stride: int,
             moves: Sequence[Sequence[bool]], width: int, height: int) -> dict[str, torch.Tensor]:
    """Per-cell targets of a batch: Gaussian centre heatmap (one elliptic bump per object, sized
    by its box), and at each centre cell the log size, offset and class."""
    b = len(objects)
    heat = torch.zeros(b, grid_h, grid_w)
    size = torch.zeros(b, 2, grid_h, grid_w)
    offset = torch.zeros(b, 2, grid_h, grid_w)
    label = torch.full((b, grid_h, grid_w), -1, dtype=torch.long)
    centre = torch.zeros(b, grid_h, grid_w, dtype=torch.bool)
    yy = torch.arange(grid_h, dtype=torch.float32)[:, None]
    xx = torch.arange(grid_w, dtype=torch.float32)[None, :]
    for i, (objs, mv) in enumerate(zip(objects, moves)):
        for o in objs:
            x1, y1, x2, y2 = _moved_box(o.box, mv, width, height)
            cx, cy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
            gx, gy = min(int(cx), grid_w - 1), min(int(cy), grid_h - 1)
            sx = max((x2 - x1) / stride / 6, 0.5)
            sy = max((y2 - y1) / stride / 6, 0.5)
            bump = torch.exp(-((xx - gx) ** 2 / (2 * sx * sx) + (yy - gy) ** 2 / (2 * sy * sy)))
            heat[i] = torch.maximum(heat[i], bump)
            size[i, :, gy, gx] = torch.tensor([math.log(max(x2 - x1, 1.0) / stride),
                                               math.log(max(y2 - y1, 1.0) / stride)])
            offset[i, :, gy, gx] = torch.tensor([cx - gx, cy - gy])
            label[i, gy, gx] = o.label
            centre[i, gy, gx] = True
    return {"heat": heat, "size": size, "offset": offset, "label": label, "centre": centre}


def _focal_loss(logits: torch.Tensor, target: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """The centre-heatmap focal loss: centres pulled to 1, other cells to 0, less so near a centre."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = centre.float()
    pos_loss = -torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = -torch.log(1 - p) * p ** 2 * (1 - target) ** 4 * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


def detector_loss(out: dict[str, torch.Tensor], t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Heatmap focal loss + L1 on log size and offset at centres + cross-entropy on names there."""
    centre = t["centre"]
    heat = _focal_loss(out["heatmap"][:, 0], t["heat"], centre)
    m = centre[:, None].expand_as(t["size"])
    n = centre.sum().clamp(min=1)
    size = (out["size"] - t["size"]).abs()[m].sum() / n
    offset = (out["offset"] - t["offset"]).abs()[m].sum() / n
    named = t["label"] >= 0
    logits = out["classes"].permute(0, 2, 3, 1)[named]
    cls = F.cross_entropy(logits, t["label"][named]) if len(logits) else heat.new_zeros(())
    total = heat + size + offset + 0.5 * cls
    return {"loss": total, "heatmap": heat, "size": size, "offset": offset, "classes": cls}


def train_detector(images: Sequence[np.ndarray], objects: Sequence[Sequence[DetectorBox]], *,
                   class_names: Sequence[str], steps: int = 600, batch_size: int = 16, lr: float = 3e-3,
                   seed: int = 0, config: DetectorConfig | None = None,
                   log: list | None = None) -> ObjectDetector:
    """Train the detector on pictures and their annotated objects (each picture randomly
    transposed, mirrored and its colour channels shuffled; Adam with a one-cycle schedule for
    `steps` updates). Deterministic given `seed`."""
    if len(images) != len(objects):
        raise ValueError(f"{len(images)} images but {len(objects)} object lists")
    if not images:
        raise ValueError("no training images for the detector")
    if not any(objects):
        raise ValueError("no annotated objects to train the detector on")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    for k, objs in enumerate(objects):
        for o in objs:
            if not -1 <= o.label < len(class_names):
                raise ValueError(f"image {k}: object label {o.label} is outside the {len(class_names)} class names")
    config = config or DetectorConfig(num_classes=len(class_names))
    if config.num_classes != len(class_names):
        raise ValueError(f"config has {config.num_classes} classes, {len(class_names)} names given")
    gen = torch.Generator().manual_seed(seed)
    with seeded(seed):  # nn.Conv2d's own initialisation draws from the global generator first
        model = DetectorNet(config, generator=gen)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for k, im in enumerate(images):
        by_shape.setdefault(check_image(im).shape, []).append(k)
    groups = sorted(by_shape.values(), key=len, reverse=True)
    pixels = [_pad_to_stride(_as_batch([images[k] for k in g]), config.stride) for g in groups]
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    # a tenth of the updates warm up; OneCycleLR divides by zero when that is exactly one update
    warm = 0.1 if 0.1 * steps != 1 else 0.2
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=warm)
    weights = torch.tensor([len(g) for g in groups], dtype=torch.float)
    model.train()
    for step in range(steps):
        gi = int(torch.multinomial(weights, 1, generator=gen)) if len(groups) > 1 else 0
        g = groups[gi]
        pick = torch.randint(len(g), (min(batch_size, len(g)),), generator=gen)
        moves = torch.rand(len(pick), 3, generator=gen) < 0.5
        h, w = pixels[gi].shape[2], pixels[gi].shape[3]  # moves act on the padded picture
        if h != w:
            moves[:, 0] = False
        # colours say nothing about where objects are: shuffle the channels of each picture
        channels = torch.argsort(torch.rand(len(pick), 3, generator=gen), dim=1)
        batch = torch.gather(pixels[gi][pick], 1, channels[:, :, None, None].expand(-1, -1, h, w))
        batch = _move(batch, moves)
        out = model(batch)
        t = _targets([objects[g[int(k)]] for k in pick], out["heatmap"].shape[2], out["heatmap"].shape[3],
                     config.stride, moves.tolist(), w, h)
        losses = detector_loss(out, t)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        sched.step()
        if log is not None and (step + 1) % 50 == 0:
            log.append({"step": step + 1, **{k: round(float(v), 4) for k, v in losses.items()}})
    return ObjectDetector(model, class_names)


def recall_at_iou(true_boxes: Sequence[np.ndarray], proposals: Sequence[np.ndarray], *,
                  threshold: float = 0.5) -> tuple[int, int]:
    """(found, total): how many true boxes have a proposal of their picture with IoU >= threshold."""
    found = total = 0
    for t, p in zip(true_boxes, proposals):
        t = np.asarray(t, np.float32).reshape(-1, 4)
        if not len(t):
            continue
        total += len(t)
        if len(p):
            ious = box_iou(torch.from_numpy(t), torch.from_numpy(np.asarray(p, np.float32).reshape(-1, 4)))
            found += int((ious.max(1).values >= threshold).sum())
    return found, total
