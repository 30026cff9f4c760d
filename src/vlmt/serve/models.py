"""The models a server holds: each MODEL argument of `vlmt serve` is an exported model folder, a
run folder, or a demo folder (`vlmt demo --out DIR`, whose report.json lists its runs); each model
keeps the test pictures of its data as a gallery, with their regions computed once."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vlmt import config as C
from vlmt.data.features.proposals import load_image
from vlmt.errors import ConfigError, VlmtError
from vlmt.inference.model import TrainedModel, load
from vlmt.serve.gallery import Gallery, default_roots, find_gallery
from vlmt.training import checkpoint as ckpt


@dataclass(frozen=True)
class Picture:
    """A picture to run a model on: its pixels and, for a gallery picture, the regions the dataset's
    feature store holds for it (the regions the model was evaluated on); None for an upload, whose
    regions come from the pixel proposals. Precomputed regions a client sends (a bottom-up TSV line,
    an id of the server's feature store) have no pixels."""

    pixels: np.ndarray | None
    features: np.ndarray | None = None
    boxes: np.ndarray | None = None
    source: str = ""  # where its regions came from when not its pixels or the gallery's store

    def inputs(self) -> dict[str, Any]:
        """Keyword arguments of the TrainedModel methods for this picture."""
        return {"image": self.pixels, "regions": self.features, "boxes": self.boxes}


@dataclass
class ServedModel:
    name: str
    model: TrainedModel
    gallery: Gallery
    regions: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # per gallery image
    sha256: str = ""  # of the weights served, so a client can tell which model answered

    @property
    def methods(self) -> list[str]:
        """The API's methods for it: the calls its tasks offer (answer, ground, retrieve, recognize, choose,
        and any a plugin's task declares), in the order of its tasks; the API's `retrieve` ranks the
        gallery with the Python call `rank`, which has no route of its own."""
        return [m for m in self.model.methods if m != "rank"]

    def describe(self) -> dict[str, Any]:
        return {"type": self.model.info["model_type"], "heads": self.model.heads, "methods": self.methods,
                "gallery": len(self.gallery), "gallery_source": self.gallery.source,
                "two_stage_retrieval": self.model.has_shortlist, "sha256": self.sha256}

    def gallery_pixels(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self.gallery):
            raise IndexError(index)
        return load_image(self.gallery.images[index].path)

    def gallery_picture(self, index: int) -> Picture:
        features, boxes = self.regions[index]
        return Picture(self.gallery_pixels(index), features, boxes)


def gallery_regions(model: TrainedModel, gallery: Gallery) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features, boxes) of every gallery picture: the feature store's when the data has one that
    holds it with the model's feature width, else computed from the pixels."""
    store = None
    if gallery.images and gallery.features is not None:
        from vlmt.data.features.store import FeatureStore

        try:
            store = FeatureStore(gallery.features)
        except (VlmtError, OSError):
            store = None
    out = []
    for im in gallery.images:
        stored = None
        if store is not None:
            try:
                record = store.read(im.image_id)
                if record.features.ndim == 2 and record.features.shape[1] == model.feature_dim:
                    stored = (np.asarray(record.features, np.float32), np.asarray(record.boxes, np.float32))
            except (VlmtError, KeyError, OSError):
                stored = None
        out.append(stored if stored is not None else model.regions(load_image(im.path))[:2])
    return out


def model_folders(path: Path) -> list[tuple[str, Path]]:
    """(name, folder) of every model a MODEL argument names."""
    if (path / "config.json").is_file() or (path / "model" / "config.json").is_file():
        return [(path.resolve().name, path)]
    report = path / "report.json"
    if report.is_file():
        runs = json.loads(report.read_text(encoding="utf-8")).get("runs", {})
        found = [(name, path / rel) for name, rel in runs.items() if ((path / rel) / "model" / "config.json").is_file()]
        if found:
            return found
        raise ConfigError(f"{report}: none of its runs ({', '.join(runs) or 'none'}) has a model folder; "
                          f"run `vlmt demo` again with this vlmt version")
    if not path.exists():
        raise ConfigError(f"{path}: no such folder")
    raise ConfigError(f"{path}: not a model folder (config.json + model.safetensors), a run folder (model/) "
                      f"or a demo folder (report.json)")


def weights_sha256(model: TrainedModel, folder: Path) -> str:
    """The checksum of the weights a model was loaded from: the one its export recorded (checked at
    load), else the file's, computed (a run folder's checkpoint)."""
    recorded = (model.info.get("checkpoint") or {}).get("sha256")
    if recorded:
        return str(recorded)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        weights = ckpt.find_checkpoint(folder) / "model.safetensors"
    return ckpt.sha256(weights) if weights.is_file() else ""


def load_models(paths: list[str | Path], *, device: str = "cpu", gallery_size: int = 48,
                gallery_roots: Sequence[Path] | None = None, log: Any = print) -> dict[str, ServedModel]:
    """Every model the paths name, loaded, each with its gallery's regions computed; gallery
    pictures only from inside `gallery_roots` (and vlmt's cache; see `vlmt.serve.gallery`)."""
    roots = [*default_roots(), *(Path(r) for r in gallery_roots or ())]
    served: dict[str, ServedModel] = {}
    for path in paths:
        for name, folder in model_folders(Path(path)):
            unique = name if name not in served else f"{name}-{len(served)}"
            model = load(folder, device=device)
            data = C.from_dict(model.info["experiment"], source=f"{folder} (experiment)").data
            gallery = find_gallery(data, limit=gallery_size, roots=roots)
            try:
                regions = gallery_regions(model, gallery)
            except VlmtError as e:  # e.g. no region extractor and no store: serve without a gallery
                gallery, regions = Gallery(source=f"no gallery: {e}"), []
            served[unique] = ServedModel(unique, model, gallery, regions, sha256=weights_sha256(model, folder))
            where = f"{gallery.source}, {gallery.folder}" if gallery.folder else gallery.source
            log(f"model {unique}: {model.describe_heads()}; gallery: {len(gallery)} pictures ({where})")
    if not served:
        raise ConfigError("no model to serve")
    return served
