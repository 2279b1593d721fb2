"""Downsized copies of the training images, kept with a fitted model as "what normal looks like".

Why a copy and not the path: a model is moved between machines and the service fits from uploads
it does not keep, so the training images themselves are usually gone when an inspection asks for
its nearest normal image (docs/METHOD.md, "Nearest normal reference"). A JPEG of at most
:data:`REFERENCE_MAX_SIDE` pixels on its long side is enough to compare by eye and costs some tens
of kilobytes per image.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from eagle_iad.images import ImageSource, load_rgb

#: Long side of a stored reference picture, in pixels (smaller images are kept at their size).
REFERENCE_MAX_SIDE = 512
REFERENCE_FORMAT = "jpeg"
REFERENCE_MEDIA_TYPE = "image/jpeg"
REFERENCE_SUFFIX = ".jpg"
_QUALITY = 88


def thumbnail(rgb: np.ndarray, max_side: int = REFERENCE_MAX_SIDE) -> bytes:
    """``rgb`` (``H x W x 3`` uint8) as JPEG bytes, shrunk so that its long side is at most ``max_side``."""
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    scale = max_side / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=_QUALITY, optimize=True)
    return buffer.getvalue()


def thumbnails(sources: Sequence[ImageSource | Path]) -> list[bytes]:
    """One reference picture per training image, in the training order (the bank's image ids)."""
    return [thumbnail(load_rgb(source)) for source in sources]


def pack(pictures: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """All pictures as one byte array and ``n + 1`` offsets (two tensors in the model's safetensors)."""
    offsets = np.zeros(len(pictures) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p in pictures])
    data = np.frombuffer(b"".join(pictures), dtype=np.uint8).copy()
    return data, offsets


def unpack(data: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    """The inverse of :func:`pack`; the caller has checked the offsets (monotone, within ``data``)."""
    raw = data.tobytes()
    return [raw[int(offsets[i]) : int(offsets[i + 1])] for i in range(len(offsets) - 1)]
