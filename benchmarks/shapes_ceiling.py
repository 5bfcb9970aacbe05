"""The tokenizer's ceiling for text-to-image: the target codes themselves, decoded and checked.

    .venv/bin/python benchmarks/shapes_ceiling.py [--vqgan src/ofa/assets/shapes-demo/vqgan]
                                                  [--records data/shapes-draw/test_imagine.jsonl]
                                                  [--captions 200]

``--records`` are the imagine records ``ofa data shapes OUT --vqgan DIR`` wrote with the same
tokenizer (each caption with the codes of its scene drawn plain). A drawing model that
reproduced those codes exactly would score this; ``benchmarks/shapes_imagine.py`` reads its
drawings of the same captions with the same checker.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from ofa.data.shapes_check import check, summary
    from ofa.imagegen.vqgan_io import load_vqgan

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vqgan", type=Path, default=ROOT / "src/ofa/assets/shapes-demo/vqgan")
    p.add_argument("--records", type=Path, default=ROOT / "data/shapes-draw/test_imagine.jsonl")
    p.add_argument("--captions", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    vqgan = load_vqgan(args.vqgan).float()
    with args.records.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line, _ in zip(f, range(args.captions), strict=False)]
    with torch.inference_mode():
        pixels = vqgan.decode_codes(torch.tensor([r["codes"] for r in rows])).clamp(-1, 1)
    images = [Image.fromarray(((x.permute(1, 2, 0).numpy() + 1) * 127.5).round()
                              .astype(np.uint8)) for x in pixels]
    figures = summary([check(im, r["text"]) for im, r in zip(images, rows, strict=True)])
    print(f"{args.vqgan} decoding the codes of {len(rows)} captions of {args.records}: "
          f"colors {figures['colors']:.3f}, sizes {figures['sizes']:.3f}, "
          f"positions {figures['positions']:.3f}")


if __name__ == "__main__":
    main()
