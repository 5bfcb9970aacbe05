"""How far a shape reaches in a ShapesWorld tokenizer's codes.

    .venv/bin/python benchmarks/vqgan_locality.py [--vqgan src/ofa/assets/shapes-demo/vqgan]
                                                  [--scenes 300] [--split test]

Each of the first ``--scenes`` scenes of the split, drawn plain (what text-to-image learns to
draw) at the tokenizer's resolution, is encoded as it is and again drawn without its shapes.
"Far" tiles have no shape pixel in them or in the 8 tiles around them (``far_tiles``). Prints
the share of far tiles whose code the shapes change (0 for a tokenizer whose codes are local),
the distinct codes per scene with and without its shapes, and, per background colour, how
often a shapeless scene's code at a position equals that position's most common code.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from ofa.data.shapes import ShapesWorld
    from ofa.imagegen.train_vqgan import (
        far_tiles,
        pixels_to_input,
        render_foreground,
        render_scenes,
    )
    from ofa.imagegen.vqgan_io import load_vqgan

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vqgan", type=Path, default=ROOT / "src/ofa/assets/shapes-demo/vqgan")
    p.add_argument("--scenes", type=int, default=300)
    p.add_argument("--split", default="test")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    vqgan = load_vqgan(args.vqgan).float()
    size, factor = vqgan.config.resolution, vqgan.config.downsample_factor
    world = ShapesWorld(seed=0)
    drawn, _ = render_scenes(world, args.split, args.scenes, size, plain=True)
    foreground, shapeless = render_foreground(world, args.split, args.scenes, size, plain=True)
    backgrounds = [world.scene(args.split, i).background for i in range(args.scenes)]
    with torch.inference_mode():
        codes = vqgan.encode(pixels_to_input(drawn))
        bare = vqgan.encode(pixels_to_input(shapeless))
    far = far_tiles(foreground, factor)
    changed = (codes != bare)[far].float().mean().item()
    print(f"{args.vqgan}: {args.scenes} plain {args.split} scenes at {size} px; far tiles "
          f"{far.float().mean().item():.1%} of all")
    print(f"far tiles whose code the shapes change: {changed:.1%}")
    per_scene = np.mean([len(set(c.flatten().tolist())) for c in codes])
    per_bare = np.mean([len(set(c.flatten().tolist())) for c in bare])
    print(f"distinct codes per scene: {per_scene:.1f}; per shapeless scene: {per_bare:.1f}")
    for colour in sorted(set(backgrounds)):
        rows = [i for i, b in enumerate(backgrounds) if b == colour]
        grids = bare[rows].flatten(1)
        mode = torch.mode(grids, 0).values
        print(f"  {colour} background ({len(rows)} scenes): positions at their mode code "
              f"{(grids == mode).float().mean().item():.1%}, distinct codes in the mode grid "
              f"{len(set(mode.tolist()))}")


if __name__ == "__main__":
    main()
