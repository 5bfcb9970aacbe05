"""Decoding images that arrive over the network.

Request bytes are hostile until proven otherwise. They are decoded by the loader every image
goes through (:func:`ofa.preprocess.read_image`: the header's size is checked against the
pixel limit before any pixel is decoded, and every decoder failure becomes an
:class:`ImageError` whose message says why, which the server answers with 422), restricted
here to common formats. Strings are never treated as paths or URLs: the server reads no file
and fetches nothing on a client's behalf.
"""

from __future__ import annotations

import base64
import binascii
import re

from PIL import Image

from ..preprocess import ImageError, read_image

__all__ = ["FORMATS", "ImageError", "decode_base64", "decode_image"]

# Formats browsers and cameras produce (AVIF where this Pillow has it); rarer decoders are
# attack surface nobody needs here.
Image.init()
FORMATS = tuple(f for f in ("PNG", "JPEG", "WEBP", "AVIF", "GIF", "BMP", "TIFF")
                if f in Image.OPEN)
_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+(;[\w-]+=[\w.+-]+)*;base64,", re.I)
_URL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def decode_base64(text: str) -> bytes:
    """The bytes of a base64 image (a ``data:image/...;base64,`` prefix is allowed).

    A URL is refused by name, so nobody mistakes the server for one that fetches images."""
    text = text.strip()
    match = _DATA_URL.match(text)
    if match:
        text = text[match.end():]
    elif _URL.match(text):  # base64 has no ':', so this can only be a URL
        raise ImageError("image must hold the file's bytes (base64, or a multipart upload); "
                         "URLs are not fetched")
    compact = "".join(text.split())  # `base64` wraps lines at 76 characters
    if not compact:
        raise ImageError("image is empty")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError(f"image is not valid base64: {e}") from None


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode ``data`` to an RGB image of at most ``max_pixels`` pixels (first frame only)."""
    return read_image(data, max_pixels=max_pixels, name="image", formats=FORMATS)
