"""Does a ShapesWorld model's encoder mark the object an expression names?

    .venv/bin/python benchmarks/shapes_referent_probe.py shapes-demo [--data data/shapes]

Runs the encoder on each grounding record (the task's prompt and image) and keeps the output
of every encoder layer at the patches whose centre falls on a shape. A linear probe per layer,
fitted on the val split's records, scores "this patch lies on the named object"; on the test
split's records (scenes with two or more shapes) it counts how often the top-scoring object
patch lies on the right object, by expression form: kind only ("the circle"), colour only
("the red shape"), or colour and kind ("the red circle"). A form the encoder does not resolve
stays near chance at every layer. This is the probe BENCHMARKS.md quotes for the demo models.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

import ofa
from ofa.data.shapes import ShapesWorld
from ofa.preprocess import ImageTransform
from ofa.tasks import GroundingTask
from ofa.tokenizer import PAD

FORMS = ("kind", "colour", "colour+kind")


def expression_form(text: str) -> str:
    words = text.split()
    return "colour" if words[-1] == "shape" else "kind" if len(words) == 2 else "colour+kind"


def patch_rows(model: ofa.OFA, world: ShapesWorld, data: Path, split: str, limit: int,
               batch: int = 32) -> tuple[dict[int, list[torch.Tensor]], list[tuple]]:
    """Per encoder layer the features of object patches, and (record, form, is_referent) per
    patch, for the grounding records of scenes with two or more shapes."""
    with open(data / f"{split}.jsonl", encoding="utf-8") as f:
        records = [r for r in map(json.loads, f) if r["task"] == "ground"]
    scenes, kept = {}, []
    for r in records:
        index = int(Path(r["image"]).stem)
        scene = scenes.setdefault(index, world.scene(split, index))
        if len(scene.shapes) > 1:
            boxes = [list(map(float, s.box)) for s in scene.shapes]
            if [float(v) for v in r["box"]] not in boxes:
                raise SystemExit(f"{data} was not written with this world seed (box of "
                                 f"{r['id']} is no shape's); pass --seed")
            kept.append((r, scene))
    kept = kept[:limit]
    encoder, tokenizer = model.model.encoder.eval(), model.tokenizer
    size = model.image_size
    transform = ImageTransform(size)
    outputs: dict[int, torch.Tensor] = {}
    hooks = [layer.register_forward_hook(
        lambda _m, _i, out, k=k: outputs.__setitem__(k, out[0] if isinstance(out, tuple)
                                                     else out))
        for k, layer in enumerate(encoder.layers)]
    feats: dict[int, list[torch.Tensor]] = defaultdict(list)
    rows: list[tuple] = []
    task = GroundingTask()
    for start in range(0, len(kept), batch):
        chunk = kept[start:start + batch]
        images = torch.stack([transform(data / r["image"]) for r, _ in chunk])
        ids = [task.prepare(tokenizer, r["id"], text=r["text"]).source for r, _ in chunk]
        width = max(map(len, ids))
        source = torch.tensor([x + [PAD] * (width - len(x)) for x in ids])
        with torch.no_grad():
            encoder(source, images)
        grid = int(round((outputs[0].shape[1] - width) ** 0.5))
        for j, (r, scene) in enumerate(chunk):
            pixels = np.asarray(scene.render())
            for p in range(grid * grid):
                row, col = divmod(p, grid)
                x = int((col + 0.5) * scene.width / grid)
                y = int((row + 0.5) * scene.height / grid)
                on = [s for s in scene.shapes if tuple(pixels[y, x]) == tuple(s.rgb)]
                if len(on) != 1:
                    continue
                is_ref = [float(v) for v in on[0].box] == [float(v) for v in r["box"]]
                rows.append((start + j, expression_form(r["text"]), is_ref))
                for k, out in outputs.items():
                    feats[k].append(out[j, p].float())
    for h in hooks:
        h.remove()
    return feats, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model folder or registry name (e.g. shapes-demo)")
    parser.add_argument("--data", type=Path, default=Path("data/shapes"),
                        help="folder written by `ofa data shapes` (default data/shapes)")
    parser.add_argument("--fit", type=int, default=600, help="val records to fit on")
    parser.add_argument("--score", type=int, default=1000, help="test records to score")
    parser.add_argument("--seed", type=int, default=0, help="world seed the data used")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = ofa.load(args.model, device="cpu")
    world = ShapesWorld(seed=args.seed)
    fit_x, fit_rows = patch_rows(model, world, args.data, "val", args.fit)
    test_x, test_rows = patch_rows(model, world, args.data, "test", args.score)
    fit_y = torch.tensor([float(ref) for _, _, ref in fit_rows])
    print(f"{len(fit_rows)} object patches to fit, {len(test_rows)} to score")
    for k in sorted(fit_x):
        x = torch.stack(fit_x[k])
        mean, std = x.mean(0), x.std(0) + 1e-5
        probe = torch.nn.Linear(x.shape[1], 1)
        opt = torch.optim.Adam(probe.parameters(), lr=1e-2)
        for _ in range(400):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                probe((x - mean) / std).squeeze(-1), fit_y)
            loss.backward()
            opt.step()
        with torch.no_grad():
            scores = probe((torch.stack(test_x[k]) - mean) / std).squeeze(-1)
        best: dict[int, tuple[float, bool, str]] = {}
        for score, (rec, form, ref) in zip(scores.tolist(), test_rows, strict=True):
            if rec not in best or score > best[rec][0]:
                best[rec] = (score, ref, form)
        named = {rec for rec, _, ref in test_rows if ref}  # the named object has a patch
        hits, counts = Counter(), Counter()
        for _, ref, form in (v for rec, v in best.items() if rec in named):
            counts[form] += 1
            hits[form] += ref
        print(f"encoder layer {k}: " + ", ".join(
            f"{f} {hits[f] / max(counts[f], 1):.3f} (n={counts[f]})" for f in FORMS))


if __name__ == "__main__":
    main()
