"""Read a ShapesWorld image back into shapes and check it against a caption (for text-to-image).

A text-to-image model trained on ShapesWorld (``ofa.data.shapes``) is asked for "a large red
circle and a small blue square"; :func:`check` reads the generated picture and says whether it
shows that: the right colour+kind shapes (``colors``), at the right sizes (``sizes``), in the
caption's left-to-right order (``positions``), and how many unrequested shapes it also shows
(``extra``). Everything is a deterministic function of the pixels, tolerant of what a small
generator gets wrong: blurry edges, slight colour shifts, small specks, any resolution.

How an image is read (:func:`read_image`):

1. Background: the per-channel median of a thin ring of border pixels. ShapesWorld keeps every
   shape ``max(1, size // 64)`` px off the edge (``ShapesWorld._place``), and its textures move
   the background by at most 3 (noise) or 12 (gradient) per channel, so the median is the base
   colour to within a few units.
2. Foreground: each pixel is compared with the six segments from the background colour to a
   palette colour (``COLOR_RGB``). It belongs to colour ``c`` when it lies at least
   :data:`MASK_ALPHA` of the way along that segment (a blend of shape and background, from blur
   or resizing, counts by how much shape it holds, so masks keep their extent whatever the
   contrast) and that segment is the nearest such one, within :data:`COLOR_TOLERANCE`.
3. Shapes: 4-connected components of the foreground (any colour) with at least
   :data:`MIN_AREA` of the image. A component with two or more single-colour parts holding that
   many core pixels (touching shapes) is split into them; otherwise it is one shape of the
   colour most of its core pixels have (``alpha >= CORE_ALPHA``), so edge blends and stray
   pixels of another colour neither split nor recolour it.
4. Kind: the mask's row and column profiles (the share of its bounding box filled per row and
   per column) against those of the four kinds as ``shapes._draw_shape`` draws them, blurred as
   much as the shape's own edges are (measured from how many pixels are part-way between the
   background and the shape's colour): the nearest kind wins. ``"blob"`` when even the nearest
   is off by more than :data:`KIND_TOLERANCE` or the box is far from square
   (:data:`ASPECT_TOLERANCE`); every ShapesWorld kind fills a square frame.
5. Size word: the side of the square frame the shape would be drawn into, from the mask area
   and the kind's fill ratio (pi/4, 1, 1/2, 1/2), as a fraction of the image side, against the
   midpoint :data:`SIZE_SPLIT` of ShapesWorld's small and large ranges (``SIZE_RANGE``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ofa.data.shapes import (
    COLOR_RGB,
    COLORS,
    MAX_SHAPES,
    SHAPES,
    SIZE_RANGE,
    SIZES,
    _draw_shape,
)
from ofa.errors import InputError

__all__ = [
    "ASPECT_TOLERANCE",
    "COLOR_TOLERANCE",
    "CORE_ALPHA",
    "KIND_TOLERANCE",
    "MASK_ALPHA",
    "MIN_AREA",
    "ORDER_TOLERANCE",
    "SIZE_SPLIT",
    "TEMPLATE_BLURS",
    "TEMPLATE_ROUNDINGS",
    "UNKNOWN_KIND",
    "CheckResult",
    "Seen",
    "Wanted",
    "check",
    "label_components",
    "parse_caption",
    "read_image",
    "summary",
]

Box = tuple[float, float, float, float]

# Smallest ShapesWorld shape: a small triangle or diamond, frame side 0.20 of the image (the
# bottom of SIZE_RANGE["small"]), filling half its frame: 0.02 of the image. A component under a
# quarter of that is a speck.
MIN_AREA = 0.005
# RGB distance from a pixel to its colour's background->palette segment. Covers the scene colour
# jitter (COLOR_JITTER = 10 per channel, <= 17.4 in RGB), the textures (<= 12 per channel) and a
# further shift of 10 per channel; the nearest palette pair (yellow, orange) is 81 apart.
COLOR_TOLERANCE = 60.0
# Share of the way from the background to a colour from which a pixel is part of a shape. Not
# 0.5: halving a 128 px scene (bilinear) turns every edge at an odd coordinate into a row of
# exact half blends, which noise or JPEG would then keep or drop pixel by pixel, leaving ragged
# rows that read as a rounder kind.
MASK_ALPHA = 0.4
# Share of the way from the background to a colour from which a pixel votes for its shape's
# colour: an edge blend can lie nearer a neighbouring colour's segment (with jitter, the midpoint
# of beige and a blue shape lies nearer the beige-purple one) and must not outvote the inside.
CORE_ALPHA = 0.75
# Largest mean absolute error of a mask's row or column profile against its nearest kind's
# (_kind) for it to be that kind at all. Sharp templates are >= 0.157 apart this way (circle vs
# a square with rounded corners), blurred ones >= 0.1. Ground-truth renders of 600 test scenes at
# 64 px and up, blurred with radius 1 or not, reach 0.114 (99% under 0.075). A ring (0.14), a
# pentagon (0.15), a star (0.17) and a plus (0.18) are blobs.
KIND_TOLERANCE = 0.13
# Every ShapesWorld shape is drawn into a square frame and spans it both ways (Shape.box), so a
# box much longer one way than the other is no kind either; renders stay within 1.1 at 64 px.
ASPECT_TOLERANCE = 1.25
UNKNOWN_KIND = "blob"
# Frame side (fraction of the image side) between "small" (0.20-0.28) and "large" (0.36-0.46).
SIZE_SPLIT = (SIZE_RANGE["small"][1] + SIZE_RANGE["large"][0]) / 2
# Scene.relation_holds: centres closer than 0.15 of the image along an axis are too close to call.
ORDER_TOLERANCE = 0.15
# Blur levels (gaussian sigma over frame side) of the kind templates. A small shape (side ~13
# px) in a 64 px image blurred with radius 1 after a bilinear downscale is at about 0.085; a
# sharp shape's template rounds off none of its corners.
TEMPLATE_BLURS: tuple[float, ...] = (0.0, 0.03, 0.06, 0.09, 0.12)
# Corner roundings of the kind templates: radius of the circle each corner is rounded off with,
# as a fraction of the kind's inradius (1 would turn every kind into a circle), for the kinds in
# ROUNDED_KINDS. Not the diamond: rounded, it is what a small circle looks like on a pixel grid
# (a 15 px disc fits a diamond rounded by 0.5 better than a circle), and a circle has no corners.
TEMPLATE_ROUNDINGS: tuple[float, ...] = (0.0, 0.25, 0.5)
ROUNDED_KINDS: tuple[str, ...] = ("square", "triangle")

_TEMPLATE_SIDE = 240  # px of the frame the templates are drawn into
# Edge-width estimate: alpha is read with a dead zone of 0.1 at both ends (ignoring texture noise
# and colour jitter), after which a gaussian edge of sigma 1 px sums alpha * (1 - alpha) to
# 0.381 per unit of edge length (numerical integral of the clipped normal CDF).
_EDGE_DEAD_ZONE = 0.1
_EDGE_SUM_PER_SIGMA = 0.381
# Euclidean over 4-neighbour (L1) perimeter of a digital shape: pi/4 for a circle, 1 for a square,
# 1/sqrt(2) for a diamond; the middle value is close enough to pick a template blur level.
_PERIMETER_PER_TRANSITION = 0.8
_PALETTE = np.array([COLOR_RGB[c] for c in COLORS], dtype=np.float32)
# Area of each kind over the area of its square frame.
_FILL = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5, "diamond": 0.5}
_ITEM = re.compile(rf"^a ({'|'.join(SIZES)}) ({'|'.join(COLORS)}) ({'|'.join(SHAPES)})$")


@dataclass(frozen=True)
class Wanted:
    """One shape a caption asks for."""

    size: str
    color: str
    kind: str

    @property
    def name(self) -> str:
        """``"{colour} {kind}"``."""
        return f"{self.color} {self.kind}"


@dataclass(frozen=True)
class Seen:
    """One shape read from an image.

    ``box`` is the tight pixel box [x0, y0, x1, y1) of its mask (right/bottom exclusive, as
    ``ofa.data.shapes.Shape.box``), ``area`` the mask's pixel count, ``side`` the estimated
    frame side as a fraction of the image side (what ``size`` is decided from), ``blur`` the
    estimated gaussian sigma of its edges in pixels and ``fit`` the kind's mean absolute profile
    error (0 is perfect; ``kind`` is ``"blob"`` above KIND_TOLERANCE, or when the box's sides
    differ by more than ASPECT_TOLERANCE).
    """

    color: str
    kind: str
    size: str
    box: Box
    area: int
    side: float
    blur: float
    fit: float

    @property
    def center(self) -> tuple[float, float]:
        """Box centre (x, y), as ``Shape.center``."""
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    @property
    def name(self) -> str:
        """``"{colour} {kind}"``."""
        return f"{self.color} {self.kind}"


@dataclass(frozen=True)
class CheckResult:
    """How an image matches a caption.

    ``matches[i]`` is the index in ``seen`` of the shape matched to ``wanted[i]`` (None when
    none). Requested shapes are matched one-to-one to seen shapes of the same colour and kind,
    choosing the assignment that matches the most shapes, then gets all sizes and the order
    right, then all sizes, then the order, then the most sizes; the fields are read from that
    one assignment:

    - ``colors``: every requested shape is matched (colour AND kind). Unrequested shapes do not
      fail it: they are counted in ``extra`` (:attr:`exact` demands none).
    - ``sizes``: ``colors`` and every matched shape has the requested size word.
    - ``positions``: ``colors`` and the matched shapes are in the caption's left-to-right order,
      where two centres closer than ORDER_TOLERANCE of the image width count as a tie
      (``Scene.relation_holds`` never calls such a pair left or right).
    - ``extra``: seen shapes matched to no requested shape (specks under MIN_AREA are not seen).
    """

    colors: bool
    sizes: bool
    positions: bool
    extra: int
    wanted: tuple[Wanted, ...]
    seen: tuple[Seen, ...]
    matches: tuple[int | None, ...]

    @property
    def exact(self) -> bool:
        """Colours, sizes and positions all right and nothing unrequested."""
        return self.colors and self.sizes and self.positions and self.extra == 0

    def describe(self) -> str:
        """One line, the seen shapes left to right:
        ``"red circle (large) at (20, 31); blue square (small) at (60, 30)"``."""
        if not self.seen:
            return "no shapes"
        ordered = sorted(self.seen, key=lambda s: (s.center[0], s.center[1]))
        return "; ".join(f"{s.name} ({s.size}) at ({s.center[0]:.0f}, {s.center[1]:.0f})"
                         for s in ordered)


# ---- captions ----------------------------------------------------------------------------------
def parse_caption(caption: str) -> list[Wanted]:
    """The (size, colour, kind) triples of a ShapesWorld caption, in order.

    The grammar is ``Scene.caption``'s: items "a {size} {colour} {kind}" joined as "x", "x and
    y", "x, y and z"; case, runs of spaces, surrounding spaces and one final period are
    forgiven. Raises a one-line InputError for anything else, or for more than MAX_SHAPES items.
    """
    if not isinstance(caption, str):
        raise InputError(f"caption must be a string, got {type(caption).__name__}")
    shown = repr(caption if len(caption) <= 80 else caption[:77] + "...")
    text = " ".join(caption.lower().split())
    if text.endswith("."):
        text = text[:-1].rstrip()
    if not text:
        raise InputError(f"not a ShapesWorld caption: {shown} is empty")
    head, _, last = text.rpartition(" and ")
    parts = [*head.split(", "), last] if head else [text]
    wanted = []
    for part in parts:
        match = _ITEM.match(part)
        if match is None:
            raise InputError(f"not a ShapesWorld caption: {shown} ({part[:40]!r} is not "
                             f"'a {{size}} {{colour}} {{kind}}'; items are joined as "
                             f"'x, y and z')")
        wanted.append(Wanted(*match.groups()))
    if len(wanted) > MAX_SHAPES:
        raise InputError(f"not a ShapesWorld caption: {shown} has {len(wanted)} shapes, "
                         f"at most {MAX_SHAPES}")
    return wanted


# ---- pixels ------------------------------------------------------------------------------------
def _as_rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    """``image`` as a float32 H x W x 3 array of 0-255 values."""
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"), dtype=np.float32)
    elif isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise InputError(f"image array must be H x W x 3 (RGB), got shape {image.shape}")
        array = image[..., :3]
        if array.dtype == np.uint8:
            array = array.astype(np.float32)
        elif np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float32)
            if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
                raise InputError("a float image array must hold values in [0, 1]")
            array = array * 255.0
        else:
            raise InputError(f"image array must be uint8 or float in [0, 1], got {array.dtype}")
    else:
        raise InputError(f"image must be a PIL image or a numpy array, got "
                         f"{type(image).__name__}")
    if min(array.shape[:2]) < 16:
        raise InputError(f"image must be at least 16 x 16 pixels, got "
                         f"{array.shape[1]} x {array.shape[0]}")
    return array


def _background(rgb: np.ndarray) -> np.ndarray:
    """Median colour of a border ring 2% of the image side wide (at least 1 pixel)."""
    k = max(1, round(0.02 * min(rgb.shape[:2])))
    ring = np.concatenate([rgb[:k].reshape(-1, 3), rgb[-k:].reshape(-1, 3),
                           rgb[k:-k, :k].reshape(-1, 3), rgb[k:-k, -k:].reshape(-1, 3)])
    return np.median(ring, axis=0)


def _classes(rgb: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: 1 + index in COLORS of its colour (0 for background or off-palette), and
    whether it is a core pixel (at least CORE_ALPHA of the way to its colour)."""
    offsets = rgb - background  # H x W x 3
    directions = _PALETTE - background  # 6 x 3
    lengths = np.maximum((directions ** 2).sum(axis=1), 1.0)
    alpha = (offsets @ directions.T) / lengths  # H x W x 6: position along each segment
    # squared distance to the segment's line: |offset|^2 - alpha^2 |direction|^2
    residual = (offsets ** 2).sum(axis=2, keepdims=True) - alpha ** 2 * lengths
    residual = np.where(alpha >= MASK_ALPHA, residual, np.inf)
    best = residual.argmin(axis=2)[..., None]
    nearest = np.take_along_axis(residual, best, axis=2)[..., 0]
    classes = np.where(nearest <= COLOR_TOLERANCE ** 2, best[..., 0] + 1, 0)
    core = (classes > 0) & (np.take_along_axis(alpha, best, axis=2)[..., 0] >= CORE_ALPHA)
    return classes, core


