"""ShapesWorld text-to-image records: each scene's caption with its image's VQGAN codes.

OFA learns text-to-image from (caption, codes) pairs, the codes made once by the VQGAN's encoder
(OFA-Sys/OFA run_scripts/image_gen/generate_code.py writes them to ``coco_vqgan_*.tsv``). This
does the same for a written ShapesWorld folder: for every caption record of ``{split}.jsonl``
its image is resized to the VQGAN's resolution (LANCZOS, :func:`ofa.imagegen.vqgan_io.preprocess`),
encoded to each position's most likely code (deterministic, unlike generate_code.py's Gumbel
draw: the same files on every run) and written as an ``imagine`` record to
``{split}_imagine.jsonl``::

    {"task": "imagine", "id": "train-000000-imagine", "text": "a large red circle ...",
     "codes": [17, 201, ...]}
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..files import write_atomic
from .records import read_jsonl

__all__ = ["imagine_records", "write_imagine_records"]


@torch.no_grad()
def imagine_records(records: list[dict], root: Path, vqgan: Any, batch_size: int = 250,
                    progress: bool = True, desc: str = "codes") -> Iterator[dict]:
    """``imagine`` records for caption records, in the same order; relative ``image`` paths
    are relative to ``root``."""
    from ..imagegen.vqgan_io import preprocess

    size = vqgan.config.resolution
    with tqdm(total=len(records), desc=desc, disable=not progress, unit="image") as bar:
        for i in range(0, len(records), batch_size):
            chunk = records[i:i + batch_size]
            images = preprocess([str(root / r["image"]) for r in chunk], size)
            codes = vqgan.encode(images).flatten(1).tolist()
            for record, grid in zip(chunk, codes, strict=True):
                yield {"task": "imagine", "id": record["id"].removesuffix("-caption") +
                       "-imagine", "text": record["caption"], "codes": grid}
            bar.update(len(chunk))


def write_imagine_records(root: str | os.PathLike[str], splits: Iterable[str],
                          vqgan: str | os.PathLike[str] | Any, progress: bool = True
                          ) -> dict[str, Path]:
    """Write ``{split}_imagine.jsonl`` beside each ``{split}.jsonl`` of a ShapesWorld folder;
    ``vqgan`` is a loaded VQGAN or what :func:`~ofa.imagegen.vqgan_io.load_vqgan` reads.
    Returns split -> the written path."""
    from ..imagegen.vqgan import VQGAN
    from ..imagegen.vqgan_io import load_vqgan

    model = vqgan if isinstance(vqgan, VQGAN) else load_vqgan(vqgan)
    model = model.float().eval()
    base = Path(root)
    written = {}
    for split in splits:
        records = read_jsonl(base / f"{split}.jsonl", ["caption"])  # checked, line by line
        lines = [json.dumps(r) for r in imagine_records(records, base, model, progress=progress,
                                                        desc=f"codes {split}")]
        path = base / f"{split}_imagine.jsonl"
        write_atomic(path, "".join(line + "\n" for line in lines))
        written[split] = path
    return written
