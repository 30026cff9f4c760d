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
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from vlmt.data.features.detector import DETECTOR_META, ObjectDetector, check_image
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
    def details(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Everything behind the answer of `method` (the task's full result), with "task" (the task
        that answered), "variant" (its scorer, where several can answer) and "warnings".

        A batch: a list of pictures (`image=[...]`, or `regions=[(features, boxes), ...]`) and/or a
        list of texts for one text input (`question=[...]`) asks every text of every picture, and
        gives a list (over the pictures or the texts) or a list of lists (picture by picture, then
        text by text); see `details_many`."""
        candidates = self._offers.get(method, [])
        keys = {k for o in candidates for k in o.capability.when}
        selectors = {k: kwargs.pop(k) for k in list(kwargs) if k in keys}
        offer = self._offer(method, selectors)
        batch = self._as_batch(offer, args, kwargs)
        if batch is not None:
            pictures, texts, shared = batch
            return self._grid(method, pictures, texts, {**shared, **selectors})
        self._notes.warnings = []
        full = offer.run(self, *args, **kwargs)
        return self._finish(full, list(self._notes.warnings))

    @staticmethod
    def _finish(full: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
        warnings = list(warnings)
        if full.get("unknown_words"):
            warnings.append(f"words the model never saw (read as <unk>): {', '.join(full['unknown_words'])}")
        return {**full, "warnings": warnings}

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """The Python value of `method` (what `model.<method>(...)` returns); for a batch, a list (of
        lists) of them, as `details` nests them."""
        return self._values(method, self.details(method, *args, **kwargs))

    def _values(self, method: str, full: Any) -> Any:
        if isinstance(full, list):
            return [self._values(method, f) for f in full]
        offer = next(o for o in self._offers[method] if o.task_name == full["task"])
        return offer.capability.result(full)

    # -- batches ------------------------------------------------------------------------------------
    def _as_batch(self, offer: Offer, args: tuple[Any, ...], kwargs: dict[str, Any]
                  ) -> tuple[list[dict[str, Any]] | None, tuple[str, list[str]] | None, dict[str, Any]] | None:
        """(pictures, (text input, texts), the other inputs) when a call is a batch, else None."""
        import inspect

        try:
            bound = inspect.signature(getattr(offer.task, offer.capability.attribute)).bind(self, *args, **kwargs)
        except TypeError:
            return None  # the single call raises the task's own error
        named = dict(list(bound.arguments.items())[1:])
        kinds = {i.name: i.kind for i in offer.capability.inputs}
        pictures: list[dict[str, Any]] | None = None
        image, regions = named.get("image"), named.get("regions")
        if kinds.get("image") != "image":  # a call over many pictures by itself (retrieve, rank)
            image = regions = None
        if isinstance(image, (list, tuple)):
            if regions is not None:
                raise InvalidInput("give a list of pictures as image=[...] or as regions=[(features, boxes), ...], "
                                   "not both")
            pictures = [{"image": im} for im in image]
        elif isinstance(regions, (list, tuple)) and regions and isinstance(regions[0], (list, tuple)) \
                and len(regions[0]) == 2 and np.ndim(regions[0][0]) == 2:
            if named.get("boxes") is not None:
                raise InvalidInput("regions=[(features, boxes), ...] carries each picture's boxes: leave boxes= out")
            pictures = [{"regions": f, "boxes": b} for f, b in regions]
        listed = [k for k, v in named.items() if kinds.get(k) == "text" and isinstance(v, (list, tuple))]
        if len(listed) > 1:
            raise InvalidInput(f"a batch lists one text input, not {' and '.join(listed)}")
        if pictures is None and not listed:
            return None
        texts = (listed[0], [str(t) for t in named[listed[0]]]) if listed else None
        if (pictures is not None and not pictures) or (texts is not None and not texts[1]):
            raise InvalidInput("a batch needs at least one picture and one text")
        shared = {k: v for k, v in named.items()
                  if v is not None and k not in ("image", "regions", "boxes", *(listed[:1]))}
        if pictures is None:  # one picture, several texts: the picture goes with every call
            shared.update({k: named[k] for k in ("image", "regions", "boxes") if named.get(k) is not None})
        return pictures, texts, shared

    def _grid(self, method: str, pictures: list[dict[str, Any]] | None, texts: tuple[str, list[str]] | None,
              shared: dict[str, Any]) -> list[Any]:
        """Every text of every picture (`details`' batch), nested picture by picture, then text by text."""
        one_picture: dict[str, Any] = {k: shared.pop(k) for k in ("image", "regions", "boxes") if k in shared}
        picture_calls: list[dict[str, Any]] = pictures or [one_picture]
        text_calls = [{texts[0]: t} for t in texts[1]] if texts else [{}]
        flat = self.details_many(method, [{**p, **t} for p in picture_calls for t in text_calls], **shared)
        if pictures is None or texts is None:
            return flat
        n = len(text_calls)
        return [flat[i * n:(i + 1) * n] for i in range(len(picture_calls))]

    @torch.no_grad()
    def details_many(self, method: str, calls: Sequence[Mapping[str, Any]], *, batch_size: int = 32,
                     **shared: Any) -> list[dict[str, Any]]:
        """`details(method, **call, **shared)` for each call, in their order, faster than one by one:
        each distinct picture's regions are found once (calls naming one picture path, array or
        regions share them), `batch_size` pictures at a time through the detector and the region CNN,
        and a task with a batched form (`Capability.batch`) answers `batch_size` calls per pass.
        A call's picture is `image=` or `regions=` (with `boxes=`); an error names the call."""
        candidates = self._offers.get(method, [])
        keys = {k for o in candidates for k in o.capability.when}
        selectors = {k: shared.pop(k) for k in list(shared) if k in keys}
        offer = self._offer(method, selectors)
        wants_picture = any(i.kind == "image" for i in offer.capability.inputs)
        keyed: dict[Any, int] = {}  # a picture's key -> its index among the distinct pictures
        order: list[int] = []
        distinct: list[Mapping[str, Any]] = []
        for call in calls:
            if not wants_picture:
                order.append(-1)
                continue
            image, regions = call.get("image"), call.get("regions")
            key = ("regions", id(regions)) if regions is not None else \
                ("path", str(image)) if isinstance(image, (str, Path)) else ("object", id(image))
            if key not in keyed:
                keyed[key] = len(distinct)
                distinct.append(call)
            order.append(keyed[key])
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]] = []
        for start in range(0, len(distinct), batch_size):
            found.extend(self._regions_many(distinct[start:start + batch_size], first=start, calls=order))
        texts = {i.name for i in offer.capability.inputs if i.kind in ("text", "texts")}
        common = {k: shared.pop(k) for k in list(shared) if k in texts}  # a text every call asks: each call's own
        rest = [{**common, **{k: v for k, v in call.items() if k not in ("image", "regions", "boxes")}}
                for call in calls]
        batched = getattr(offer.task, offer.capability.batch) if offer.capability.batch and wants_picture else None
        results: list[dict[str, Any]] = []
        for start in range(0, len(calls), batch_size if batched is not None else 1):
            idx = range(start, min(start + (batch_size if batched is not None else 1), len(calls)))
            try:
                if batched is not None:
                    names = dict.fromkeys(k for i in idx for k in rest[i])
                    fulls = batched(self, [found[order[i]][:3] for i in idx],
                                    **{k: [rest[i].get(k) for i in idx] for k in names}, **shared)
                else:
                    given = ({"image": found[order[idx[0]]][2], "regions": found[order[idx[0]]][0],
                              "boxes": found[order[idx[0]]][1]} if wants_picture else {})
                    self._notes.warnings = []
                    fulls = [getattr(offer.task, offer.capability.attribute)(self, **given, **rest[idx[0]], **shared)]
            except InvalidInput as e:
                where = f"call {idx[0]}" if len(idx) == 1 else f"calls {idx[0]}-{idx[-1]}"
                raise InvalidInput(f"{where}: {e}") from None
            for i, full in zip(idx, fulls):
                notes = found[order[i]][3] if wants_picture else []
                results.append(self._finish({**full, "task": offer.task_name, "variant": offer.capability.variant},
                                            notes))
        return results

    def _regions_many(self, pictures: Sequence[Mapping[str, Any]], *, first: int = 0, calls: Sequence[int] = ()
                      ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]]:
        """(features, boxes, pixels, warnings) of each picture (`image=` or `regions=`/`boxes=`), the
        pictures found by one pass of the region CNN."""
        out: list[Any] = [None] * len(pictures)
        pending: list[tuple[int, np.ndarray, np.ndarray, float, np.ndarray, list[str]]] = []
        for k, picture in enumerate(pictures):
            try:
                self._notes.warnings = []
                if picture.get("regions") is not None or picture.get("image") is None:
                    feats, box, pixels = self.regions(picture.get("image"), regions=picture.get("regions"),
                                                      boxes=picture.get("boxes"))
                    out[k] = (feats, box, pixels, list(self._notes.warnings))
                    continue
                pixels, resized, scale = self._prepared(self._pixels(picture["image"]))
                pending.append((k, pixels, resized, scale, np.zeros((0, 4), np.float32), list(self._notes.warnings)))
            except InvalidInput as e:
                call = list(calls).index(first + k) if calls else first + k
                raise InvalidInput(f"call {call}: {e}") from None
        if pending:
            assert self.extractor is not None  # _prepared refused a model without one
            found = self._proposed([p[2] for p in pending])  # one detector pass for every picture
            pending = [(k, pixels, resized, scale, box, notes)
                       for (k, pixels, resized, scale, _, notes), box in zip(pending, found)]
            features = self.extractor.extract([p[2] for p in pending], [p[4] for p in pending])
            for (k, pixels, _, scale, box, notes), feats in zip(pending, features):
                out[k] = (feats, (box / scale).astype(np.float32), pixels, notes)
        return out

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
        pixels = self._pixels(image) if image is not None else None
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
        pixels, picture, scale, box = self._boxes(pixels)
        features = self.extractor.extract([picture], [box])[0]  # type: ignore[union-attr]  # _boxes checked it
        return features, (box / scale).astype(np.float32), pixels

    @staticmethod
    def _pixels(image: Any) -> np.ndarray:
        """(H, W, 3) uint8 pixels of a path, a PIL image or an array."""
        pixels = image if isinstance(image, np.ndarray) and image.ndim == 3 else None
        if pixels is None:
            if isinstance(image, (str, Path)):
                pixels = load_image(image)
            elif hasattr(image, "convert"):
                pixels = np.asarray(image.convert("RGB"))
            else:
                raise InvalidInput(f"image: expected a path, a PIL.Image or an H x W x 3 uint8 array, got "
                                   f"{type(image).__name__}")
        if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
            raise InvalidInput(f"image: expected an H x W x 3 uint8 array, got {pixels.dtype} {pixels.shape}")
        return pixels

    def _boxes(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        """(pixels, the picture resized as in training, the scale, its region boxes in the resized
        picture) of a picture, found the way the training regions were (`preprocess`)."""
        pixels, picture, scale = self._prepared(pixels)
        return pixels, picture, scale, self._proposed([picture])[0]

    def _prepared(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """(pixels, the picture resized as in training, the scale) of a picture whose regions this
        model can find from pixels (an InvalidInput otherwise, or a warning for oracle regions)."""
        dim = self.feature_dim
        method = self.preprocess.get("regions")
        if method == "feature_store" or self.extractor is None:
            raise InvalidInput("this model was trained on region features read from a feature store "
                               f"(e.g. bottom-up features), which it cannot compute from a picture; pass the picture's "
                               f"regions=(T, {dim}) features and boxes=(T, 4) instead (or `regions_from_store`)")
        picture, scale = self._resized(pixels)
        if method == "detector" and self.detector is not None:
            check_image(picture)  # the detector's own check, before the pictures go in one batch
        elif method == "oracle":
            self._warn("the model trained on regions from the world's true boxes (an ablation); a new picture's "
                       "regions are pixel proposals, so it is answered from worse regions than a test picture")
        return pixels, picture, scale

    def _proposed(self, pictures: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Region boxes of resized pictures (`_prepared`): the model's detector over all of them at
        once (pictures of one shape share a forward pass), else each picture's pixel proposals."""
        if self.preprocess.get("regions") == "detector" and self.detector is not None:
            return self.detector.detect_batch(list(pictures))[0]
        return [np.asarray(proposals(picture), dtype=np.float32) for picture in pictures]

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
