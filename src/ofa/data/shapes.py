"""ShapesWorld: a deterministic synthetic multitask dataset (offline stand-in for COCO & co).

Each scene is 1-``max_shapes`` flat-coloured, non-overlapping shapes on a plain background. Every
annotation (caption, VQA, grounding, entailment, classification) is an exact function of the
rendered pixels over a small closed vocabulary, so a small model trained from scratch can reach
high accuracy on it.

Everything is deterministic in ``(seed, split, index)``: a scene is sampled from
``numpy.random.default_rng([seed, split_code, index])`` and stores its own ``seed``, from which
rendering and question/statement selection draw their own generators, so ``Scene`` methods are pure.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from ofa.errors import InputError
from ofa.files import write_atomic

__all__ = [
    "BACKGROUNDS",
    "COLORS",
    "EXHAUSTIVE_SETS",
    "MAX_SHAPES",
    "NUMBER_WORDS",
    "PROPERTIES",
    "SHAPES",
    "SIZES",
    "SPLIT_CODES",
    "TEXTURES",
    "VQA_ANSWERS",
    "Box",
    "Scene",
    "Shape",
    "ShapesWorld",
    "annotation_kind",
    "split_code",
]

Box = tuple[float, float, float, float]
_WRITE_CHUNK = 200  # scenes per task of a writing process

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES: tuple[str, ...] = ("small", "large")
BACKGROUNDS: tuple[str, ...] = ("white", "gray", "black", "beige")
TEXTURES: tuple[str, ...] = ("flat", "noise", "gradient")
MAX_SHAPES = 4
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four")
# Non-visual properties: statements using them can be neither confirmed nor refuted by the image.
PROPERTIES: tuple[str, ...] = (
    "made of wood", "made of metal", "made of glass", "made of plastic", "made of paper",
    "heavy", "soft", "warm", "cold", "expensive", "fragile", "new",
)

COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 165, 55),
    "blue": (30, 70, 225),
    "yellow": (235, 210, 30),
    "purple": (140, 50, 180),
    "orange": (245, 130, 20),
}
# Neutral or pale backgrounds: far from every saturated shape colour even with jitter and noise.
BACKGROUND_RGB: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
    "black": (20, 20, 20),
    "beige": (225, 210, 175),
}
COLOR_JITTER = 10
NOISE_AMPLITUDE = 3
GRADIENT_AMPLITUDE = 12

# Side length of a shape's frame as a fraction of the image size.
SIZE_RANGE: dict[str, tuple[float, float]] = {"small": (0.20, 0.28), "large": (0.36, 0.46)}
# When several shapes share the largest size class, one is drawn from the top of the range and the
# others from the bottom, so "the largest shape" (classification label) is never a 1-pixel call.
DOMINANT_RANGE: dict[str, tuple[float, float]] = {"small": (0.26, 0.28), "large": (0.43, 0.46)}
RECESSIVE_RANGE: dict[str, tuple[float, float]] = {"small": (0.20, 0.22), "large": (0.36, 0.39)}

SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1, "test": 2}
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
QUESTION_TYPES: tuple[str, ...] = ("color", "shape", "count", "exist", "relation", "size")

VQA_ANSWERS: tuple[str, ...] = (*COLORS, *SHAPES, *SIZES, *NUMBER_WORDS, "yes", "no")


def split_code(split: str) -> int:
    """Integer code of a split: fixed for train/val/test, a stable CRC32 for any other name."""
    if split in SPLIT_CODES:
        return SPLIT_CODES[split]
    return zlib.crc32(split.encode("utf-8"))


def _count_word(n: int) -> str:
    return NUMBER_WORDS[n]


def _join(parts: Sequence[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _draw_shape(draw: ImageDraw.ImageDraw, kind: str, frame: tuple[int, int, int, int],
                fill: int | tuple[int, int, int]) -> None:
    """Draw ``kind`` filling the integer frame [x0, y0, x1, y1) (right/bottom exclusive)."""
    x0, y0, x1, y1 = frame
    r, b = x1 - 1, y1 - 1  # PIL coordinates are inclusive
    cx, cy = (x0 + r) / 2, (y0 + b) / 2
    if kind == "circle":
        draw.ellipse([x0, y0, r, b], fill=fill)
    elif kind == "square":
        draw.rectangle([x0, y0, r, b], fill=fill)
    elif kind == "triangle":
        draw.polygon([(x0, b), (cx, y0), (r, b)], fill=fill)
    elif kind == "diamond":
        draw.polygon([(cx, y0), (r, cy), (cx, b), (x0, cy)], fill=fill)
    else:
        raise InputError(f"unknown shape kind {kind!r}")


def _tight_box(kind: str, frame: tuple[int, int, int, int], width: int, height: int) -> Box:
    """Tight pixel bounding box of the drawn shape, measured on a mask so it matches render()."""
    mask = Image.new("L", (width, height), 0)
    _draw_shape(ImageDraw.Draw(mask), kind, frame, 255)
    bbox = mask.getbbox()
    if bbox is None:  # cannot happen for frames of side >= 4; guard against silent empty boxes
        raise InputError(f"shape {kind} in frame {frame} draws no pixels")
    return tuple(float(v) for v in bbox)  # type: ignore[return-value]


@dataclass(frozen=True)
class Shape:
    """One drawn object: its words, its fill colour and its tight box [x0, y0, x1, y1)."""

    kind: str
    color: str
    size: str
    box: Box
    rgb: tuple[int, int, int]
    frame: tuple[int, int, int, int]  # integer square the shape is drawn into

    @property
    def name(self) -> str:
        """``"{colour} {kind}"``, unique within a scene."""
        return f"{self.color} {self.kind}"

    @property
    def center(self) -> tuple[float, float]:
        """Box centre (x, y)."""
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    @property
    def area(self) -> float:
        """Box area in pixels."""
        x0, y0, x1, y1 = self.box
        return (x1 - x0) * (y1 - y0)


@dataclass(frozen=True)
class Scene:
    """A sampled scene; all annotations are derived from its fields (and ``seed`` for choices)."""

    width: int
    height: int
    background: str
    texture: str
    seed: int
    shapes: tuple[Shape, ...]

    # ---- helpers -------------------------------------------------------------------------------
    def _rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stream])

    def _ordered(self) -> list[Shape]:
        return sorted(self.shapes, key=lambda s: (s.center[0], s.center[1]))

    def relation_holds(self, a: Shape, b: Shape, relation: str) -> bool | None:
        """Truth of "a is {relation} b", or None when the centres are too close along that axis."""
        horizontal = relation in ("left of", "right of")
        axis, extent = (0, self.width) if horizontal else (1, self.height)
        delta = a.center[axis] - b.center[axis]
        if abs(delta) <= 0.15 * extent:  # too close to call: never asked or stated
            return None
        return delta < 0 if relation in ("left of", "above") else delta > 0

    def _relation_items(self) -> list[tuple[Shape, str, Shape, bool]]:
        items = []
        for a in self.shapes:
            for b in self.shapes:
                if a is b:
                    continue
                for rel in RELATIONS:
                    truth = self.relation_holds(a, b, rel)
                    if truth is not None:
                        items.append((a, rel, b, truth))
        return items

    def _absent_pairs(self) -> list[tuple[str, str]]:
        present = {(s.color, s.kind) for s in self.shapes}
        return [(c, k) for c in COLORS for k in SHAPES if (c, k) not in present]

    # ---- rendering -----------------------------------------------------------------------------
    def plain(self) -> Scene:
        """The same scene without what no caption says: a flat background and every shape in
        its palette colour (no texture, no colour jitter). Text-to-image learns to draw these:
        the nuisance would otherwise be most of what a drawing's codes have to predict."""
        shapes = tuple(dataclasses.replace(s, rgb=COLOR_RGB[s.color]) for s in self.shapes)
        return dataclasses.replace(self, texture="flat", shapes=shapes)

    def render(self) -> Image.Image:
        """Draw the scene as an RGB PIL image (byte-identical across calls)."""
        rng = self._rng(0)
        base = np.array(BACKGROUND_RGB[self.background], dtype=np.int16)
        pixels = np.broadcast_to(base, (self.height, self.width, 3)).astype(np.int16)
        if self.texture == "noise":
            noise = rng.integers(-NOISE_AMPLITUDE, NOISE_AMPLITUDE + 1,
                                 size=(self.height, self.width, 1), dtype=np.int16)
            pixels = pixels + noise
        elif self.texture == "gradient":
            angle = rng.uniform(0.0, 2 * np.pi)
            ys, xs = np.mgrid[0:self.height, 0:self.width]
            t = (xs / max(self.width - 1, 1) - 0.5) * np.cos(angle)
            t = t + (ys / max(self.height - 1, 1) - 0.5) * np.sin(angle)
            shade = np.rint(t * 2 * GRADIENT_AMPLITUDE).astype(np.int16)[..., None]
            pixels = pixels + shade
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(image)
        for shape in self.shapes:
            _draw_shape(draw, shape.kind, shape.frame, shape.rgb)
        return image

    # ---- annotations ---------------------------------------------------------------------------
    def caption(self) -> str:
        """Objects left to right by box centre: "a large red circle and a small blue square"."""
        return _join([f"a {s.size} {s.color} {s.kind}" for s in self._ordered()])

    def label(self) -> str:
        """Kind of the largest shape by box area (ties: leftmost)."""
        best = min(self.shapes, key=lambda s: (-s.area, s.center[0], s.center[1]))
        return best.kind

    def _question_pools(self) -> dict[str, list[list[tuple[str, str]]]]:
        """Candidate (question, answer) pairs per type, in groups picked uniformly (for balance)."""
        shapes = self.shapes
        kinds = [s.kind for s in shapes]
        colors = [s.color for s in shapes]
        color_q = []
        for s in shapes:
            if kinds.count(s.kind) == 1:
                color_q.append((f"what color is the {s.kind}?", s.color))
            elif sum(t.kind == s.kind and t.size == s.size for t in shapes) == 1:
                color_q.append((f"what color is the {s.size} {s.kind}?", s.color))
        shape_q = [(f"what shape is the {s.color} object?", s.kind)
                   for s in shapes if colors.count(s.color) == 1]
        count_present = [(f"how many {c} shapes are there?", _count_word(colors.count(c)))
                         for c in COLORS if c in colors]
        count_absent = [(f"how many {c} shapes are there?", "zero")
                        for c in COLORS if c not in colors]
        count_total = [("how many shapes are there?", _count_word(len(shapes)))]
        exist_yes = [(_exist_question(s.color, s.kind), "yes") for s in shapes]
        exist_no = [(_exist_question(c, k), "no") for c, k in self._absent_pairs()]
        relation_q = [(_relation_question(a, rel, b), "yes" if truth else "no")
                      for a, rel, b, truth in self._relation_items()]
        size_q = [(f"what size is the {s.name}?", s.size) for s in shapes]
        return {
            "color": [color_q],
            "shape": [shape_q],
            "count": [count_total, count_present, count_absent],
            "exist": [exist_yes, exist_no],
            "relation": [relation_q],
            "size": [size_q],
        }

    def questions(self) -> list[tuple[str, str]]:
        """4-6 unique (question, answer) pairs, cycling over the question types in random order."""
        rng = self._rng(1)
        pools = {t: [list(g) for g in groups if g] for t, groups in self._question_pools().items()}
        wanted = int(rng.integers(4, 7))
        order = [QUESTION_TYPES[i] for i in rng.permutation(len(QUESTION_TYPES))]
        chosen: list[tuple[str, str]] = []
        while len(chosen) < wanted and any(pools[t] for t in order):
            for qtype in order:
                groups = pools[qtype]
                if not groups or len(chosen) >= wanted:
                    continue
                group = groups[int(rng.integers(len(groups)))]
                chosen.append(group.pop(int(rng.integers(len(group)))))
                pools[qtype] = [g for g in groups if g]
        return chosen

    def expressions(self, shape: Shape) -> list[str]:
        """Every expression that names ``shape`` uniquely: "the red circle", then "the circle"
        when no other shape is a circle and "the red shape" when no other is red."""
        forms = [f"the {shape.name}"]
        if sum(s.kind == shape.kind for s in self.shapes) == 1:
            forms.append(f"the {shape.kind}")
        if sum(s.color == shape.color for s in self.shapes) == 1:
            forms.append(f"the {shape.color} shape")
        return forms

    def referring(self) -> list[tuple[str, Box]]:
        """One referring expression per shape (left to right), sometimes a shorter unique form."""
        rng = self._rng(2)
        out = []
        for s in self._ordered():
            full, *short = self.expressions(s)
            text = full
            if short and rng.random() < 0.5:
                text = short[int(rng.integers(len(short)))]
            out.append((text, s.box))
        return out

    def _statement(self, rng: np.random.Generator, label: str) -> str | None:
        """One random hypothesis with the given label, or None when none can be made."""
        shapes = self.shapes
        pick = shapes[int(rng.integers(len(shapes)))]
        n = len(shapes)
        if label == "neutral":
            prop = PROPERTIES[int(rng.integers(len(PROPERTIES)))]
            return f"the {pick.name} is {prop}"
        truth = label == "entailment"
        rels = [item for item in self._relation_items() if item[3] == truth]
        kinds = ["exist", "count", "size"] + (["relation"] if rels else [])
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind == "exist":
            if truth:
                return _exist_statement(pick.color, pick.kind)
            absent = self._absent_pairs()
            color, shape_kind = absent[int(rng.integers(len(absent)))]
            return _exist_statement(color, shape_kind)
        if kind == "count":
            if not truth:
                wrong = [m for m in range(1, MAX_SHAPES + 1) if m != n]
                n = wrong[int(rng.integers(len(wrong)))]
            return _count_statement(n)
        if kind == "size":
            size = pick.size if truth else next(z for z in SIZES if z != pick.size)
            return f"the {pick.name} is {size}"
        a, rel, b, _ = rels[int(rng.integers(len(rels)))]
        return _relation_statement(a, rel, b)

    def statements(self) -> list[tuple[str, str]]:
        """3-4 unique (hypothesis, label) pairs, labels ~40/40/20 entail/contradict/neutral."""
        rng = self._rng(3)
        wanted = int(rng.integers(3, 5))
        labels = ("entailment", "contradiction", "neutral")
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        for _ in range(50 * wanted):  # bounded: duplicates are rejected and redrawn
            if len(out) >= wanted:
                break
            label = labels[int(rng.choice(3, p=[0.4, 0.4, 0.2]))]
            text = self._statement(rng, label)
            if text is not None and text not in seen:
                seen.add(text)
                out.append((text, label))
        return out


