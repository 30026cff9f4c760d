"""Region proposals computed from the pixels alone, for images without boxes (easy-VQA, a picture
given to `vlmt predict`), and image loading with one-line errors.

`proposals(image)` gives T = 6 boxes: the foreground box (the pixels that differ from the border
colour - exact for a shape on a plain background), the whole image and its four quadrants (sensible
regions even where the foreground box is not, e.g. a photo).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from vlmt.errors import DataError

REGIONS_PER_IMAGE = 6
# a pixel belongs to the foreground when one channel differs this much from the background colour
FOREGROUND_THRESHOLD = 48


def foreground_box(image: np.ndarray, *, threshold: int = FOREGROUND_THRESHOLD) -> tuple[float, float, float, float]:
    """Pixel box (x1, y1, x2, y2; x2/y2 exclusive) around the pixels that differ from the
    background colour (the median colour of the one-pixel border); the whole image when none do."""
    h, w = image.shape[:2]
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(np.int16)
    background = np.median(border, axis=0)
    mask = np.abs(image.astype(np.int16) - background).max(axis=2) > threshold
    if not mask.any():
        return (0.0, 0.0, float(w), float(h))
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def proposals(image: np.ndarray) -> np.ndarray:
    """(6, 4) float32 pixel boxes: the foreground box, the whole image, the four quadrants."""
    h, w = image.shape[:2]
    hw, hh = w / 2, h / 2
    boxes = [foreground_box(image), (0, 0, w, h),
             (0, 0, hw, hh), (hw, 0, w, hh), (0, hh, hw, h), (hw, hh, w, h)]
    return np.asarray(boxes, dtype=np.float32)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB array of an image file (PNG, JPEG, anything PIL reads); a DataError
    naming the file when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such image file")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(path, f"cannot read the image ({e})") from None
