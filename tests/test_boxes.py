"""Box <-> <bin_b> conversion and code/bin token helpers."""

import math
import random
from pathlib import Path

import pytest
import torch

from ofa.boxes import (
    bin_from_token_id,
    bin_token_id,
    bins_to_box,
    box_to_bin_text,
    box_to_bins,
    code_from_token_id,
    code_token_id,
    is_bin_token,
    is_code_token,
    validate_box,
)
from ofa.errors import InputError
from ofa.tokenizer import BIN_OFFSET, CODE_OFFSET, OFATokenizer


def test_token_helpers_ints() -> None:
    assert code_token_id(0) == 50265 and code_token_id(8191) == 58456
    assert code_from_token_id(50265 + 77) == 77
    assert bin_token_id(0) == 58457 and bin_token_id(999) == 59456
    assert bin_from_token_id(58457 + 12) == 12
    assert is_bin_token(58457) and is_bin_token(59456) and not is_bin_token(59457)
    assert not is_bin_token(58456) and is_code_token(58456) and not is_code_token(50264)
    for fn, bad in [
        (code_token_id, 8192),
        (code_token_id, -1),
        (code_from_token_id, 58457),
        (bin_token_id, 1000),
        (bin_from_token_id, 58456),
        (bin_from_token_id, 2.5),
        (bin_token_id, True),
    ]:
        with pytest.raises(InputError):
            fn(bad)


def test_token_helpers_tensors() -> None:
    codes = torch.tensor([[0, 5], [8191, 100]])
    toks = code_token_id(codes)
    assert torch.equal(toks, codes + CODE_OFFSET)
    assert torch.equal(code_from_token_id(toks), codes)
    bins = torch.arange(1000)
    assert torch.equal(bin_from_token_id(bin_token_id(bins)), bins)
    mixed = torch.tensor([2, 50264, 50265, 58456, 58457, 59456])
    assert is_bin_token(mixed).tolist() == [False, False, False, False, True, True]
    assert is_code_token(mixed).tolist() == [False, False, True, True, False, False]
    with pytest.raises(InputError, match="8192"):
        code_token_id(torch.tensor([1, 8192]))
    with pytest.raises(InputError):
        bin_from_token_id(torch.tensor([58457.0]))


def test_box_to_bins_known_values() -> None:
    b = BIN_OFFSET
    assert box_to_bins((0, 0, 640, 480), (640, 480)) == [b, b, b + 999, b + 999]
    # 0.1 * 999 = 99.9 -> 100; 0.5 * 999 = 499.5 -> 500 (round half to even, like torch).
    assert box_to_bins((64, 48, 320, 240), (640, 480)) == [b + 100, b + 100, b + 500, b + 500]
    # 1.5/999 of the width: exactly 1.5 bins -> 2 (even); 2.5 bins -> 2 (even).
    assert box_to_bins((1.5, 2.5, 999, 999), (999, 999)) == [b + 2, b + 2, b + 999, b + 999]
    # Outside the image: clipped to the first/last bin.
    assert box_to_bins((-50, -1, 700, 1e6), (640, 480)) == [b, b, b + 999, b + 999]
    assert box_to_bin_text((64, 48, 320, 240), (640, 480)) == (
        "<bin_100> <bin_100> <bin_500> <bin_500>"
    )


def test_box_to_bins_matches_float64_formula() -> None:
    rng = random.Random(0)
    for _ in range(300):
        w, h = rng.randint(16, 4000), rng.randint(16, 4000)
        x0, x1 = sorted(rng.uniform(0, w) for _ in range(2))
        y0, y1 = sorted(rng.uniform(0, h) for _ in range(2))
        want = [round(v / s * 999) + BIN_OFFSET for v, s in ((x0, w), (y0, h), (x1, w), (y1, h))]
        assert box_to_bins((x0, y0, x1, y1), (w, h)) == want


