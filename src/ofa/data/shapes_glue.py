"""A small GLUE-format task from ShapesWorld scene descriptions: text only, deterministic in
``(seed, split, index)``, written as GLUE's files so :mod:`ofa.data.glue` reads them.

- ``RTE/<split>.tsv`` (entailment): the premise is a scene's caption (its shapes left to
  right); the hypothesis a statement that the caption makes true or false: a shape is there,
  the number of shapes, a shape's size, one shape left or right of another. Half of each.
- ``MRPC/<split>.tsv`` (paraphrase): two wordings of a scene ("a large red circle and a small
  blue square" / "from left to right there is a red circle that is large and a blue square
  that is small"); the same scene (quality 1) or one changed in one respect (0): a colour, a
  kind or a size, two shapes swapped, a shape dropped or added.

Every scene gives one statement of each truth and one pair of each label. Dev and test draw
the kinds of statement and of change uniformly (the natural mix the figures measure); the
training split oversamples the ones a model finds hard (:data:`TRAIN_STATEMENT_WEIGHTS`,
:data:`TRAIN_CHANGE_WEIGHTS`): false relations and absent shapes that share a colour or a kind
with one that is there, and colours, kinds, sizes and orders changed inside a longer scene.

Curriculum files hold a subset of ``RTE/train.tsv``'s rows (:data:`CURRICULA`):
``train_relations.tsv`` the relation statements, ``train_multi.tsv`` every statement about a
scene of two or three shapes except its count. Mixed with the easy rows, a small model stays at
chance on relations for 12,000 updates; on relations alone it leaves chance within a few
hundred (BENCHMARKS.md, "GLUE").
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import write_atomic
from .shapes import COLORS, NUMBER_WORDS, SHAPES, SIZES, ShapesWorld, split_code

__all__ = ["CURRICULA", "GLUE_SPLITS", "TRAIN_CHANGE_WEIGHTS", "TRAIN_STATEMENT_WEIGHTS",
           "glue_rows", "scene_items", "statement_kind", "write_shapes_glue"]

Item = tuple[str, str, str]  # (size, colour, kind), left to right
GLUE_SPLITS = {"train": "train", "val": "dev", "test": "test"}  # ShapesWorld split -> file
# Relative weights of the statement kinds and change ways in training rows (dev and test: 1
# each). Counting is learned at once; binding a colour to its kind and an order across the two
# texts is what a model misses (BENCHMARKS.md, "GLUE").
TRAIN_STATEMENT_WEIGHTS = {"exist": 3.0, "count": 0.5, "size": 1.5, "relation": 4.0}
TRAIN_CHANGE_WEIGHTS = {"color": 3.0, "kind": 2.0, "size": 2.0, "swap": 3.0, "drop": 0.5,
                        "add": 0.5}
# RTE/train_<name>.tsv: the training rows whose (statement kind, shapes in the scene) pass
CURRICULA: dict[str, Callable[[str, int], bool]] = {
    "relations": lambda kind, shapes: kind == "relation",
    "multi": lambda kind, shapes: shapes > 1 and kind != "count",
}


def _pick(options: list[str], weights: dict[str, float] | None, rng: np.random.Generator) -> str:
    """One of ``options``, uniformly or by ``weights`` (one draw from ``rng`` either way)."""
    if weights is None:
        return options[int(rng.integers(len(options)))]
    w = np.array([weights[o] for o in options])
    return options[int(np.searchsorted(np.cumsum(w / w.sum()), rng.random(), side="right"))]


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def caption(items: list[Item]) -> str:
    """ShapesWorld's caption: "a large red circle and a small blue square"."""
    return _join([f"a {size} {color} {kind}" for size, color, kind in items])


def rewording(items: list[Item]) -> str:
    """The same scene in other words, sizes after the names."""
    return "from left to right there is " + _join(
        [f"{_a(color)} {kind} that is {size}" for size, color, kind in items])


def _count(n: int) -> str:
    return f"there is {NUMBER_WORDS[n]} shape" if n == 1 else f"there are {NUMBER_WORDS[n]} shapes"


def statement(items: list[Item], truth: bool, rng: np.random.Generator,
              weights: dict[str, float] | None = None) -> str:
    """A hypothesis about the scene ``items`` describe, true or false as asked; its kind drawn
    uniformly or by ``weights``."""
    n = len(items)
    kinds = ["exist", "count", "size"] + (["relation"] if n > 1 else [])
    kind = _pick(kinds, weights, rng)
    size, color, shape = items[int(rng.integers(n))]
    if kind == "exist":
        if not truth:  # absent, sharing a colour or a kind with a shape (not a give-away)
            present = {(c, k) for _, c, k in items}
            near = [(c, k) for c in COLORS for k in SHAPES if (c, k) not in present
                    and (c == color or k == shape)]
            color, shape = near[int(rng.integers(len(near)))]
        return f"there is {_a(color)} {shape}"
    if kind == "count":
        if not truth:
            wrong = [m for m in range(1, len(NUMBER_WORDS)) if m != n]
            n = wrong[int(rng.integers(len(wrong)))]
        return _count(n)
    if kind == "size":
        said = size if truth else next(z for z in SIZES if z != size)
        return f"the {color} {shape} is {said}"
    i, j = (int(v) for v in rng.choice(n, size=2, replace=False))
    relation = "left of" if (i < j) == truth else "right of"
    return f"the {items[i][1]} {items[i][2]} is {relation} the {items[j][1]} {items[j][2]}"


