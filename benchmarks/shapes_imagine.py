"""Text-to-image on held-out ShapesWorld captions, read back by the checker.

    .venv/bin/python benchmarks/shapes_imagine.py [--model shapes-demo] [--captions 200]
                                                   [--samples 24] [--split test] [--json F]
                                                   [--rank caption] [--ranker MODEL]

For each of the first ``--captions`` scenes of the split (never trained on: the demo model
trains on the train split), the model draws ``--samples`` images of its caption (the official
sampling: top-k 256 over the code tokens, seed = the scene's number) and ranks them by its own
log p(caption | image) (``--rank caption``, the default: no CLIP offline), by the samples'
log-probability (``--rank logprob``), or by another model's log p(caption | image)
(``--ranker MODEL``: a model that captions ranks the drawings of one that does not).
:mod:`ofa.data.shapes_check` then reads three images per caption:

* top-1: the best-ranked image (what ``ofa imagine`` shows first);
* single: one of the same draws picked at random (seeded), what one sample gives without
  ranking (the generator returns its draws sorted by log-probability, so not the first);
* any: whether any of the draws is right (the ceiling a perfect ranker would reach).

It prints, for each, the share of captions whose image shows every requested shape in the right
colour and kind, the right size and the right relative position (``summary`` of the checker),
plus the seconds per caption (``--json`` also keeps each caption's three readings). The
draws are the same for top-1 and single: the difference is the ranking.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch


def main() -> None:
    from ofa import load
    from ofa.data.shapes import ShapesWorld
    from ofa.data.shapes_check import check, summary

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="shapes-demo")
    p.add_argument("--captions", type=int, default=200)
    p.add_argument("--samples", type=int, default=24)
    p.add_argument("--split", default="test")
    p.add_argument("--world-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rank", default="caption", choices=("caption", "logprob"))
    p.add_argument("--ranker", default=None,
                   help="rank by this model's log p(caption | image) instead")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    world = ShapesWorld(seed=args.world_seed)
    model = load(args.model)
    ranker = None
    if args.ranker:
        from ofa.imagegen.rank import CaptionRanker

        other = load(args.ranker)
        ranker = CaptionRanker(other.model, other.tokenizer, other.image_size)
    kept: dict[str, list] = {"top1": [], "single": []}
    any_right = {"colors": 0, "sizes": 0, "positions": 0}
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(args.captions):
            caption = world.scene(args.split, i).caption()
            r = model.imagine(caption, samples=args.samples, top=args.samples, seed=i,
                              rank="logprob" if ranker else args.rank)
            results = [check(im, caption) for im in r.images]
            picked = r.indices.index(random.Random(i).randrange(args.samples))
            kept["single"].append(results[picked])
            if ranker is not None:
                scores = ranker.scores(r.images, caption)
                results = [results[j] for j in scores.argsort(descending=True, stable=True)]
            kept["top1"].append(results[0])
            for key in any_right:
                any_right[key] += any(getattr(x, key) for x in results)
    seconds = time.perf_counter() - start
    figures = {name: summary(results) for name, results in kept.items()}
    figures["any"] = {k: v / args.captions for k, v in any_right.items()}
    figures["seconds_per_caption"] = seconds / args.captions
    # per caption, so that a prefix (the first 200 of 1,000) can be read again without a rerun
    figures["per_caption"] = {name: [[r.colors, r.sizes, r.positions] for r in results]
                              for name, results in kept.items()}
    print(f"{args.model}: {args.captions} {args.split} captions, {args.samples} samples each, "
          f"ranked by {args.ranker or args.rank}; {seconds / args.captions:.2f} s per caption")
    print(f"{'image':<8}{'colors':>8}{'sizes':>8}{'positions':>10}")
    for name in ("top1", "single", "any"):
        f = figures[name]
        print(f"{name:<8}{f['colors']:>8.3f}{f['sizes']:>8.3f}{f['positions']:>10.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"args": vars(args), **figures}, fh, indent=1)


if __name__ == "__main__":
    main()