@pytest.mark.parametrize(("convention", "tol_bins"), [("official", 0.5), ("mmpretrain", 1.5)])
def test_round_trip(convention: str, tol_bins: float) -> None:
    # official decodes with /(num_bins-1), the inverse of the encoder: error <= half a bin.
    # mmpretrain decodes with /num_bins: up to 0.1% of the side extra (1.5 bins at the far edge).
    rng = random.Random(1)
    for _ in range(300):
        w, h = rng.uniform(20, 3000), rng.uniform(20, 3000)
        x0, x1 = sorted(rng.uniform(0, w) for _ in range(2))
        y0, y1 = sorted(rng.uniform(0, h) for _ in range(2))
        box = bins_to_box(box_to_bins((x0, y0, x1, y1), (w, h)), (w, h), convention=convention)
        for got, want, side in zip(box, (x0, y0, x1, y1), (w, h, w, h), strict=True):
            assert abs(got - want) <= tol_bins * side / 999 + 1e-6 * side


def test_bins_to_box_values() -> None:
    ids = [BIN_OFFSET, BIN_OFFSET + 999, BIN_OFFSET + 999, BIN_OFFSET + 0]
    assert bins_to_box(ids, (640, 480)) == pytest.approx((0, 480, 640, 0))
    assert bins_to_box(ids, (640, 480), convention="mmpretrain") == pytest.approx(
        (0, 479.52, 639.36, 0)
    )
    mid = [BIN_OFFSET + 500] * 4
    assert bins_to_box(torch.tensor(mid), (1000, 300)) == pytest.approx(
        (500 / 999 * 1000, 500 / 999 * 300, 500 / 999 * 1000, 500 / 999 * 300)
    )
    # patch_size cancels out: the result is b / (num_bins - 1) * original side.
    same = bins_to_box(mid, (1000, 300))
    assert bins_to_box(mid, (1000, 300), patch_size=480) == pytest.approx(same)


def test_bins_to_box_errors() -> None:
    good = [BIN_OFFSET + i for i in (1, 2, 3, 4)]
    with pytest.raises(InputError, match="exactly 4"):
        bins_to_box(good[:3], (10, 10))
    with pytest.raises(InputError, match="exactly 4"):
        bins_to_box([*good, 2], (10, 10))
    with pytest.raises(InputError, match="bin token"):
        bins_to_box([*good[:3], CODE_OFFSET], (10, 10))
    with pytest.raises(InputError, match="convention"):
        bins_to_box(good, (10, 10), convention="hf")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="image size"):
        bins_to_box(good, (0, 10))


@pytest.mark.parametrize(
    "box",
    [
        (1, 2, 3),
        (1, 2, 3, 4, 5),
        (0, 0, math.nan, 1),
        (0, 0, math.inf, 1),
        (5, 0, 4, 1),
        (0, 5, 1, 4),
        "0 0 1 1",
        (0, 0, "1", 1),
        None,
    ],
)
def test_bad_boxes(box: object) -> None:
    with pytest.raises(InputError):
        validate_box(box)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        box_to_bins(box, (10, 10))  # type: ignore[arg-type]


def test_validate_box_accepts_tensors_and_degenerate() -> None:
    assert validate_box(torch.tensor([1, 2, 3, 4])) == (1.0, 2.0, 3.0, 4.0)
    assert validate_box([2, 2, 2, 2]) == (2.0, 2.0, 2.0, 2.0)


def test_bin_text_reads_back_through_tokenizer(bpe_dir: Path) -> None:
    tok = OFATokenizer.from_dir(bpe_dir)
    box, size = (10.5, 20, 300, 200.25), (640, 427)
    prompt = "  what does the region describe? region: " + box_to_bin_text(box, size)
    ids = tok.encode(prompt, add_bos_eos=False)
    assert ids[-4:] == box_to_bins(box, size)
    assert ids[:-4] == [1437, 99, 473, 5, 976, 6190, 116, 976, 35]