def statement_kind(hypothesis: str) -> str:
    """Which kind of :func:`statement` ``hypothesis`` is: exist, count, size or relation."""
    if hypothesis.startswith(("there are", "there is one shape")):
        return "count"
    if hypothesis.startswith("there is"):
        return "exist"
    return "relation" if hypothesis.endswith(tuple(
        f" of the {c} {k}" for c in COLORS for k in SHAPES)) else "size"


def changed(items: list[Item], rng: np.random.Generator,
            weights: dict[str, float] | None = None) -> list[Item]:
    """``items`` changed in one respect (never the same scene), drawn uniformly or by
    ``weights``."""
    n = len(items)
    ways = ["color", "kind", "size"] + (["swap", "drop"] if n > 1 else []) + (
        ["add"] if n < 3 else [])
    way = _pick(ways, weights, rng)
    out = list(items)
    names = {(c, k) for _, c, k in items}
    i = int(rng.integers(n))
    size, color, kind = out[i]
    if way == "color":
        free = [c for c in COLORS if c != color and (c, kind) not in names]
        out[i] = (size, free[int(rng.integers(len(free)))], kind)
    elif way == "kind":
        free = [k for k in SHAPES if k != kind and (color, k) not in names]
        out[i] = (size, color, free[int(rng.integers(len(free)))])
    elif way == "size":
        out[i] = (next(z for z in SIZES if z != size), color, kind)
    elif way == "swap":
        j = (i + 1 + int(rng.integers(n - 1))) % n
        out[i], out[j] = out[j], out[i]
    elif way == "drop":
        del out[i]
    else:
        free = [(c, k) for c in COLORS for k in SHAPES if (c, k) not in names]
        c, k = free[int(rng.integers(len(free)))]
        out.insert(int(rng.integers(n + 1)), (SIZES[int(rng.integers(2))], c, k))
    return out


def glue_rows(world: ShapesWorld, split: str, index: int
              ) -> tuple[list[tuple[str, str, bool]], list[tuple[str, str, bool]]]:
    """The scene's RTE rows ``(premise, hypothesis, entailed)`` and MRPC rows ``(text1, text2,
    same)``: one of each label, in a random order. Training rows draw their kinds by the
    ``TRAIN_*_WEIGHTS``, the others uniformly."""
    return _rows(world, split, index, scene_items(world, split, index))


def scene_items(world: ShapesWorld, split: str, index: int) -> list[Item]:
    """The scene's shapes as ``(size, colour, kind)``, left to right."""
    return [(s.size, s.color, s.kind) for s in world.scene(split, index)._ordered()]


def _rows(world: ShapesWorld, split: str, index: int, items: list[Item]
          ) -> tuple[list[tuple[str, str, bool]], list[tuple[str, str, bool]]]:
    rng = np.random.default_rng([world.seed, split_code(split), index, 7])
    train = split == "train"
    said = TRAIN_STATEMENT_WEIGHTS if train else None
    ways = TRAIN_CHANGE_WEIGHTS if train else None
    rte = [(caption(items), statement(items, truth, rng, said), truth) for truth in (True, False)]
    mrpc = []
    for same in (True, False):
        other = items if same else changed(items, rng, ways)
        pair = [caption(items), rewording(other)]
        if rng.random() < 0.5:
            pair = [rewording(items), caption(other)]
        if rng.random() < 0.5:
            pair.reverse()
        mrpc.append((pair[0], pair[1], same))
    order = rng.permutation(2)
    return [rte[k] for k in order], [mrpc[k] for k in rng.permutation(2)]


def _tsv(header: str, rows: list[str]) -> str:
    return header + "\n" + "".join(r + "\n" for r in rows)


def write_shapes_glue(out_dir: str | os.PathLike[str], counts: dict[str, int],
                      seed: int = 0, progress: Callable[[str], None] | None = None
                      ) -> dict[str, Path]:
    """Write ``RTE/{train,dev,test}.tsv`` and ``MRPC/...`` (GLUE's layouts, every file
    labelled) for ``counts`` scenes per ShapesWorld split, and the training split's
    :data:`CURRICULA` files; returns the files by name."""
    if any(split not in GLUE_SPLITS or n < 0 for split, n in counts.items()):
        raise InputError(f"scene counts are per split ({', '.join(GLUE_SPLITS)}) and >= 0")
    world = ShapesWorld(seed=seed)
    root = Path(out_dir)
    written: dict[str, Path] = {}
    for split, n in counts.items():
        if n == 0:
            continue
        rte, mrpc = [], []
        curricula: dict[str, list[str]] = {name: [] for name in CURRICULA}
        for index in range(n):
            items = scene_items(world, split, index)
            rte_rows, mrpc_rows = _rows(world, split, index, items)
            for a, b, truth in rte_rows:
                label = "entailment" if truth else "not_entailment"
                rte.append(f"{len(rte)}\t{a}\t{b}\t{label}")
                for name, keep in CURRICULA.items():
                    if keep(statement_kind(b), len(items)):
                        rows = curricula[name]
                        rows.append(f"{len(rows)}\t{a}\t{b}\t{label}")
            for a, b, same in mrpc_rows:
                k = len(mrpc)
                mrpc.append(f"{int(same)}\t{2 * k}\t{2 * k + 1}\t{a}\t{b}")
        name = GLUE_SPLITS[split]
        rte_header = "index\tsentence1\tsentence2\tlabel"
        files = [("RTE", name, rte_header, rte),
                 ("MRPC", name, "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", mrpc)]
        if split == "train":
            files += [("RTE", f"train_{k}", rte_header, rows) for k, rows in curricula.items()]
        for folder, stem, header, rows in files:
            path = root / folder / f"{stem}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, _tsv(header, rows))
            written[f"{folder}/{stem}"] = path
            if progress is not None:
                progress(f"{split}: {n} scenes -> {path} ({len(rows)} rows)")
    return written
