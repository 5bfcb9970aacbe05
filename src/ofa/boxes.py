"""Boxes <-> OFA location tokens (``<bin_b>``) and image-code token helpers.

OFA squashes every grounding image to ``patch_size`` x ``patch_size`` (512), so a box is
quantised per axis relative to the original width/height: ``bin = round(x / w * (num_bins - 1))``.
``box_to_bins`` follows the official float32 arithmetic step by step (scale by the resize ratio,
divide by ``patch_size``, round half to even) so that ties land on the same bin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Literal, overload

import numpy as np
import torch

from ofa.errors import InputError
from ofa.tokenizer import BIN_OFFSET, CODE_OFFSET, NUM_BINS, NUM_CODES

__all__ = [
    "bin_from_token_id",
    "bin_token_id",
    "bins_to_box",
    "box_to_bin_text",
    "box_to_bins",
    "code_from_token_id",
    "code_token_id",
    "is_bin_token",
    "is_code_token",
    "validate_box",
]

Box = tuple[float, float, float, float]
Convention = Literal["official", "mmpretrain"]


# ---------------------------------------------------------------------- token helpers


def _to_int(x: object, what: str) -> int:
    # bool is an Integral too, but True as a token id is always a bug.
    if isinstance(x, bool) or not isinstance(x, Integral | np.integer):
        raise InputError(f"{what} must be an integer, got {x!r}")
    return int(x)


def _shift(x: int | torch.Tensor, lo: int, count: int, delta: int, what: str):
    """Return ``x + delta`` after checking ``lo <= x < lo + count`` (ints or integer tensors)."""
    if isinstance(x, torch.Tensor):
        if x.is_floating_point() or x.dtype == torch.bool:
            raise InputError(f"{what} tensor must hold integers, got {x.dtype}")
        if x.numel() and bool(((x < lo) | (x >= lo + count)).any()):
            bad = x[(x < lo) | (x >= lo + count)].flatten()[0].item()
            raise InputError(f"{what} {bad} is outside [{lo}, {lo + count})")
        return x + delta
    v = _to_int(x, what)
    if not lo <= v < lo + count:
        raise InputError(f"{what} {v} is outside [{lo}, {lo + count})")
    return v + delta


@overload
def code_token_id(code: int, code_offset: int = CODE_OFFSET) -> int: ...
@overload
def code_token_id(code: torch.Tensor, code_offset: int = CODE_OFFSET) -> torch.Tensor: ...
def code_token_id(code, code_offset=CODE_OFFSET):
    """Token id of VQGAN code ``code`` (0..8191): ``code + 50265`` (the tokenizer's
    ``code_offset`` for another vocabulary)."""
    return _shift(code, 0, NUM_CODES, code_offset, "image code")


@overload
def code_from_token_id(tok: int, code_offset: int = CODE_OFFSET) -> int: ...
@overload
def code_from_token_id(tok: torch.Tensor, code_offset: int = CODE_OFFSET) -> torch.Tensor: ...
def code_from_token_id(tok, code_offset=CODE_OFFSET):
    """VQGAN code of a ``<code_k>`` token id; InputError for any other id."""
    return _shift(tok, code_offset, NUM_CODES, -code_offset, "code token id")


@overload
def bin_token_id(b: int, num_bins: int = NUM_BINS, bin_offset: int = BIN_OFFSET) -> int: ...
@overload
def bin_token_id(b: torch.Tensor, num_bins: int = NUM_BINS,
                 bin_offset: int = BIN_OFFSET) -> torch.Tensor: ...
def bin_token_id(b, num_bins=NUM_BINS, bin_offset=BIN_OFFSET):
    """Token id of location bin ``b`` (0..num_bins-1): ``b + 58457`` (the tokenizer's
    ``bin_offset`` for another vocabulary: 29325 for the Chinese one)."""
    return _shift(b, 0, num_bins, bin_offset, "location bin")


@overload
def bin_from_token_id(tok: int, num_bins: int = NUM_BINS, bin_offset: int = BIN_OFFSET
                      ) -> int: ...
@overload
def bin_from_token_id(tok: torch.Tensor, num_bins: int = NUM_BINS,
                      bin_offset: int = BIN_OFFSET) -> torch.Tensor: ...
def bin_from_token_id(tok, num_bins=NUM_BINS, bin_offset=BIN_OFFSET):
    """Location bin of a ``<bin_b>`` token id; InputError for any other id."""
    return _shift(tok, bin_offset, num_bins, -bin_offset, "bin token id")


@overload
def is_bin_token(tok: int, num_bins: int = NUM_BINS, bin_offset: int = BIN_OFFSET) -> bool: ...
@overload
def is_bin_token(tok: torch.Tensor, num_bins: int = NUM_BINS,
                 bin_offset: int = BIN_OFFSET) -> torch.Tensor: ...
def is_bin_token(tok, num_bins=NUM_BINS, bin_offset=BIN_OFFSET):
    """True where ``tok`` is a ``<bin_b>`` id (bool tensor for tensor input)."""
    if isinstance(tok, torch.Tensor):
        return (tok >= bin_offset) & (tok < bin_offset + num_bins)
    return bin_offset <= _to_int(tok, "token id") < bin_offset + num_bins


@overload
def is_code_token(tok: int) -> bool: ...
@overload
def is_code_token(tok: torch.Tensor) -> torch.Tensor: ...
def is_code_token(tok):
    """True where ``tok`` is a ``<code_k>`` id (bool tensor for tensor input)."""
    if isinstance(tok, torch.Tensor):
        return (tok >= CODE_OFFSET) & (tok < CODE_OFFSET + NUM_CODES)
    return CODE_OFFSET <= _to_int(tok, "token id") < CODE_OFFSET + NUM_CODES


# ---------------------------------------------------------------------- boxes


def _image_size(image_size_wh: Sequence[float]) -> tuple[float, float]:
    try:
        w, h = (float(v) for v in image_size_wh)
    except (TypeError, ValueError):
        raise InputError(f"image size must be (width, height), got {image_size_wh!r}") from None
    if not (math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0):
        raise InputError(f"image size must be two positive numbers, got {image_size_wh!r}")
    return w, h


def _check_bins_args(patch_size: int, num_bins: int) -> None:
    if _to_int(patch_size, "patch_size") <= 0:
        raise InputError(f"patch_size must be positive, got {patch_size}")
    if not 2 <= _to_int(num_bins, "num_bins") <= NUM_BINS:
        raise InputError(f"num_bins must be in [2, {NUM_BINS}], got {num_bins}")


def validate_box(box_xyxy: Sequence[float]) -> Box:
    """Return ``(x0, y0, x1, y1)`` as floats; InputError unless 4 finite numbers, x0<=x1, y0<=y1."""
    if isinstance(box_xyxy, torch.Tensor | np.ndarray):
        box_xyxy = box_xyxy.tolist()
    if isinstance(box_xyxy, str) or not isinstance(box_xyxy, Sequence):
        raise InputError(f"box must be 4 numbers (x0, y0, x1, y1), got {box_xyxy!r}")
    if len(box_xyxy) != 4:
        raise InputError(f"box must have 4 numbers (x0, y0, x1, y1), got {len(box_xyxy)}")
    if not all(isinstance(v, Real) and not isinstance(v, bool) for v in box_xyxy):
        raise InputError(f"box must be 4 numbers (x0, y0, x1, y1), got {box_xyxy!r}")
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise InputError(f"box coordinates must be finite, got {box_xyxy!r}")
    if x0 > x1 or y0 > y1:
        raise InputError(
            f"box must be (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1 (top-left, bottom-right), "
            f"got {box_xyxy!r}"
        )
    return x0, y0, x1, y1


def box_to_bins(
    box_xyxy: Sequence[float],
    image_size_wh: Sequence[float],
    patch_size: int = 512,
    num_bins: int = NUM_BINS,
    bin_offset: int = BIN_OFFSET,
) -> list[int]:
    """Token ids ``[<bin_x0>, <bin_y0>, <bin_x1>, <bin_y1>]`` of a box in original pixels.

    Bins outside the image are clipped to ``[0, num_bins - 1]`` (the official code does not clip,
    but its boxes always lie inside the image).
    """
    _check_bins_args(patch_size, num_bins)
    box = validate_box(box_xyxy)
    w, h = _image_size(image_size_wh)
    # Official: ratios are Python floats, boxes float32 tensors (utils/transforms.py resize and
    # Normalize), then (v * (num_bins - 1)).round() which rounds half to even.
    w_ratio, h_ratio = patch_size / w, patch_size / h
    t = torch.tensor(box, dtype=torch.float32)
    t = t * torch.as_tensor([w_ratio, h_ratio, w_ratio, h_ratio], dtype=torch.float32)
    t = t / patch_size
    bins = (t * (num_bins - 1)).round().clamp(0, num_bins - 1).to(torch.long)
    return [int(b) + bin_offset for b in bins]


def box_to_bin_text(
    box_xyxy: Sequence[float],
    image_size_wh: Sequence[float],
    patch_size: int = 512,
    num_bins: int = NUM_BINS,
) -> str:
    """``"<bin_x0> <bin_y0> <bin_x1> <bin_y1>"`` for prompts (the tokenizer reads these back)."""
    ids = box_to_bins(box_xyxy, image_size_wh, patch_size, num_bins)
    return " ".join(f"<bin_{i - BIN_OFFSET}>" for i in ids)


def bins_to_box(
    token_ids: Sequence[int] | torch.Tensor,
    image_size_wh: Sequence[float],
    patch_size: int = 512,
    num_bins: int = NUM_BINS,
    convention: Convention = "official",
    bin_offset: int = BIN_OFFSET,
) -> Box:
    """Box ``(x0, y0, x1, y1)`` in original-image pixels from exactly 4 ``<bin_b>`` token ids.

    ``"official"`` (OFA eval_refcoco): ``b / (num_bins - 1) * patch_size / ratio``.
    ``"mmpretrain"``: ``b / num_bins * patch_size / ratio`` (about 0.1% smaller).
    The result is not clipped or reordered, as in both reference implementations.
    """
    _check_bins_args(patch_size, num_bins)
    if convention not in ("official", "mmpretrain"):
        raise InputError(f"convention must be 'official' or 'mmpretrain', got {convention!r}")
    if isinstance(token_ids, torch.Tensor | np.ndarray):
        token_ids = token_ids.tolist()
    if isinstance(token_ids, str) or not isinstance(token_ids, Sequence):
        raise InputError(f"expected 4 bin token ids, got {token_ids!r}")
    if len(token_ids) != 4:
        raise InputError(f"expected exactly 4 bin token ids, got {len(token_ids)}: {token_ids!r}")
    bins = [bin_from_token_id(_to_int(t, "bin token id"), num_bins, bin_offset)
            for t in token_ids]
    w, h = _image_size(image_size_wh)
    w_ratio, h_ratio = patch_size / w, patch_size / h
    denom = num_bins - 1 if convention == "official" else num_bins
    x0, y0, x1, y1 = (b / denom * patch_size for b in bins)
    return x0 / w_ratio, y0 / h_ratio, x1 / w_ratio, y1 / h_ratio
