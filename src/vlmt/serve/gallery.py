"""The test pictures a served model can be tried on: found from the data section the model was
trained with, when that data is on this machine (a world in the cache, an easy-VQA conversion or a
dataset folder). Nothing is generated or downloaded: without its data a model is served without a
gallery, and clients upload pictures.

Which pictures: the test split of the first dataset of the section that has one
(`vlmt.data.datasets.find_test_images`: the Karpathy captions first, with their captions, so
retrieval has candidates; else the images of the VQA test questions), each only when its file
exists. The section's `root` and each dataset's file names are read by the same modules training
reads them with.

Where from: only inside the gallery roots the operator named (`vlmt serve --gallery-root`, plus
vlmt's cache of worlds and conversions), so a model folder's `config.json` cannot make the server
show pictures from anywhere else on its disk. A gallery's `source` is said without the server's
paths (it is shown to clients); `folder` keeps the path for the server itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vlmt.data.datasets import find_test_images, source_folder, source_name
from vlmt.errors import VlmtError


@dataclass(frozen=True)
class GalleryImage:
    image_id: int
    path: Path
    captions: tuple[str, ...] = ()


@dataclass
class Gallery:
    """Test pictures with their captions (possibly none); `source` says where they came from (in
    words a client may see: the data's name, never a path), `folder` is that data's folder and
    `features` the feature store of its pictures (when the section names one)."""

    images: list[GalleryImage] = field(default_factory=list)
    source: str = ""
    folder: Path | None = None
    features: Path | None = None

    def __len__(self) -> int:
        return len(self.images)

    def captions(self) -> list[tuple[int, str]]:
        """(index of the image, caption) of every caption of the gallery."""
        return [(i, c) for i, im in enumerate(self.images) for c in im.captions]


def default_roots() -> list[Path]:
    """The gallery roots every server has: vlmt's cache (the worlds and the easy-VQA conversions)."""
    from vlmt.data.synth.cache import cache_root

    return [cache_root()]


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved.is_relative_to(root.resolve()) for root in roots)


def find_gallery(data: Any, *, limit: int = 48, roots: Sequence[Path] | None = None) -> Gallery:
    """Up to `limit` test pictures of a data section (a `DataConfig`, as a model's `config.json`
    records it), each file inside one of `roots` (default: `default_roots()`)."""
    roots = list(roots) if roots is not None else default_roots()
    spec = str(getattr(data, "root", "") or "")
    name = source_name(spec)
    folder = source_folder(spec)
    if folder is None:
        return Gallery(source=f"data {name!r} is not on this machine")
    if not _inside(folder, roots):
        return Gallery(source=f"data {name!r} is outside the gallery roots (vlmt serve --gallery-root FOLDER "
                              f"allows it)", folder=folder)
    try:
        dataset, found = find_test_images(folder, data.dataset_files())
    except (VlmtError, OSError, ValueError, KeyError) as e:  # a gallery is a convenience: serve without one
        reason = str(e).replace(str(folder), name)
        return Gallery(source=f"no gallery: {reason}", folder=folder)
    if not found:
        return Gallery(source=f"no test pictures in {name!r}", folder=folder)
    files = data.dataset_files()[dataset]
    pattern = str(getattr(files, "images", None) or getattr(data, "images", None) or "images/{image_id}.png")
    store = getattr(files, "features", None) or getattr(data, "features", None)
    images = []
    for im in found:
        path = folder / pattern.format(image_id=im.image_id)
        if path.is_file() and _inside(path, roots):
            images.append(GalleryImage(im.image_id, path, im.captions))
        if len(images) == limit:
            break
    return Gallery(images, source=name, folder=folder, features=folder / store if store else None)
