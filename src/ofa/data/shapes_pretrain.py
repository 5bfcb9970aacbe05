"""ShapesWorld as OFA's pretraining data: the four official TSV kinds
(:mod:`ofa.data.pretrain_tsv`) and the ITM negatives folder, made from a world's scenes.

Per scene of a split: ``pairs_{split}.tsv`` holds a caption row (its objects the scene's
"colour kind" names, which ITM swaps for another to make a hard negative), two VQA rows (the
scene's first questions, confidence 1) and a grounding row (its first referring expression);
``text_{split}.tsv`` the scene's description (caption and true statements) for text
infilling; ``image_{split}.tsv`` its plain render at the VQGAN's resolution with the codes of
the image's centre (the middle half of each side) for image infilling; ``detection_{split}.tsv``
every shape's box and name. ``negatives/`` holds every caption of the split
(``all_captions.txt``), every colour-kind name (``object.txt``) and the answers by question
type (``type2ans.json``). Images are PNG in standard base64, ids ``{split}-{index:06d}``.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm

from ..errors import InputError
from ..files import write_atomic
from .shapes import COLORS, NUMBER_WORDS, SHAPES, SIZES, Scene, ShapesWorld

__all__ = ["ANSWER_TYPES", "write_pretraining_data"]

ANSWER_TYPES: dict[str, list[str]] = {
    "what color": list(COLORS), "what shape": list(SHAPES), "what size": list(SIZES),
    "how many": list(NUMBER_WORDS), "yes/no": ["yes", "no"],
}
QA_PER_SCENE = 2


def _b64(image: Any) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _box(box: Any) -> str:
    return ",".join(f"{v:g}" for v in box)


def description(scene: Scene) -> str:
    """The scene's caption and its true statements, as one text."""
    true = [s for s, label in scene.statements() if label == "entailment"]
    return ". ".join([scene.caption(), *true]) + "."


def _pair_rows(scene: Scene, sid: str, image: str) -> list[list[str]]:
    names = "&&".join(s.name for s in scene.shapes)
    rows = [[f"{sid}-caption", image, scene.caption(), "", "", names, "shapes", "caption"]]
    for k, (question, answer) in enumerate(scene.questions()[:QA_PER_SCENE]):
        rows.append([f"{sid}-qa{k}", image, "", question, f"1.0|!+{answer}", "", "shapes",
                     "qa"])
    text, box = scene.referring()[0]
    rows.append([f"{sid}-ground", image, text, "", _box(box), "", "shapes",
                 "visual_grounding"])
    return rows


def _centre_codes(grid: torch.Tensor) -> list[int]:
    """The codes of the middle half of each side of a square code grid, row by row."""
    n = grid.shape[-1]
    return grid[n // 4:3 * n // 4, n // 4:3 * n // 4].flatten().tolist()


def write_pretraining_data(world: ShapesWorld, out_dir: str | os.PathLike[str],
                           splits: dict[str, int], vqgan: Any, progress: bool = True
                           ) -> dict[str, Path]:
    """Write the pretraining TSVs of each split (``{split: scene count}``) and ``negatives/``
    (from the first split) under ``out_dir``; ``vqgan`` is a loaded VQGAN or what
    :func:`~ofa.imagegen.vqgan_io.load_vqgan` reads. Returns file name -> path."""
    from ..imagegen.train_vqgan import pixels_to_input, render_scenes
    from ..imagegen.vqgan import VQGAN
    from ..imagegen.vqgan_io import load_vqgan

    model = (vqgan if isinstance(vqgan, VQGAN) else load_vqgan(vqgan)).float().eval()
    resolution = model.config.resolution
    if model.config.grid_size % 2:
        raise InputError(f"the VQGAN's code grid ({model.config.grid_size}) must be even to "
                         "have a centre half")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    captions: list[str] = []
    for n, (split, count) in enumerate(splits.items()):
        if count < 1:
            raise InputError(f"split {split!r}: count must be >= 1, got {count}")
        pairs, texts, images, detections = [], [], [], []
        for index in tqdm(range(count), desc=f"pretraining {split}", disable=not progress):
            scene = world.scene(split, index)
            sid = f"{split}-{index:06d}"
            image = _b64(scene.render())
            pairs += _pair_rows(scene, sid, image)
            texts.append([sid, description(scene)])
            objects = "&&".join(f"{_box(s.box)},{SHAPES.index(s.kind)},{s.name}"
                                for s in scene.shapes)
            detections.append([sid, image, objects])
            if n == 0:
                captions.append(scene.caption())
        for start in range(0, count, 250):  # plain renders and their centre codes
            pixels, _ = render_scenes(world, split, min(250, count - start), resolution,
                                      start=start, plain=True)
            with torch.no_grad():
                grids = model.encode(pixels_to_input(pixels))
            images += [[f"{split}-{start + i:06d}", _b64(Image.fromarray(p.numpy())),
                        " ".join(map(str, _centre_codes(g)))]
                       for i, (p, g) in enumerate(zip(pixels, grids, strict=True))]
        for name, rows in (("pairs", pairs), ("text", texts), ("detection", detections),
                           ("image", images)):
            path = root / f"{name}_{split}.tsv"
            write_atomic(path, "".join("\t".join(r) + "\n" for r in rows))
            written[path.name] = path
    negatives = root / "negatives"
    negatives.mkdir(exist_ok=True)
    objects = [f"{c} {k}" for c in COLORS for k in SHAPES]
    answers = {**ANSWER_TYPES, "other": sorted({a for v in ANSWER_TYPES.values() for a in v})}
    for name, text in (("all_captions.txt", "".join(c + "\n" for c in captions)),
                       ("object.txt", "".join(o + "\n" for o in objects)),
                       ("type2ans.json", json.dumps(answers, indent=1) + "\n")):
        write_atomic(negatives / name, text)
        written[f"negatives/{name}"] = negatives / name
    return written
