"""ShapesWorld text-to-image records: each scene's caption with its image's VQGAN codes.

OFA learns text-to-image from (caption, codes) pairs, the codes made once by the VQGAN's encoder
(OFA-Sys/OFA run_scripts/image_gen/generate_code.py writes them to ``coco_vqgan_*.tsv``). This
does the same for a written ShapesWorld folder: for every caption record of ``{split}.jsonl``
its image is resized to the VQGAN's resolution (LANCZOS, :func:`ofa.imagegen.vqgan_io.preprocess`),
encoded to each position's most likely code (deterministic, unlike generate_code.py's Gumbel
draw: the same files on every run) and written as an ``imagine`` record to
``{split}_imagine.jsonl``. Given the folder's ShapesWorld, each scene is drawn again as
:meth:`~ofa.data.shapes.Scene.plain` (flat background, palette colours) and those pixels are
encoded instead: the texture and colour jitter are in no caption, and in the codes they are
noise a drawing would have to reproduce. ``far_background`` goes one step further: a tokenizer's
encoder sees the whole image (GroupNorm statistics, taming's mid-block attention), so a shape
changes the codes of tiles far from it too; each tile with no shape pixel in it or in the 8
tiles around it then takes the code it has in the scene drawn without its shapes, and the
background of every drawing on one colour is the same codes (the decoded scene barely changes:
``benchmarks/shapes_ceiling.py``)::

    {"task": "imagine", "id": "train-000000-imagine", "text": "a large red circle ...",
     "codes": [17, 201, ...]}
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..files import write_atomic
from .records import read_jsonl

__all__ = ["imagine_records", "write_imagine_records", "write_world_imagine_records"]


@torch.no_grad()
def imagine_records(records: list[dict], codes: Callable[[int, list[dict]], torch.Tensor],
                    batch_size: int = 250, progress: bool = True,
                    desc: str = "codes") -> Iterator[dict]:
    """``imagine`` records for caption records, in the same order; ``codes(start, chunk)``
    gives the code grids [N, h, w] of ``records[start:start + len(chunk)]``."""
    with tqdm(total=len(records), desc=desc, disable=not progress, unit="image") as bar:
        for i in range(0, len(records), batch_size):
            chunk = records[i:i + batch_size]
            for record, grid in zip(chunk, codes(i, chunk).flatten(1).tolist(), strict=True):
                yield {"task": "imagine", "id": record["id"].removesuffix("-caption") +
                       "-imagine", "text": record["caption"], "codes": grid}
            bar.update(len(chunk))


def write_imagine_records(root: str | os.PathLike[str], splits: Iterable[str],
                          vqgan: str | os.PathLike[str] | Any, progress: bool = True,
                          world: Any = None, far_background: bool = False) -> dict[str, Path]:
    """Write ``{split}_imagine.jsonl`` beside each ``{split}.jsonl`` of a ShapesWorld folder;
    ``vqgan`` is a loaded VQGAN or what :func:`~ofa.imagegen.vqgan_io.load_vqgan` reads.
    ``world``: the :class:`~ofa.data.shapes.ShapesWorld` that wrote the folder, to encode
    plain renders of its scenes (module docstring); without it the image files are encoded.
    ``far_background`` (needs ``world``): tiles away from the shapes take the codes of the
    scene without them (module docstring). Returns split -> the written path."""
    from ..errors import InputError
    from ..imagegen.vqgan import VQGAN
    from ..imagegen.vqgan_io import load_vqgan, preprocess

    if far_background and world is None:
        raise InputError("far_background needs the ShapesWorld that wrote the folder")
    model = vqgan if isinstance(vqgan, VQGAN) else load_vqgan(vqgan)
    model = model.float().eval()
    base = Path(root)
    size = model.config.resolution
    written = {}
    for split in splits:
        records = read_jsonl(base / f"{split}.jsonl", ["caption"])  # checked, line by line
        if world is None:
            def codes(start: int, chunk: list[dict]) -> torch.Tensor:
                return model.encode(preprocess([str(base / r["image"]) for r in chunk], size))
        else:
            codes = _plain_scene_codes(world, split, model, far_background)
        written[split] = _write_split(base, split, records, codes, progress)
    return written


def write_world_imagine_records(world: Any, root: str | os.PathLike[str],
                                counts: dict[str, int], vqgan: str | os.PathLike[str] | Any,
                                far_background: bool = False, progress: bool = True
                                ) -> dict[str, Path]:
    """Write ``{split}_imagine.jsonl`` under ``root`` for the first ``counts[split]`` scenes of
    each split of ``world``, straight from the world: the same records as
    :func:`write_imagine_records` given the folder ``world.write`` makes, without writing its
    image files and other records (text-to-image training reads nothing else). Returns
    split -> the written path."""
    from ..imagegen.vqgan import VQGAN
    from ..imagegen.vqgan_io import load_vqgan

    model = (vqgan if isinstance(vqgan, VQGAN) else load_vqgan(vqgan)).float().eval()
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, count in counts.items():
        records = [{"id": f"{split}-{i:06d}-caption", "caption": world.scene(split, i).caption()}
                   for i in range(count)]
        codes = _plain_scene_codes(world, split, model, far_background)
        written[split] = _write_split(base, split, records, codes, progress)
    return written


def _write_split(base: Path, split: str, records: list[dict],
                 codes: Callable[[int, list[dict]], torch.Tensor], progress: bool) -> Path:
    lines = [json.dumps(r) for r in imagine_records(records, codes, progress=progress,
                                                    desc=f"codes {split}")]
    path = base / f"{split}_imagine.jsonl"
    write_atomic(path, "".join(line + "\n" for line in lines))
    return path


def _plain_scene_codes(world: Any, split: str, vqgan: Any, far_background: bool
                       ) -> Callable[[int, list[dict]], torch.Tensor]:
    """The codes of scene i's plain render for the i-th caption record of ``split``;
    an InputError if the records are not the world's scenes in order."""
    from ..errors import InputError
    from ..imagegen.train_vqgan import far_tiles, foreground_mask, pixels_to_input, render_scenes

    size = vqgan.config.resolution
    # a plain scene without its shapes is one flat colour: a handful of distinct images, each
    # encoded once and alone, so each colour has one grid. In batches of 250 the same images
    # took another code at 90 of 1,280 tiles (20 scenes; the kernels differ with the batch)
    bare_codes: dict[bytes, torch.Tensor] = {}

    def shapeless_codes(bare: torch.Tensor) -> torch.Tensor:
        keys = [image.numpy().tobytes() for image in bare]
        for key, image in zip(keys, bare, strict=True):
            if key not in bare_codes:
                bare_codes[key] = vqgan.encode(pixels_to_input(image[None]))[0]
        return torch.stack([bare_codes[key] for key in keys])

    def codes(start: int, chunk: list[dict]) -> torch.Tensor:
        pixels, captions = render_scenes(world, split, len(chunk), size, start=start, plain=True)
        for record, caption in zip(chunk, captions, strict=True):
            if record["caption"] != caption:
                raise InputError(f"{split}.jsonl record {record['id']} is not this ShapesWorld's "
                                 f"scene: {record['caption']!r}, the world drew {caption!r}")
        grids = vqgan.encode(pixels_to_input(pixels))
        if far_background:
            bare, _ = render_scenes(world, split, len(chunk), size, start=start, plain=True,
                                    shapeless=True)
            far = far_tiles(foreground_mask(pixels, bare), vqgan.config.downsample_factor)
            grids = torch.where(far, shapeless_codes(bare), grids)
        return grids

    return codes