def label_components(classes: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of equal non-zero values: labels 1..n (0 elsewhere), and n.

    Scanline union-find over horizontal runs, so the Python loops go over runs, not pixels.
    """
    h, w = classes.shape
    padded = np.zeros((h, w + 2), dtype=classes.dtype)
    padded[:, 1:-1] = classes
    rows, cols = np.nonzero(padded[:, 1:] != padded[:, :-1])  # a run starts or ends at cols
    runs: list[list[tuple[int, int, int]]] = [[] for _ in range(h)]
    for r in np.unique(rows).tolist():
        edges = cols[rows == r].tolist()
        for start, end in zip(edges, edges[1:], strict=False):
            value = int(classes[r, start])
            if value:
                runs[r].append((start, end, value))
    parent: list[int] = []

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    ids: list[list[int]] = []
    for r in range(h):
        above = runs[r - 1] if r else []
        above_ids = ids[r - 1] if r else []
        row_ids = []
        j = 0
        for start, end, value in runs[r]:
            me = len(parent)
            parent.append(me)
            row_ids.append(me)
            while j < len(above) and above[j][1] <= start:
                j += 1
            k = j
            while k < len(above) and above[k][0] < end:  # runs above that overlap this one
                if above[k][2] == value:
                    a, b = find(me), find(above_ids[k])
                    if a != b:
                        parent[max(a, b)] = min(a, b)
                k += 1
        ids.append(row_ids)
    labels = np.zeros((h, w), dtype=np.int32)
    numbers: dict[int, int] = {}
    for r in range(h):
        for (start, end, _), i in zip(runs[r], ids[r], strict=True):
            labels[r, start:end] = numbers.setdefault(find(i), len(numbers) + 1)
    return labels, len(numbers)


# ---- kinds -------------------------------------------------------------------------------------
def _polygon(kind: str, n: int, pad: int) -> np.ndarray:
    """The vertices shapes._draw_shape gives ``kind`` (not a circle) in a frame of side ``n``
    at offset ``pad``, as a float array [k, 2] of (x, y)."""
    x0, y0, r, b = pad, pad, pad + n - 1, pad + n - 1
    cx, cy = (x0 + r) / 2, (y0 + b) / 2
    corners = {"square": [(x0, y0), (r, y0), (r, b), (x0, b)],
               "triangle": [(x0, b), (cx, y0), (r, b)],
               "diamond": [(cx, y0), (r, cy), (cx, b), (x0, cy)]}[kind]
    return np.array(corners, dtype=np.float64)


def _rounded(vertices: np.ndarray, rounding: float, side: int) -> np.ndarray:
    """Bool [side, side] mask of a convex polygon whose corners are rounded off by circles of
    radius ``rounding`` times its inradius (a morphological opening by that disc). Square,
    triangle and diamond each have an incircle, so the polygon the disc's centre sweeps is the
    polygon shrunk about the incentre by (1 - rounding)."""
    edges = np.roll(vertices, -1, axis=0) - vertices
    normals = np.stack([edges[:, 1], -edges[:, 0]], 1)
    normals /= np.hypot(edges[:, 0], edges[:, 1])[:, None]
    if (((vertices - vertices.mean(0)) * normals).sum(1) < 0).any():  # point them outwards
        normals = -normals
    # incentre c and inradius r: n_i . (v_i - c) = r for every edge i
    system = np.concatenate([normals, np.ones((len(normals), 1))], 1)
    solution = np.linalg.lstsq(system, (normals * vertices).sum(1), rcond=None)[0]
    centre, inradius = solution[:2], float(solution[2])
    radius = rounding * inradius
    inner = centre + (vertices - centre) * (1.0 - rounding)
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float64)
    points = np.stack([xs, ys], -1)[..., None, :]  # [side, side, 1, 2]
    starts, spans = inner, np.roll(inner, -1, axis=0) - inner
    t = ((points - starts) * spans).sum(-1) / (spans * spans).sum(-1)
    nearest = starts + np.clip(t, 0.0, 1.0)[..., None] * spans
    distance = np.sqrt(((points - nearest) ** 2).sum(-1)).min(-1)
    inside = (((points - inner) * normals).sum(-1) <= 0).all(-1)
    return inside | (distance <= radius)


@functools.cache
def _templates() -> dict[str, tuple[tuple[tuple[np.ndarray, np.ndarray], ...], ...]]:
    """Per kind, per TEMPLATE_ROUNDINGS level, per TEMPLATE_BLURS level: the share of the
    bounding box filled per row (top to bottom) and per column (left to right) of the kind as
    shapes._draw_shape draws it (the triangle's apex at the top centre), its corners rounded,
    blurred, then cut at MASK_ALPHA as _classes cuts."""
    n, pad = _TEMPLATE_SIDE, _TEMPLATE_SIDE // 2
    out = {}
    for kind in SHAPES:
        drawn = Image.new("L", (n + 2 * pad, n + 2 * pad), 0)
        _draw_shape(ImageDraw.Draw(drawn), kind, (pad, pad, pad + n, pad + n), 255)
        per_rounding = []
        for rounding in TEMPLATE_ROUNDINGS:
            if rounding and kind in ROUNDED_KINDS:
                mask = _rounded(_polygon(kind, n, pad), rounding, n + 2 * pad)
                shape = Image.fromarray(mask.astype(np.uint8) * 255)
            else:
                shape = drawn
            profiles = []
            for blur in TEMPLATE_BLURS:  # PIL's GaussianBlur radius is the standard deviation
                image = shape.filter(ImageFilter.GaussianBlur(blur * n)) if blur else shape
                mask = np.asarray(image) >= MASK_ALPHA * 255
                ys = np.flatnonzero(mask.any(axis=1))
                xs = np.flatnonzero(mask.any(axis=0))
                crop = mask[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
                profiles.append((crop.mean(axis=1), crop.mean(axis=0)))
            per_rounding.append(tuple(profiles))
        out[kind] = tuple(per_rounding)
    return out


def _resample(profile: np.ndarray, n: int) -> np.ndarray:
    """``profile`` (spanning its whole box) read at the centres of ``n`` equal cells."""
    grid = (np.arange(len(profile)) + 0.5) / len(profile)
    return np.interp((np.arange(n) + 0.5) / n, grid, profile)


def _kind_errors(mask: np.ndarray, level: int) -> dict[str, tuple[float, float]]:
    """Per kind: the mean absolute errors of a cropped mask's row profile and column profile
    against the kind's at blur level ``level`` (an index into TEMPLATE_BLURS), at the corner
    rounding (TEMPLATE_ROUNDINGS) that fits best."""
    bh, bw = mask.shape
    rows, cols = mask.mean(axis=1), mask.mean(axis=0)
    out = {}
    for kind, per_rounding in _templates().items():
        fits = []
        for profiles in per_rounding:
            tr, tc = profiles[level]
            fits.append((float(np.abs(rows - _resample(tr, bh)).mean()),
                         float(np.abs(cols - _resample(tc, bw)).mean())))
        out[kind] = min(fits, key=sum)
    return out


def _kind(mask: np.ndarray, blur: float) -> tuple[str, float]:
    """Nearest kind of a cropped mask whose edges have gaussian sigma ``blur`` px (by the mean
    of its row and column errors), and its fit (the larger of the two); UNKNOWN_KIND when that
    exceeds KIND_TOLERANCE or the box's aspect ratio ASPECT_TOLERANCE."""
    bh, bw = mask.shape
    relative = blur / max(bh, bw)
    level = int(np.argmin([abs(relative - b) for b in TEMPLATE_BLURS]))
    errors = _kind_errors(mask, level)
    kind = min(errors, key=lambda k: sum(errors[k]))
    fit = max(errors[kind])
    if fit > KIND_TOLERANCE or max(bh, bw) > ASPECT_TOLERANCE * min(bh, bw):
        kind = UNKNOWN_KIND
    return kind, fit


def _edge_blur(offsets: np.ndarray, mask: np.ndarray, others: np.ndarray) -> float:
    """Gaussian sigma (px) of a shape's edges, from crops (its box plus a margin) of the pixel
    offsets from the background, its mask and the other shapes' pixels: the sum of
    alpha * (1 - alpha) over the crop, per unit of edge length, where alpha is the position
    between the background and the shape's median colour."""
    color = np.median(offsets[mask], axis=0)
    length = float(color @ color)
    if length < 1.0:
        return 0.0
    alpha = (offsets @ color) / length
    alpha = np.clip((alpha - _EDGE_DEAD_ZONE) / (1 - 2 * _EDGE_DEAD_ZONE), 0.0, 1.0)
    alpha[others] = 0.0
    transitions = (np.count_nonzero(mask[1:] != mask[:-1])
                   + np.count_nonzero(mask[:, 1:] != mask[:, :-1]))
    perimeter = max(_PERIMETER_PER_TRANSITION * transitions, 1.0)
    return float((alpha * (1.0 - alpha)).sum() / perimeter / _EDGE_SUM_PER_SIGMA)


def _seen(offsets: np.ndarray, mask: np.ndarray, foreground: np.ndarray, color: str) -> Seen:
    """Describe one shape from its full-image mask (``offsets``: pixels minus background)."""
    h, w = mask.shape
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
    m = 3  # margin: a blurred edge's alpha 0.1..MASK_ALPHA tail is ~1 sigma wide past the mask
    near = (slice(max(0, y0 - m), y1 + m), slice(max(0, x0 - m), x1 + m))
    blur = _edge_blur(offsets[near], mask[near], foreground[near] & ~mask[near])
    crop = mask[y0:y1, x0:x1]
    kind, fit = _kind(crop, blur)
    area = int(crop.sum())
    if kind in _FILL:
        side = float(np.sqrt(area / (_FILL[kind] * h * w)))
    else:  # no kind to take a fill ratio from: the box's longer side
        side = max((x1 - x0) / w, (y1 - y0) / h)
    return Seen(color=color, kind=kind, size="large" if side >= SIZE_SPLIT else "small",
                box=(float(x0), float(y0), float(x1), float(y1)), area=area, side=side,
                blur=blur, fit=fit)


def read_image(image: Image.Image | np.ndarray) -> list[Seen]:
    """The shapes in a ShapesWorld-style image, left to right by box centre.

    ``image``: a PIL image (any mode) or an H x W x 3 array (uint8, or float in [0, 1]), at
    least 16 px a side. See the module docstring for how it is read.
    """
    return _read(_as_rgb(image))


def _read(rgb: np.ndarray) -> list[Seen]:
    h, w = rgb.shape[:2]
    background = _background(rgb)
    offsets = rgb - background
    classes, core = _classes(rgb, background)
    foreground = classes > 0
    min_area = MIN_AREA * h * w
    blobs, n_blobs = label_components(foreground.astype(np.int8))
    parts, n_parts = label_components(classes.astype(np.int8))
    blob_area = np.bincount(blobs.ravel(), minlength=n_blobs + 1)
    part_area = np.bincount(parts.ravel(), minlength=n_parts + 1)[1:]
    part_core = np.bincount(parts.ravel(), weights=core.ravel(), minlength=n_parts + 1)[1:]
    # each single-colour part lies in one blob: its blob and colour, from its first pixel
    flat = parts.ravel()
    order = np.argsort(flat, kind="stable")
    first = order[np.searchsorted(flat[order], np.arange(1, n_parts + 1))]
    part_blob = blobs.ravel()[first]
    part_color = classes.ravel()[first] - 1
    seen = []
    for blob in range(1, n_blobs + 1):
        if blob_area[blob] < min_area:
            continue
        inside = np.flatnonzero(part_blob == blob)  # part numbers - 1
        big = [p for p in inside.tolist() if part_core[p] >= min_area]
        if len(big) >= 2:  # touching shapes of different colours: one shape per part
            for p in big:
                seen.append(_seen(offsets, parts == p + 1, foreground, COLORS[part_color[p]]))
            continue
        votes = np.bincount(part_color[inside], weights=part_core[inside], minlength=len(COLORS))
        if not votes.any():  # a faint blob with no core pixel: every pixel votes
            votes = np.bincount(part_color[inside], weights=part_area[inside],
                                minlength=len(COLORS))
        seen.append(_seen(offsets, blobs == blob, foreground, COLORS[int(votes.argmax())]))
    return sorted(seen, key=lambda s: (s.center[0], s.center[1]))


# ---- checking ----------------------------------------------------------------------------------
def _in_order(centers: Sequence[float], tolerance: float) -> bool:
    """No centre is right of one listed after it by more than ``tolerance``."""
    return all(centers[i] - centers[j] <= tolerance
               for i in range(len(centers)) for j in range(i + 1, len(centers)))


def _assign(wanted: Sequence[Wanted], seen: Sequence[Seen], width: float
            ) -> tuple[int | None, ...]:
    """Best one-to-one assignment of ``wanted`` to same colour+kind ``seen`` (CheckResult)."""
    candidates = []
    for want in wanted:
        same = [j for j, s in enumerate(seen) if s.color == want.color and s.kind == want.kind]
        same.sort(key=lambda j: -seen[j].area)
        candidates.append(same[:6])  # the largest 6: at most 7 ** MAX_SHAPES assignments
    best: tuple[int | None, ...] = tuple(None for _ in wanted)
    best_key: tuple[int, ...] = (-1,)

    def score(picks: tuple[int | None, ...]) -> tuple[int, ...]:
        matched = [(want, seen[j]) for want, j in zip(wanted, picks, strict=True)
                   if j is not None]
        sizes = [want.size == s.size for want, s in matched]
        order = _in_order([s.center[0] for _, s in matched], ORDER_TOLERANCE * width)
        return (len(matched), int(all(sizes) and order), int(all(sizes)), int(order),
                sum(sizes))

    def search(i: int, picks: tuple[int | None, ...], used: frozenset[int]) -> None:
        nonlocal best, best_key
        if i == len(wanted):
            key = score(picks)
            if key > best_key:
                best, best_key = picks, key
            return
        for j in candidates[i]:
            if j not in used:
                search(i + 1, (*picks, j), used | {j})
        search(i + 1, (*picks, None), used)

    search(0, (), frozenset())
    return best


def check(image: Image.Image | np.ndarray, caption: str) -> CheckResult:
    """Whether ``image`` shows what the ShapesWorld ``caption`` asks for (see CheckResult).

    Raises InputError when ``caption`` is not a ShapesWorld caption or ``image`` not an image.
    """
    wanted = parse_caption(caption)
    rgb = _as_rgb(image)
    width = float(rgb.shape[1])
    seen = _read(rgb)
    matches = _assign(wanted, seen, width)
    colors = all(j is not None for j in matches)
    picked = [seen[j] for j in matches if j is not None]
    sizes = colors and all(w.size == s.size for w, s in zip(wanted, picked, strict=True))
    positions = colors and _in_order([s.center[0] for s in picked], ORDER_TOLERANCE * width)
    return CheckResult(colors=colors, sizes=sizes, positions=positions,
                       extra=len(seen) - len(picked), wanted=tuple(wanted), seen=tuple(seen),
                       matches=matches)


def summary(results: Sequence[CheckResult]) -> dict[str, float]:
    """Shares of ``results`` passing ``colors``, ``sizes``, ``positions`` and ``exact`` (all
    three and no extra shape), and the mean number of extra shapes (``extra``)."""
    if not results:
        raise InputError("summary needs at least one check result")
    n = len(results)
    return {
        "colors": sum(r.colors for r in results) / n,
        "sizes": sum(r.sizes for r in results) / n,
        "positions": sum(r.positions for r in results) / n,
        "exact": sum(r.exact for r in results) / n,
        "extra": sum(r.extra for r in results) / n,
    }
