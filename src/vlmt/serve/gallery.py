"""The test pictures a served model can be tried on: found from the data section the model was
trained with, when that data is on this machine (a world in the cache, an easy-VQA conversion or a
dataset folder). Nothing is generated or downloaded: without its data a model is served without a
gallery, and clients upload pictures.

Which pictures: the test split of the Karpathy caption file (with their captions, so retrieval has
candidates), else the images of the VQA test questions, each only when its file exists.

Where from: only inside the gallery roots the operator named (`vlmt serve --gallery-root`, plus
vlmt's cache of worlds and conversions), so a model folder's `config.json` cannot make the server
show pictures from anywhere else on its disk. A gallery's `source` is said without the server's
paths (it is shown to clients); `folder` keeps the path for the server itself.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vlmt.data.readers.captions import read_karpathy
from vlmt.errors import ConfigError, VlmtError


@dataclass(frozen=True)
class GalleryImage:
    image_id: int
    path: Path
    captions: tuple[str, ...] = ()


@dataclass
class Gallery:
    """Test pictures with their captions (possibly none); `source` says where they came from (in
    words a client may see: the data's name, never a path), `folder` is that data's folder."""

    images: list[GalleryImage] = field(default_factory=list)
    source: str = ""
    folder: Path | None = None

    def __len__(self) -> int:
        return len(self.images)

    def captions(self) -> list[tuple[int, str]]:
        """(index of the image, caption) of every caption of the gallery."""
        return [(i, c) for i, im in enumerate(self.images) for c in im.captions]


def data_folder(data: dict[str, Any]) -> Path | None:
    """The folder a data section's `root` names, when it is on this machine (never prepared)."""
    root = str(data.get("root") or "")
    if root.startswith("world:"):
        from vlmt.data.sources import parse_world_source
        from vlmt.data.synth.cache import world_dir

        try:
            folder = world_dir(*parse_world_source(root))
        except ConfigError:
            return None
    elif root == "easy_vqa":
        from vlmt.data.synth.cache import cache_root

        found = sorted(cache_root().glob("easy_vqa*"))
        folder = next((f for f in found if "limit" not in f.name), found[0] if found else Path("-"))
    else:
        folder = Path(root).expanduser()
    return folder if folder.is_dir() else None


def _caption_file(folder: Path, data: dict[str, Any]) -> Path | None:
    name = (data.get("captions") or {}).get("file")
    if name:
        return folder / name if (folder / name).is_file() else None
    found = sorted(glob.glob(str(folder / "dataset_*.json")))
    return Path(found[0]) if found else None


def _vqa_test_ids(folder: Path, data: dict[str, Any]) -> list[int]:
    vqa = data.get("vqa") or {}
    pattern = vqa.get("questions") or data.get("vqa_questions") or "v2_OpenEnded_mscoco_{subtype}_questions.json"
    subtype = (vqa.get("subtypes") or data.get("vqa_splits") or {}).get("test", "test2015")
    path = folder / pattern.format(subtype=subtype)
    if not path.is_file():
        return []
    questions = json.loads(path.read_text(encoding="utf-8")).get("questions", [])
    return list(dict.fromkeys(int(q["image_id"]) for q in questions if isinstance(q, dict) and "image_id" in q))


def default_roots() -> list[Path]:
    """The gallery roots every server has: vlmt's cache (the worlds and the easy-VQA conversions)."""
    from vlmt.data.synth.cache import cache_root

    return [cache_root()]


def data_name(data: dict[str, Any]) -> str:
    """A data section's root as a client may see it: `world:tiny:0`, `easy_vqa`, or a folder's last name."""
    root = str(data.get("root") or "")
    if root.startswith("world:") or root == "easy_vqa" or not root:
        return root or "(no root)"
    return Path(root).name or root


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved.is_relative_to(root.resolve()) for root in roots)


def find_gallery(data: dict[str, Any], *, limit: int = 48, roots: Sequence[Path] | None = None) -> Gallery:
    """Up to `limit` test pictures of a data section (a model's `config.json` experiment `data`),
    each file inside one of `roots` (default: `default_roots()`)."""
    roots = list(roots) if roots is not None else default_roots()
    name = data_name(data)
    folder = data_folder(data)
    pattern = str(data.get("images") or "images/{image_id}.png")
    if folder is None:
        return Gallery(source=f"data {name!r} is not on this machine")
    if not _inside(folder, roots):
        return Gallery(source=f"data {name!r} is outside the gallery roots (vlmt serve --gallery-root FOLDER "
                              f"allows it)", folder=folder)
    images: list[GalleryImage] = []

    def allowed(path: Path) -> bool:
        return path.is_file() and _inside(path, roots)

    try:
        captions = _caption_file(folder, data)
        if captions is not None and _inside(captions, roots):
            for im in read_karpathy(captions):
                path = folder / pattern.format(image_id=im.image_id)
                if im.split == "test" and allowed(path):
                    images.append(GalleryImage(im.image_id, path, tuple(im.captions[:5])))
        if not images:
            for image_id in _vqa_test_ids(folder, data):
                path = folder / pattern.format(image_id=image_id)
                if allowed(path):
                    images.append(GalleryImage(image_id, path))
    except (VlmtError, OSError, ValueError, KeyError) as e:  # a gallery is a convenience: serve without one
        reason = str(e).replace(str(folder), name)
        return Gallery(source=f"no gallery: {reason}", folder=folder)
    return Gallery(images[:limit], source=name, folder=folder)
