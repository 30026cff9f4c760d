"""A trained model on new inputs: `vlmt.load(path)`.

`load` rebuilds a model and the heads of its tasks from a model folder (`vlmt export`) or a run
folder (its `model/` folder and a checkpoint: best, last or a step), with no dataset, no cache and no network, and
returns a `TrainedModel` whose methods are the capabilities its tasks declare
(`vlmt.tasks.capabilities`); with the shipped tasks:

    model = vlmt.load("exported/")
    model.answer("x.png", "what color is the square?", top_k=5)   # VQA head
    model.ground("x.png", "a red square left of a blue circle")   # grounding head
    model.retrieve(["a.png", "b.png"], ["a red square", "two circles"])   # retrieval head
    model.recognize("x.png")                                      # SVLR recognition
    model.choose("x.png", "what color is the square?", ["red", "blue", "green"])  # SVLR, also zero-shot

An image is a path, a `PIL.Image` or an H x W x 3 uint8 array: its regions are the pixel
proposals (`vlmt.data.features.proposals`) and their features come from the region CNN saved with
the model. A user with region features of their own (e.g. bottom-up features) passes them instead:
`regions=` (T, D) and `boxes=` (T, 4). Every call runs in eval mode without gradients, so the same
inputs always give the same outputs. `model.details(method, ...)` returns everything behind an answer
(attention, boxes, unknown words, which task and scorer answered); a task defined in a plugin adds
its own methods the same way.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vlmt.data.features.detector import DETECTOR_META, ObjectDetector
from vlmt.data.features.extractor import RegionExtractor
from vlmt.data.features.proposals import load_image, proposals
from vlmt.data.features.store import FeatureStore
from vlmt.errors import ConfigError, DataError, InvalidInput
from vlmt.tasks.capabilities import DECLARED_METHODS, Capability, Input, Offer, choose_offer, inputs_of, offers
from vlmt.training import checkpoint as ckpt
from vlmt.training.build import DETECTOR_DIR, EXTRACTOR, MODEL_FOLDER, Parts, build_from_model_folder

WEIGHTS = ckpt.WEIGHTS  # a model folder's weights: the same file name as a checkpoint's

def load(path: str | Path, *, checkpoint: str = "best", device: str = "cpu") -> TrainedModel:
    """The model of an exported folder (config.json + model.safetensors) or of a run folder (its
    `checkpoint`: best, else last), ready to use; nothing else is read."""
    path = Path(path)
    if (path / "config.json").is_file() and (path / WEIGHTS).is_file():
        folder, weights = path, path / WEIGHTS
    elif (path / MODEL_FOLDER / "config.json").is_file():
        folder = path / MODEL_FOLDER
        weights = ckpt.find_checkpoint(path, checkpoint) / WEIGHTS
    elif (path / "config.yaml").is_file():
        raise ConfigError(f"{path}: a run folder without {MODEL_FOLDER}/ (trained before vlmt saved model folders); "
                          f"train it again to use it with vlmt.load")
    elif path.is_dir():
        raise ConfigError(f"{path}: neither a model folder (config.json + {WEIGHTS}) nor a run folder")
    else:
        raise ConfigError(f"{path}: no such folder")
    info, parts = build_from_model_folder(folder, device=device)
    expected = (info.get("checkpoint") or {}).get("sha256") if folder == path else None
    if expected and ckpt.sha256(weights) != expected:
        raise DataError(weights, "does not match the checksum in config.json (damaged or cut short); export the "
                                 "model again")
    ckpt.load_weights(weights.parent, parts.objective)
    parts.objective.eval()
    extractor = RegionExtractor.load(folder / EXTRACTOR) if (folder / EXTRACTOR / RegionExtractor.META).is_file() \
        else None
    detector = ObjectDetector.load(folder / DETECTOR_DIR) if (folder / DETECTOR_DIR / DETECTOR_META).is_file() \
        else None
    return TrainedModel(info, parts, extractor=extractor, detector=detector, source=path)


class TrainedModel:
    """A model and the heads of its tasks; its methods are the capabilities the tasks declare (see
    `load`): `model.answer(...)`, `model.ground(...)`, ... and `model.details(method, ...)`."""

    def __init__(self, info: dict[str, Any], parts: Parts, *, extractor: RegionExtractor | None, source: Path,
                 detector: ObjectDetector | None = None):
        self.info = info
        # how the training data's regions were made (model folders from before it was recorded: pixel
        # proposals when a region CNN came with them, else a feature store)
        self.preprocess: dict[str, Any] = info.get("preprocess") or {
            "regions": "pixel_proposals" if extractor is not None else "feature_store"}
        self.detector = detector
        self._notes = threading.local()  # warnings of the call in progress, per serving thread
        self.parts = parts
        self.model = parts.model
        self.tasks = parts.tasks
        self.assets = parts.data
        self.extractor = extractor
        self.source = source
        self.device = next(parts.objective.parameters()).device
        self._offers = offers(self.tasks)

    def __repr__(self) -> str:
        return f"TrainedModel({self.info['model_type']}, heads: {self.describe_heads()}; from {self.source})"

    def __getattr__(self, name: str) -> Any:
        offered = self.__dict__.get("_offers")
        if offered is None or name.startswith("_"):
            raise AttributeError(name)
        if name not in offered and name not in DECLARED_METHODS:
            raise AttributeError(f"{name!r}: no task declares such a method; this model's methods: "
                                 f"{', '.join(offered) or 'none'} (heads: {self.describe_heads()})")

        def call(*args: Any, **kwargs: Any) -> Any:
            return self.call(name, *args, **kwargs)

        call.__name__ = name
        call.__doc__ = "; ".join(o.capability.summary for o in offered.get(name, ()))
        return call

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._offers))

    @property
    def heads(self) -> dict[str, str]:
        """Task name -> task type of every task the model was trained with."""
        return dict(self.info["tasks"])

    def save(self, path: str | Path) -> Path:
        """Write this model as an exported folder at `path` (a new folder, written whole or not at
        all: config.json, the weights, its assets, region CNN and detector, a model card), as
        `vlmt export` writes one; `vlmt.load(path)` answers as this model does. Returns the folder."""
        from vlmt.inference.export import save_loaded

        return save_loaded(self, path)

    def describe_heads(self) -> str:
        return ", ".join(f"{name} ({kind})" for name, kind in self.heads.items()) or "none"

    # -- capabilities -------------------------------------------------------------------------------
    @property
    def methods(self) -> list[str]:
        """The calls this model's tasks offer (answer, ground, retrieve, rank, recognize, choose, ...)."""
        return list(self._offers)

    def offers(self, method: str) -> list[Offer]:
        """The tasks offering `method`, in the order they answer."""
        return list(self._offers.get(method, ()))

    def capability(self, method: str) -> Capability:
        """The declaration of `method` by the task that answers it by default."""
        return self._offer(method, {}).capability

    def inputs(self, method: str) -> tuple[Input, ...]:
        """The inputs of `method` over every task offering it (selectors such as zero_shot last)."""
        return inputs_of(self.offers(method))

    def _offer(self, method: str, selectors: dict[str, Any]) -> Offer:
        candidates = self._offers.get(method)
        if not candidates:
            raise ConfigError(f"{method}: this model has no task that offers it; its heads: {self.describe_heads()}; "
                              f"its methods: {', '.join(self._offers) or 'none'}")
        chosen = choose_offer(candidates, selectors)
        if chosen is None:
            asked = ", ".join(f"{k}={v}" for k, v in selectors.items())
            have = "; ".join(f"{o.task_name} ({o.capability.variant or 'default'}: "
                             + ", ".join(f"{k}={v}" for k, v in o.capability.when.items()) + ")" for o in candidates)
            raise ConfigError(f"{method} with {asked}: no head of this model answers that; {method} is answered by "
                              f"{have} (heads: {self.describe_heads()})")
        return chosen

    @torch.no_grad()
    def details(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Everything behind the answer of `method` (the task's full result), with "task" (the task
        that answered) and "variant" (its scorer, where several can answer)."""
        candidates = self._offers.get(method, [])
        keys = {k for o in candidates for k in o.capability.when}
        selectors = {k: kwargs.pop(k) for k in list(kwargs) if k in keys}
        offer = self._offer(method, selectors)
        self._notes.warnings = []
        full = offer.run(self, *args, **kwargs)
        warnings = list(self._notes.warnings)
        if full.get("unknown_words"):
            warnings.append(f"words the model never saw (read as <unk>): {', '.join(full['unknown_words'])}")
        return {**full, "warnings": warnings}

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """The Python value of `method` (what `model.<method>(...)` returns)."""
        full = self.details(method, *args, **kwargs)
        offer = next(o for o in self._offers[method] if o.task_name == full["task"])
        return offer.capability.result(full)

    @property
    def has_shortlist(self) -> bool:
        """Whether a task ranks two-stage (a retrieval head with a shortlist head)."""
        return any(getattr(o.task, "shortlist", None) is not None for o in self.offers("rank"))

    # -- inputs -------------------------------------------------------------------------------------
    def regions(self, image: Any = None, *, regions: Any = None, boxes: Any = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(features (T, D), boxes (T, 4), pixels or None) of one image: given region features, or the
        pixel proposals of the picture with features from the model's region CNN."""
        dim = self.feature_dim
        pixels = None
        if image is not None:
            pixels = image if isinstance(image, np.ndarray) and image.ndim == 3 else None
            if pixels is None:
                pixels = load_image(image) if isinstance(image, (str, Path)) else np.asarray(image.convert("RGB"))
            if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
                raise InvalidInput(f"image: expected an H x W x 3 uint8 array, got {pixels.dtype} {pixels.shape}")
        if regions is not None:
            feats = np.asarray(regions, dtype=np.float32)
            box = np.asarray(boxes if boxes is not None else np.zeros((len(feats), 4)), dtype=np.float32)
            if feats.ndim != 2 or feats.shape[1] != dim or len(feats) < 1:
                raise InvalidInput(f"regions: expected (T, {dim}) region features with T >= 1, got {feats.shape}")
            if box.shape != (len(feats), 4):
                raise InvalidInput(f"boxes: expected ({len(feats)}, 4) boxes, got {box.shape}")
            return feats, box, pixels
        if pixels is None:
            raise InvalidInput("give an image (path, PIL.Image or H x W x 3 uint8 array) or regions=... and boxes=...")
        method = self.preprocess.get("regions")
        if method == "feature_store" or self.extractor is None:
            raise InvalidInput(f"{self.source}: this model was trained on region features read from a feature store "
                               f"(e.g. bottom-up features), which it cannot compute from a picture; pass the picture's "
                               f"regions=(T, {dim}) features and boxes=(T, 4) instead (or `regions_from_store`)")
        picture, scale = self._resized(pixels)
        if method == "detector" and self.detector is not None:
            box = self.detector.detect(picture)[0]
        else:
            box = np.asarray(proposals(picture), dtype=np.float32)
            if method == "oracle":
                self._warn("the model trained on regions from the world's true boxes (an ablation); a new picture's "
                           "regions are pixel proposals, so it is answered from worse regions than a test picture")
        features = self.extractor.extract([picture], [box])[0]
        return features, (box / scale).astype(np.float32), pixels

    def _warn(self, message: str) -> None:
        if getattr(self._notes, "warnings", None) is not None and message not in self._notes.warnings:
            self._notes.warnings.append(message)

    def _resized(self, pixels: np.ndarray) -> tuple[np.ndarray, float]:
        """The picture at the size the training pictures' regions were found at (its longer side
        that of a training picture, aspect kept), and the scale applied; a warning when it is far
        from the training pictures' size or shape."""
        trained = self.preprocess.get("picture")
        if not trained:
            return pixels, 1.0
        h, w = pixels.shape[:2]
        tw, th = int(trained["width"]), int(trained["height"])
        aspect, trained_aspect = w / h, tw / th
        if max(aspect / trained_aspect, trained_aspect / aspect) > 1.5 or not 0.5 <= max(w, h) / max(tw, th) <= 2.0:
            self._warn(f"the picture is {w} x {h}; the model was trained on pictures of {tw} x {th}, so it was resized "
                       f"and may be far from what the model knows")
        scale = max(tw, th) / max(w, h)
        if (w, h) == (tw, th) or abs(scale - 1.0) < 1e-9:
            return pixels, 1.0
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR)), scale

    def regions_from_store(self, store: str | Path, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(features, boxes) of one image of a feature store (`vlmt data convert` writes one from
        bottom-up TSV or HDF5 files): pass them as `regions=`, `boxes=`."""
        record = FeatureStore(store).read(image_id)
        return record.features, record.boxes

    @property
    def feature_dim(self) -> int:
        """The width D of the region features the model reads."""
        config = self.model.config
        dim = getattr(config, "region_feature_dim", None) or getattr(config, "region_dim", None)
        assert isinstance(dim, int)
        return dim
