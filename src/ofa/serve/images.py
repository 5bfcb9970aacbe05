"""Decoding images that arrive over the network.

Request bytes are hostile until proven otherwise: a few kilobytes of PNG can claim a
100,000 x 100,000 canvas (a decompression bomb), and a damaged file can make a decoder raise
almost anything. The header's size is checked before any pixel is decoded, only common
formats are accepted, and every decoder failure becomes an :class:`ImageError` whose message
says why, which the server answers with 422. Strings are never treated as paths or URLs: the
server reads no file and fetches nothing on a client's behalf.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from ..preprocess import to_rgb

# Formats browsers and cameras produce (AVIF where this Pillow has it); rarer decoders are
# attack surface nobody needs here.
Image.init()
FORMATS = tuple(f for f in ("PNG", "JPEG", "WEBP", "AVIF", "GIF", "BMP", "TIFF")
                if f in Image.OPEN)
_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+(;[\w-]+=[\w.+-]+)*;base64,", re.I)
_URL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


class ImageError(InputError):
    """The image could not be accepted; the message is safe to show to the client."""


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
    if not data:
        raise ImageError("image is empty (0 bytes)")
    with warnings.catch_warnings():
        # Pillow only warns between its own limit and twice that; a bomb is a bomb
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=FORMATS) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise ImageError(
                        f"image is {width} x {height} = {width * height:,} pixels, above the "
                        f"server's limit of {max_pixels:,} (decompression bomb guard)")
                im.load()
                return to_rgb(im) if im.mode != "RGB" else im.copy()
        except ImageError:
            raise
        except UnidentifiedImageError:
            raise ImageError("image is not a readable image file (accepted formats: "
                             f"{', '.join(FORMATS)})") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(f"image rejected as a decompression bomb: {e}") from None
        except InputError as e:  # to_rgb on an exotic mode
            raise ImageError(str(e)) from None
        except MemoryError:
            raise ImageError("image needs more memory to decode than the server allows") from None
        except Exception as e:  # noqa: BLE001 - decoders raise many types on damaged input
            reason = str(e) or type(e).__name__
            raise ImageError(f"image is corrupt or truncated: {reason}") from None
