"""Untrusted input: fuzzing the one image loader every path uses, and text that is not UTF-8.

The loader must answer any bytes with an RGB image or an ImageError, never another exception
and never by decoding more than the pixel limit; text with undecodable bytes (lone surrogates
in Python) must be one clear InputError naming where it came from."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ofa.errors import InputError
from ofa.preprocess import ImageError, read_image
from ofa.tokenizer import OFATokenizer, printable, require_utf8

MAX_PIXELS = 250_000  # keeps every accepted decode small, so each example stays fast
FUZZ = settings(max_examples=500, deadline=2000,
                suppress_health_check=[HealthCheck.too_slow])


def _encoded(fmt: str) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


SEEDS = {"PNG": _encoded("PNG"), "JPEG": _encoded("JPEG")}


def _image_or_image_error(data: bytes) -> None:
    start = time.perf_counter()
    try:
        img = read_image(data, max_pixels=MAX_PIXELS)
    except ImageError as e:
        assert str(e) and "\n" not in str(e)  # one line for the user
    else:
        assert img.mode == "RGB" and img.width * img.height <= MAX_PIXELS
    assert time.perf_counter() - start < 2.0


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_give_an_image_or_an_image_error(data: bytes) -> None:
    _image_or_image_error(data)


@FUZZ
@given(kind=st.sampled_from(sorted(SEEDS)),
       edits=st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=12),
       cut=st.none() | st.integers(0, 4096))
def test_mutated_png_and_jpeg_give_an_image_or_an_image_error(kind: str,
                                                                edits: list[tuple[int, int]],
                                                                cut: int | None) -> None:
    data = bytearray(SEEDS[kind])
    for pos, value in edits:  # header fields (sizes, lengths, CRCs) are early bytes
        data[pos % len(data)] = value
    _image_or_image_error(bytes(data[:cut]))


def test_the_seeds_themselves_decode() -> None:
    for data in SEEDS.values():
        assert read_image(data, max_pixels=MAX_PIXELS).size == (32, 24)


# ---------------------------------------------------------------------- text


def test_require_utf8_names_the_input_and_the_bad_byte() -> None:
    assert require_utf8("naïve café ✓", "question") == "naïve café ✓"
    # how Python keeps the byte 0xff of `ofa vqa -q $'what \xff'` in sys.argv
    with pytest.raises(InputError) as e:
        require_utf8("what \udcff", "--question")
    assert str(e.value) == ("--question is not valid UTF-8 text (byte 0xff at character 6 "
                            "of 'what \\xff')")
    with pytest.raises(InputError, match=r"lone surrogate U\+D800 at character 2"):
        require_utf8("a\ud800", "prompt")
    assert printable("bad \udcff name.png") == "bad \\xff name.png"
    assert printable("ok") == "ok"
    printable("x\ud800\udcff").encode("utf-8")  # mixed kinds: still printable


def test_tokenizer_refuses_lone_surrogates_clearly(bpe_dir) -> None:
    tok = OFATokenizer.from_dir(bpe_dir)
    # the tokenizers library would raise "TypeError: TextInputSequence must be str"
    with pytest.raises(InputError, match="text is not valid UTF-8 text"):
        tok.encode(" what \udcff")
    with pytest.raises(InputError, match=r"texts\[1\] is not valid UTF-8 text"):
        tok.encode_batch(["fine", "bad \udcff"])
