"""What a client sends, checked before a model sees it: every problem is an `InputError` with the
HTTP status to answer and a message that says what was wrong (the page shows the same message).

Pictures are decoded in memory from the uploaded bytes (nothing is written to disk), after their
header says they are small enough to decode, and only in the formats of `FORMATS`: Pillow is never
asked to try its other readers (EPS would run Ghostscript on the upload).
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from vlmt.errors import DataError, VlmtError


class InputError(VlmtError):
    """A request the server will not run; `status` is the HTTP status (4xx) to answer with."""

    def __init__(self, message: str, *, status: int = 400):
        super().__init__(message)
        self.status = status


FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")  # Pillow's names; a GIF or WebP is read at its first frame
FORMAT_NAMES = "PNG, JPEG, WebP, BMP or GIF"


@dataclass(frozen=True)
class Limits:
    """Bounds on a request. The defaults suit the pictures and questions of VQA datasets with a
    wide margin: a 4,000 x 4,000 photograph is 16 MP, a VQA question is under 30 words."""

    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 16_000_000
    max_side: int = 10_000
    max_text_chars: int = 500
    max_choices: int = 50
    max_top_k: int = 100
    max_pictures: int = 16  # pictures in one request (POST /api/answer takes several)
    max_batch: int = 64  # answers in one request: pictures x questions


def decode_image(data: bytes | None, limits: Limits, *, field: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of an uploaded picture file."""
    if data is None:
        raise InputError(f"missing field {field!r}: upload a picture ({FORMAT_NAMES})")
    if len(data) == 0:
        raise InputError(f"{field}: the uploaded file is empty")
    if len(data) > limits.max_upload_bytes:
        raise InputError(f"{field}: the file is {len(data):,} bytes; the limit is {limits.max_upload_bytes:,}",
                         status=413)
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as im:
            width, height = im.size
            if width < 1 or height < 1:
                raise InputError(f"{field}: the picture has no pixels ({width} x {height})")
            if width * height > limits.max_pixels or max(width, height) > limits.max_side:
                raise InputError(f"{field}: the picture is {width} x {height} pixels; the limit is "
                                 f"{limits.max_pixels:,} pixels and {limits.max_side:,} per side", status=413)
            im.seek(0)  # the first frame of an animation
            pixels = np.asarray(im.convert("RGB"))
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{field}: not a picture file in a served format ({FORMAT_NAMES})", status=415) from None
    except Image.DecompressionBombError as e:
        raise InputError(f"{field}: the picture is too large to decode ({e})", status=413) from None
    except (OSError, ValueError, SyntaxError) as e:  # truncated or damaged files
        raise InputError(f"{field}: the picture file is damaged or truncated ({e})") from None
    return check_pixels(pixels, limits, field=field)


def set_decoding_limits(limits: Limits) -> None:
    """Pillow's own bound on pixels for every decode in this process, whoever opens the file: it
    refuses a picture over twice `max_pixels` when the file is opened, before any pixel is read
    (its default is 179 MP); `decode_image` refuses one over `max_pixels` at the same point."""
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # decode_image says more


def check_pixels(pixels: object, limits: Limits, *, field: str = "image") -> np.ndarray:
    """An array a caller passes (the page's image component) as (H, W, 3) uint8 RGB."""
    if pixels is None:
        raise InputError(f"missing field {field!r}: pick or upload a picture")
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(f"{field}: expected an H x W x 3 picture, got an array of shape {arr.shape}")
    if arr.shape[0] * arr.shape[1] > limits.max_pixels:
        raise InputError(f"{field}: the picture is {arr.shape[1]} x {arr.shape[0]} pixels; the limit is "
                         f"{limits.max_pixels:,}", status=413)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr[:, :, :3])


def check_text(text: str | None, limits: Limits, *, field: str) -> str:
    """A question, sentence or caption: present, not blank, not absurdly long."""
    if text is None:
        raise InputError(f"missing field {field!r}")
    text = text.strip()
    if not text:
        raise InputError(f"{field}: empty; type some words")
    if len(text) > limits.max_text_chars:
        raise InputError(f"{field}: {len(text):,} characters; the limit is {limits.max_text_chars:,}")
    if not any(c.isalnum() for c in text):
        raise InputError(f"{field}: {text[:40]!r} has no word")
    return text


def check_top_k(value: object, limits: Limits, *, default: int = 5) -> int:
    """`top_k` as an integer in [1, max_top_k]; absent means `default`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        number = value if isinstance(value, (int, float)) else float(str(value))
        if isinstance(number, float) and not number.is_integer():
            raise ValueError
        k = int(number)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"top_k: expected a whole number from 1 to {limits.max_top_k}, got {str(value)[:40]!r}") \
            from None
    if not 1 <= k <= limits.max_top_k:
        raise InputError(f"top_k: expected a whole number from 1 to {limits.max_top_k}, got {k}")
    return k


def check_choices(values: list[str] | str | None, limits: Limits) -> list[str]:
    """Multiple-choice answers: a list, or one text with one choice per line or comma."""
    if values is None:
        raise InputError("missing field 'choices': give two or more candidate answers")
    if isinstance(values, str):
        values = [values]
    items = [c.strip() for v in values for c in v.replace("\n", ",").split(",") if c.strip()]
    if len(items) < 2:
        raise InputError("choices: give two or more candidate answers (one per line, or separated by commas)")
    if len(items) > limits.max_choices:
        raise InputError(f"choices: {len(items)} given; the limit is {limits.max_choices}")
    for item in items:
        check_text(item, limits, field="choices")
    return items


def decode_regions_tsv(data: bytes, limits: Limits, *, field: str = "regions") -> list[tuple[np.ndarray, np.ndarray]]:
    """(features (T, D), boxes (T, 4)) of each line of an uploaded bottom-up TSV file (the fields
    image_id, image_w, image_h, num_boxes, boxes, features; base64 float32), read by the same reader
    as `vlmt data convert`; a bad line is a 400 naming the line and the field."""
    from vlmt.data.features.convert import read_tsv

    if not data.strip():
        raise InputError(f"{field}: the uploaded file is empty; send bottom-up TSV lines (image_id, image_w, "
                         f"image_h, num_boxes, boxes, features)")
    if len(data) > limits.max_upload_bytes:
        raise InputError(f"{field}: the file is {len(data):,} bytes; the limit is {limits.max_upload_bytes:,}",
                         status=413)
    fd, name = tempfile.mkstemp(prefix="vlmt-regions-", suffix=".tsv")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        out = []
        for record in read_tsv(name):
            out.append((np.asarray(record.features, np.float32), np.asarray(record.boxes, np.float32)))
            if len(out) > limits.max_pictures:
                raise InputError(f"{field}: more than {limits.max_pictures} lines (pictures) in one request",
                                 status=413)
        return out
    except DataError as e:  # said without the temporary file's name: the client's file, its line and field
        where = "".join(f", {part}" for part in (f"record {e.record}" if e.record is not None else "",
                                                 f"field {e.field!r}" if e.field else "") if part)
        raise InputError(f"{field} (bottom-up TSV){where}: {e.reason}") from None
    finally:
        os.unlink(name)