class ShapesWorld:
    """Generator of ShapesWorld scenes and their JSONL training records."""

    def __init__(self, seed: int = 0, image_size: int = 128, max_shapes: int = 3) -> None:
        if seed < 0:
            raise InputError(f"seed must be >= 0, got {seed}")
        if image_size < 32:
            raise InputError(f"image_size must be >= 32, got {image_size}")
        if not 1 <= max_shapes <= MAX_SHAPES:
            raise InputError(f"max_shapes must be in 1..{MAX_SHAPES}, got {max_shapes}")
        self.seed = seed
        self.image_size = image_size
        self.max_shapes = max_shapes

    # ---- sampling ------------------------------------------------------------------------------
    def _sides(self, rng: np.random.Generator, sizes: list[str]) -> list[int]:
        top = "large" if "large" in sizes else "small"
        crowded = sizes.count(top) > 1
        dominant = sizes.index(top)
        sides = []
        for i, size in enumerate(sizes):
            lo, hi = SIZE_RANGE[size]
            if crowded and size == top:
                lo, hi = DOMINANT_RANGE[size] if i == dominant else RECESSIVE_RANGE[size]
            sides.append(max(4, int(round(rng.uniform(lo, hi) * self.image_size))))
        return sides

    def _place(self, rng: np.random.Generator, sides: list[int]) -> list[tuple[int, int]] | None:
        """Random top-left corners for squares of ``sides``; None when rejection sampling fails."""
        size = self.image_size
        border = max(1, size // 64)
        margin = max(2, round(0.03 * size))
        # Distinct centre x keeps the left-to-right caption order unambiguous.
        min_dx = 0.08 * size
        order = sorted(range(len(sides)), key=lambda i: -sides[i])  # big shapes first fit best
        for _ in range(30):
            placed: dict[int, tuple[int, int, int]] = {}
            for i in order:
                s = sides[i]
                for _ in range(60):
                    x = int(rng.integers(border, size - border - s + 1))
                    y = int(rng.integers(border, size - border - s + 1))
                    ok = all(
                        (x + s + margin <= px or px + ps + margin <= x
                         or y + s + margin <= py or py + ps + margin <= y)
                        and abs((x + s / 2) - (px + ps / 2)) >= min_dx
                        for px, py, ps in placed.values()
                    )
                    if ok:
                        placed[i] = (x, y, s)
                        break
                else:
                    break
            if len(placed) == len(sides):
                return [(placed[i][0], placed[i][1]) for i in range(len(sides))]
        return None

    def scene(self, split: str, index: int) -> Scene:
        """The scene at ``index`` of ``split``; deterministic in (seed, split, index)."""
        if index < 0:
            raise InputError(f"index must be >= 0, got {index}")
        rng = np.random.default_rng([self.seed, split_code(split), index])
        background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
        texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
        scene_seed = int(rng.integers(0, 2**32))
        n = int(rng.integers(1, self.max_shapes + 1))
        pairs = [(c, k) for c in COLORS for k in SHAPES]
        picks = rng.choice(len(pairs), size=n, replace=False)
        attrs = [pairs[int(p)] for p in picks]
        sizes = [SIZES[int(rng.integers(2))] for _ in range(n)]
        sides = self._sides(rng, sizes)
        corners = self._place(rng, sides)
        if corners is None:
            # Fallback 1: keep one dominant shape, shrink the other large ones to small.
            top = sides.index(max(sides))
            sizes = [z if i == top else "small" for i, z in enumerate(sizes)]
            sides = self._sides(rng, sizes)
            corners = self._place(rng, sides)
        while corners is None:
            # Fallback 2: drop the smallest shape until the rest fit (one shape always fits).
            drop = min(range(len(sides)), key=lambda i: (sides[i], -i))
            del attrs[drop], sizes[drop], sides[drop]
            corners = self._place(rng, sides)
        shapes = []
        for (color, kind), size, side, (x, y) in zip(attrs, sizes, sides, corners, strict=True):
            jitter = rng.integers(-COLOR_JITTER, COLOR_JITTER + 1, size=3)
            rgb = tuple(int(v) for v in np.clip(np.array(COLOR_RGB[color]) + jitter, 0, 255))
            frame = (x, y, x + side, y + side)
            box = _tight_box(kind, frame, self.image_size, self.image_size)
            shapes.append(Shape(kind=kind, color=color, size=size, box=box, rgb=rgb, frame=frame))
        return Scene(width=self.image_size, height=self.image_size, background=background,
                     texture=texture, seed=scene_seed, shapes=tuple(shapes))

    # ---- records -------------------------------------------------------------------------------
    def records(self, split: str, index: int, image: str) -> list[dict]:
        """All training records of one scene (caption, vqa, ground, entail, classify)."""
        return _scene_records(self.scene(split, index), f"{split}-{index:06d}", image)

    def _scene_files(self, split: str, index: int) -> tuple[bytes, list[str], list[list[str]]]:
        """One scene's PNG bytes, its record lines and its lines of each exhaustive set."""
        rel = f"images/{split}/{index:06d}.png"
        prefix = f"{split}-{index:06d}"
        scene = self.scene(split, index)
        png = io.BytesIO()
        scene.render().save(png, format="PNG")
        lines = [json.dumps(r) for r in _scene_records(scene, prefix, rel)]
        extra = [[json.dumps(r) for r in make(scene, prefix, rel)]
                 for make in EXHAUSTIVE_SETS.values()]
        return png.getvalue(), lines, extra

    def _split_files(self, split: str, indices: range
                     ) -> list[tuple[bytes, list[str], list[list[str]]]]:
        return [self._scene_files(split, i) for i in indices]

    def write(self, out_dir: str | os.PathLike[str], splits: dict[str, int],
              progress: bool = True, workers: int = 1) -> dict[str, Path]:
        """Write images/{split}/{index:06d}.png, {split}.jsonl and answers.txt under ``out_dir``,
        plus five exhaustive sets of what {split}.jsonl asks rarely (for curricula):
        {split}_relations.jsonl (every spatial relation of every scene, as a yes/no question and
        as an entailment statement), {split}_counts.jsonl (count questions, present and absent
        colours balanced, and every total-count statement), {split}_existence.jsonl (every
        colour-kind pair and as many hard absent ones, as questions and statements),
        {split}_referring.jsonl (every unique expression of every shape) and
        {split}_distractors.jsonl (those of the shapes that share a colour or a kind with
        another shape: the expressions that one attribute alone cannot resolve).

        Image paths in the records are relative to ``out_dir``. ``workers`` processes render
        the scenes (the files are the same for any number). Returns split -> jsonl path.
        """
        if workers < 1:
            raise InputError(f"workers must be >= 1, got {workers}")
        for split, count in splits.items():
            if count < 0:
                raise InputError(f"split {split!r}: count must be >= 0, got {count}")
        root = Path(out_dir)
        root.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        pool = ProcessPoolExecutor(workers) if workers > 1 else None
        run = pool.map if pool is not None else map
        try:
            for split, count in splits.items():
                image_dir = root / "images" / split
                image_dir.mkdir(parents=True, exist_ok=True)
                chunks = [range(i, min(i + _WRITE_CHUNK, count))
                          for i in range(0, count, _WRITE_CHUNK)]
                lines: list[str] = []
                extra: dict[str, list[str]] = {name: [] for name in EXHAUSTIVE_SETS}
                with tqdm(total=count, desc=f"shapes {split}", disable=not progress) as bar:
                    made = run(self._split_files, [split] * len(chunks), chunks)
                    for indices, files in zip(chunks, made, strict=True):
                        for index, (png, scene_lines, scene_extra) in zip(indices, files,
                                                                          strict=True):
                            (image_dir / f"{index:06d}.png").write_bytes(png)
                            lines.extend(scene_lines)
                            for name, set_lines in zip(EXHAUSTIVE_SETS, scene_extra,
                                                       strict=True):
                                extra[name].extend(set_lines)
                        bar.update(len(indices))
                written[split] = _write_split(root, split, lines, extra)
        finally:
            if pool is not None:
                pool.shutdown()
        write_atomic(root / "answers.txt", "".join(a + "\n" for a in VQA_ANSWERS))
        return written


def _write_split(root: Path, split: str, lines: list[str], extra: dict[str, list[str]]
                 ) -> Path:
    """{split}.jsonl and its exhaustive sets; returns the path of {split}.jsonl."""
    path = root / f"{split}.jsonl"
    write_atomic(path, "".join(line + "\n" for line in lines))
    for name, extra_lines in extra.items():
        write_atomic(root / f"{split}_{name}.jsonl", "".join(line + "\n" for line in extra_lines))
    return path


_RELATION = "|".join(RELATIONS)
# (kind, pattern) in match order, one per template in Scene._question_pools / _statement
_QUESTION_KINDS = (
    ("relation", re.compile(rf"^is the .+ ({_RELATION}) the .+\?$")),
    ("exist", re.compile(r"^is there an? ")),
    ("count", re.compile(r"^how many ")),
    ("color", re.compile(r"^what color ")),
    ("shape", re.compile(r"^what shape ")),
    ("size", re.compile(r"^what size ")),
)
_STATEMENT_KINDS = (
    ("relation", re.compile(rf"^the .+ is ({_RELATION}) the ")),
    ("exist", re.compile(r"^there is an? ")),
    ("count", re.compile(r"^there (is one shape|are \w+ shapes)$")),
    ("size", re.compile(rf"^the .+ is ({'|'.join(SIZES)})$")),
    ("property", re.compile(rf"^the .+ is ({'|'.join(PROPERTIES)})$")),
)


def annotation_kind(record: dict) -> str:
    """Which template a record was written from: the question type of a VQA record
    (``QUESTION_TYPES``), the statement kind of an entailment record (exist, count, size,
    relation, property), the expression form of a grounding record ("full" colour + kind,
    "kind" alone, "color" alone) and the task name otherwise. For error analysis by kind."""
    task = record.get("task")
    if task == "ground":
        words = record["text"].split()
        return "color" if words[-1] == "shape" else "full" if len(words) == 3 else "kind"
    table = {"vqa": (_QUESTION_KINDS, "question"), "entail": (_STATEMENT_KINDS, "hypothesis")}
    if task not in table:
        return str(task)
    patterns, field_name = table[task]
    for kind, pattern in patterns:
        if pattern.search(record[field_name]):
            return kind
    raise InputError(f"{task} record {record.get('id')!r} matches no ShapesWorld template")


def _exist_question(color: str, kind: str) -> str:
    return f"is there a {color} {kind}?"


def _exist_statement(color: str, kind: str) -> str:
    return f"there is a {color} {kind}"


def _count_statement(n: int) -> str:
    return "there is one shape" if n == 1 else f"there are {_count_word(n)} shapes"


def _relation_question(a: Shape, relation: str, b: Shape) -> str:
    return f"is the {a.name} {relation} the {b.name}?"


def _relation_statement(a: Shape, relation: str, b: Shape) -> str:
    return f"the {a.name} is {relation} the {b.name}"


def _relation_records(scene: Scene, prefix: str, image: str) -> list[dict]:
    """Every relation that can be called in ``scene``, as a VQA and as an entailment record."""
    out: list[dict] = []
    for i, (a, rel, b, truth) in enumerate(scene._relation_items()):
        out.append({"task": "vqa", "id": f"{prefix}-relation-vqa-{i}", "image": image,
                    "question": _relation_question(a, rel, b),
                    "answers": {"yes" if truth else "no": 1.0}})
        out.append({"task": "entail", "id": f"{prefix}-relation-entail-{i}", "image": image,
                    "hypothesis": _relation_statement(a, rel, b),
                    "label": "entailment" if truth else "contradiction"})
    return out


def _count_records(scene: Scene, prefix: str, image: str) -> list[dict]:
    """The count questions of ``scene``, balanced: all shapes, each colour present, as many
    absent colours (answer "zero"; a scene lacks most colours, and asking all of them teaches
    that prior), then every total-count statement ("there are two shapes", true or false)."""
    rng = scene._rng(4)
    total, present, absent = scene._question_pools()["count"]  # its three groups, in this order
    picked = [absent[int(i)] for i in sorted(rng.permutation(len(absent))[:len(present)])]
    out = [{"task": "vqa", "id": f"{prefix}-count-{i}", "image": image, "question": question,
            "answers": {answer: 1.0}} for i, (question, answer) in enumerate(
                total + present + picked)]
    n = len(scene.shapes)
    for m in range(1, MAX_SHAPES + 1):
        out.append({"task": "entail", "id": f"{prefix}-count-entail-{m}", "image": image,
                    "hypothesis": _count_statement(m),
                    "label": "entailment" if m == n else "contradiction"})
    return out


def _existence_records(scene: Scene, prefix: str, image: str) -> list[dict]:
    """Every colour-kind pair of ``scene`` and as many absent ones that share a colour or a kind
    with a shape (swapped attributes first: "a red square" beside a red circle and a blue
    square), each as a yes/no question and as a statement: existence tests the binding of a
    colour to its own shape."""
    rng = scene._rng(5)
    present = [(s.color, s.kind) for s in scene.shapes]
    colors, kinds = {c for c, _ in present}, {k for _, k in present}
    absent = scene._absent_pairs()
    swapped = [(c, k) for c, k in absent if c in colors and k in kinds]
    partial = [(c, k) for c, k in absent if (c in colors) != (k in kinds)]
    negatives = ([swapped[int(i)] for i in rng.permutation(len(swapped))]
                 + [partial[int(i)] for i in rng.permutation(len(partial))])[:len(present)]
    out: list[dict] = []
    for i, ((color, kind), truth) in enumerate(
            [(pair, True) for pair in present] + [(pair, False) for pair in negatives]):
        out.append({"task": "vqa", "id": f"{prefix}-exist-vqa-{i}", "image": image,
                    "question": _exist_question(color, kind),
                    "answers": {"yes" if truth else "no": 1.0}})
        out.append({"task": "entail", "id": f"{prefix}-exist-entail-{i}", "image": image,
                    "hypothesis": _exist_statement(color, kind),
                    "label": "entailment" if truth else "contradiction"})
    return out


def _expression_records(scene: Scene, shapes: Sequence[Shape], prefix: str, tag: str,
                        image: str) -> list[dict]:
    """Every unique expression of each of ``shapes`` with its box, ids ``{prefix}-{tag}-{i}``."""
    pairs = [(text, shape.box) for shape in shapes for text in scene.expressions(shape)]
    return [{"task": "ground", "id": f"{prefix}-{tag}-{i}", "image": image, "text": text,
             "box": [float(v) for v in box]} for i, (text, box) in enumerate(pairs)]


def _referring_records(scene: Scene, prefix: str, image: str) -> list[dict]:
    """Every unique expression of every shape (left to right) with its box."""
    return _expression_records(scene, scene._ordered(), prefix, "refer", image)


def _distractor_records(scene: Scene, prefix: str, image: str) -> list[dict]:
    """Every unique expression of every shape that shares its colour or its kind with another
    shape of ``scene`` (left to right): beside a blue circle, "the red circle" and "the red
    shape" are found only by colour; beside a red square, "the red circle" and "the circle"
    only by kind. A model that finds objects by one attribute alone gets these at chance."""
    alike = [s for s in scene._ordered()
             if any(o is not s and (o.kind == s.kind or o.color == s.color) for o in scene.shapes)]
    return _expression_records(scene, alike, prefix, "distractor", image)


# Written next to each split by ShapesWorld.write as {split}_{name}.jsonl.
EXHAUSTIVE_SETS = {"relations": _relation_records, "counts": _count_records,
                   "existence": _existence_records, "referring": _referring_records,
                   "distractors": _distractor_records}


def _scene_records(scene: Scene, prefix: str, image: str) -> list[dict]:
    """Records of one scene; ids are ``{prefix}-{task}[-{i}]``, unique within a split."""
    out: list[dict] = [
        {"task": "caption", "id": f"{prefix}-caption", "image": image,
         "caption": scene.caption()}
    ]
    for i, (question, answer) in enumerate(scene.questions()):
        out.append({"task": "vqa", "id": f"{prefix}-vqa-{i}", "image": image,
                    "question": question, "answers": {answer: 1.0}})
    for i, (text, box) in enumerate(scene.referring()):
        out.append({"task": "ground", "id": f"{prefix}-ground-{i}", "image": image,
                    "text": text, "box": [float(v) for v in box]})
    for i, (hypothesis, label) in enumerate(scene.statements()):
        out.append({"task": "entail", "id": f"{prefix}-entail-{i}", "image": image,
                    "hypothesis": hypothesis, "label": label})
    out.append({"task": "classify", "id": f"{prefix}-classify", "image": image,
                "label": scene.label()})
    return out
