"""OFA-OCR's image preprocessing: text lines made square without distortion.

As OFA-Sys/OFA ``data/mm_data/ocr_dataset.py`` (``ocr_resize``) and ModelScope's
``preprocessors/ofa/ocr_recognition.py`` do: the long side is resized to the input size and
the short one by the same factor (truncated to an integer, at least 64 px), bicubic, then the
image is padded to a square by repeating its edge pixels, centred (the official training draws
the offset at random, also at evaluation; ModelScope centres, and so do the fixtures).
Document mode cuts a line resized to 64 x 1920 into four 64 x 480 pieces stacked top to
bottom before the padding.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["MIN_SIDE", "ocr_resize"]

MIN_SIDE = 64  # the short side never goes below this
DOCUMENT_PIECES = 4  # document mode: 64 x (4 * size) cut into 4 rows


def _pad_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Edge padding of an (h, w, 3) array to (size, size, 3), centred (odd pixel after)."""
    h, w = pixels.shape[:2]
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(pixels, ((top, size - h - top), (left, size - w - left), (0, 0)),
                  mode="edge")


def ocr_resize(image: Image.Image, size: int = 480, document: bool = False) -> Image.Image:
    """The ``size`` x ``size`` RGB input OFA-OCR reads for ``image`` (module docstring)."""
    image = image.convert("RGB")
    if document:
        line = np.asarray(image.resize((DOCUMENT_PIECES * size, MIN_SIDE), Image.BICUBIC))
        image = Image.fromarray(np.concatenate(np.split(line, DOCUMENT_PIECES, axis=1), axis=0))
    w, h = image.size
    if w >= h:
        new_w, new_h = max(MIN_SIDE, size), max(MIN_SIDE, int(size * (h / w)))
    else:
        new_w, new_h = max(MIN_SIDE, int(size * (w / h))), max(MIN_SIDE, size)
    resized = image.resize((new_w, new_h), Image.BICUBIC)
    return Image.fromarray(_pad_square(np.asarray(resized), size))
