"""Other readings of the same two models as rankings of the shipped demo's drawings.

    .venv/bin/python benchmarks/shapes_rankers.py [--captions 200] [--samples 24]
                                                  [--alternatives 15]

The drawings are ``benchmarks/shapes_imagine.py``'s (``shapes-demo``: ``draw/`` draws, the
demo model ranks; the official sampling, seed = the scene's number, held-out test captions).
Each drawing gets, besides the shipped score (log p(caption | image) summed over the
caption's tokens, from the captioner), the captioner's per-token log-probabilities (ranked by
their minimum, the two smallest, ...) and the drawer's log p(codes | caption) and its PMI
against ``--alternatives`` training captions (log p(codes | caption) minus the log-mean-exp of
log p(codes | other caption)). Prints the checker's top-1 shares for each ranking.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
import torch.nn.functional as F


def main() -> None:
    from ofa import load
    from ofa.data.shapes import ShapesWorld
    from ofa.data.shapes_check import check
    from ofa.preprocess import ImageTransform
    from ofa.tasks.caption import CaptionTask
    from ofa.tasks.imagine import ImagineTask
    from ofa.tokenizer import BOS, CODE_OFFSET, EOS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--captions", type=int, default=200)
    p.add_argument("--samples", type=int, default=24)
    p.add_argument("--alternatives", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    world = ShapesWorld(seed=0)
    demo = load("shapes-demo")
    model, tokenizer = demo.model, demo.tokenizer
    drawer = demo.drawing_model()
    vqgan, _ = demo.drawing_parts("caption")
    codes_table = drawer.embed_tokens.weight[CODE_OFFSET:CODE_OFFSET + vqgan.config.n_embed]
    task = CaptionTask()
    transform = ImageTransform.from_cfg(task.preprocess.with_size(demo.image_size))
    caption_source = task.prepare(tokenizer, "").source
    alternatives = [world.scene("train", i).caption() for i in range(args.alternatives)]

    def drawer_logprob(caption: str, codes: torch.Tensor) -> np.ndarray:
        n = len(codes)
        source = torch.tensor([ImagineTask().prepare(tokenizer, "", caption).source] * n)
        target = codes.reshape(n, -1)
        tokens = torch.cat([torch.full((n, 1), BOS), target[:, :-1] + CODE_OFFSET], 1)
        # code_mask: the codes' own position table and LayerNorm, as the drawer drew them
        logits = drawer.decode(tokens, drawer.encode(source, None),
                               code_mask=torch.ones(n, dtype=torch.bool),
                               vocab=codes_table).float()
        return F.log_softmax(logits, -1).gather(2, target[..., None])[..., 0].sum(1).numpy()

    rankings: dict[str, list[bool]] = {}
    single = []
    with torch.inference_mode():
        for i in range(args.captions):
            caption = world.scene("test", i).caption()
            drawn = demo.imagine(caption, samples=args.samples, top=args.samples, seed=i,
                                 rank="caption")
            right = np.array([check(im, caption).colors for im in drawn.images])
            single.append(right.mean())
            target = tokenizer.encode(task.target_text({"caption": caption})[0],
                                      add_bos_eos=False)
            pixels, _ = transform.batch(drawn.images)
            enc = model.encode(torch.tensor([caption_source] * len(pixels)), pixels)
            logits = model.decode(torch.tensor([[BOS, *target]] * len(pixels)), enc).float()
            ids = torch.tensor([*target, EOS])
            per_token = F.log_softmax(logits, -1)[:, torch.arange(len(ids)), ids].numpy()
            own = drawer_logprob(caption, drawn.codes)
            other = np.stack([drawer_logprob(c, drawn.codes) for c in alternatives])
            pmi = own - (np.logaddexp.reduce(other, 0) - math.log(len(other)))
            worst = np.sort(per_token, 1)
            scores = {
                "log p(caption | image), summed (shipped)": per_token.sum(1),
                "the caption's least likely token": worst[:, 0],
                "its two least likely tokens": worst[:, :2].sum(1),
                "sum plus least likely token": per_token.sum(1) + worst[:, 0],
                "sum of -log(1 - p)": -np.log1p(-np.exp(np.minimum(per_token, -1e-6))).sum(1),
                "the drawer's log p(codes | caption)": own,
                "the drawer's PMI against training captions": pmi,
                **{f"caption likelihood + {w} x PMI": per_token.sum(1) + w * pmi
                   for w in (0.02, 0.05, 0.2, 0.5, 1.0)},
                **{f"caption likelihood + {w} x the drawer's log p": per_token.sum(1) + w * own
                   for w in (0.05, 0.2)},
            }
            for name, s in scores.items():
                rankings.setdefault(name, []).append(bool(right[int(np.argmax(s))]))
    print(f"{args.captions} test captions, {args.samples} drawings each; top-1 with every "
          f"requested shape in the right colour and kind (one sample: {np.mean(single):.3f})")
    for name, hits in rankings.items():
        print(f"{np.mean(hits):.3f}  {name}")


if __name__ == "__main__":
    main()
