"""Image files that claim a huge canvas in a few kilobytes (decompression bombs), for tests."""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_1bit(width: int, height: int) -> bytes:
    """A valid, all-black 1-bit greyscale PNG: ``width x height`` pixels that compress to
    about 1/1000 of their bit count (12000 x 12000 is ~20 KB on disk, 144 MB decoded)."""
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte "none", then the packed bits
    pack = zlib.compressobj(9)
    data = b"".join(pack.compress(row) for _ in range(height)) + pack.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data)
            + _chunk(b"IEND", b""))
