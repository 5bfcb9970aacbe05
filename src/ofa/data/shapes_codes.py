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
noise a drawing would have to reproduce::

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

__all__ = ["imagine_records", "write_imagine_records"]


@torch.no_grad()
def imagine_records(records: list[dict], images: Callable[[int, list[dict]], torch.Tensor],
                    vqgan: Any, batch_size: int = 250, progress: bool = True,
                    desc: str = "codes") -> Iterator[dict]:
    """``imagine`` records for caption records, in the same order; ``images(start, chunk)``
    gives the VQGAN's input for ``records[start:start + len(chunk)]``."""
    with tqdm(total=len(records), desc=desc, disable=not progress, unit="image") as bar:
        for i in range(0, len(records), batch_size):
            chunk = records[i:i + batch_size]
            codes = vqgan.encode(images(i, chunk)).flatten(1).tolist()
            for record, grid in zip(chunk, codes, strict=True):
                yield {"task": "imagine", "id": record["id"].removesuffix("-caption") +
                       "-imagine", "text": record["caption"], "codes": grid}
            bar.update(len(chunk))


def write_imagine_records(root: str | os.PathLike[str], splits: Iterable[str],
                          vqgan: str | os.PathLike[str] | Any, progress: bool = True,
                          world: Any = None) -> dict[str, Path]:
    """Write ``{split}_imagine.jsonl`` beside each ``{split}.jsonl`` of a ShapesWorld folder;
    ``vqgan`` is a loaded VQGAN or what :func:`~ofa.imagegen.vqgan_io.load_vqgan` reads.
    ``world``: the :class:`~ofa.data.shapes.ShapesWorld` that wrote the folder, to encode
    plain renders of its scenes (module docstring); without it the image files are encoded.
    Returns split -> the written path."""
    from ..imagegen.vqgan import VQGAN
    from ..imagegen.vqgan_io import load_vqgan, preprocess

    model = vqgan if isinstance(vqgan, VQGAN) else load_vqgan(vqgan)
    model = model.float().eval()
    base = Path(root)
    size = model.config.resolution
    written = {}
    for split in splits:
        records = read_jsonl(base / f"{split}.jsonl", ["caption"])  # checked, line by line
        if world is None:
            def images(start: int, chunk: list[dict]) -> torch.Tensor:
                return preprocess([str(base / r["image"]) for r in chunk], size)
        else:
            images = _plain_scenes(world, split, size)
        lines = [json.dumps(r) for r in imagine_records(records, images, model,
                                                        progress=progress,
                                                        desc=f"codes {split}")]
        path = base / f"{split}_imagine.jsonl"
        write_atomic(path, "".join(line + "\n" for line in lines))
        written[split] = path
    return written


def _plain_scenes(world: Any, split: str, size: int
                  ) -> Callable[[int, list[dict]], torch.Tensor]:
    """The VQGAN input of scene i's plain render for the i-th caption record of ``split``;
    an InputError if the records are not the world's scenes in order."""
    from ..errors import InputError
    from ..imagegen.train_vqgan import pixels_to_input, render_scenes

    def images(start: int, chunk: list[dict]) -> torch.Tensor:
        pixels, captions = render_scenes(world, split, len(chunk), size, start=start, plain=True)
        for record, caption in zip(chunk, captions, strict=True):
            if record["caption"] != caption:
                raise InputError(f"{split}.jsonl record {record['id']} is not this ShapesWorld's "
                                 f"scene: {record['caption']!r}, the world drew {caption!r}")
        return pixels_to_input(pixels)

    return images
