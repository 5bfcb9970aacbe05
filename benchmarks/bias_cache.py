"""The encoder's position-bias cache, off against on, in one process.

    .venv/bin/python benchmarks/bias_cache.py [--dtypes float32 bfloat16] [--rounds 5]

OFA-base with random weights (``roofline.build``), one 480 px image, the captioning task's
official generation settings (beam 5). Checks that the encoder's output is bit-identical with
the cache off and on (first call of a shape: not kept; second: made; third: reused), then
times whole captions in interleaved rounds (off, on, off, on, ...) and prints the medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from roofline import IDS, build


def main() -> None:
    import ofa.model.encoder as encoder
    from ofa.generate import generate
    from ofa.hardware import cpu_summary
    from ofa.tasks import CaptionTask

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                   choices=("float32", "bfloat16"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    limit = encoder.BIAS_CACHE_BYTES
    print(f"CPU: {cpu_summary()}")
    for name in args.dtypes:
        model = build(name)
        image = torch.randn(1, 3, 480, 480).to(model.embed_tokens.weight.dtype)
        config = CaptionTask().generation_config(model.config)
        times: dict[str, list[float]] = {"off": [], "on": []}
        with torch.no_grad():
            encoder.BIAS_CACHE_BYTES = 0
            want = model.encode(IDS, image).hidden
            encoder.BIAS_CACHE_BYTES = limit
            same = [torch.equal(model.encode(IDS, image).hidden, want) for _ in range(3)]
            for _ in range(args.rounds):
                for state, size in (("off", 0), ("on", limit)):
                    encoder.BIAS_CACHE_BYTES = size
                    start = time.perf_counter()
                    generate(model, IDS, image, None, config)
                    times[state].append(time.perf_counter() - start)
        encoder.BIAS_CACHE_BYTES = limit
        off, on = statistics.median(times["off"]), statistics.median(times["on"])
        print(f"{name}: encoder output bit-identical (not kept, made, reused): {same}; "
              f"caption median "
              f"of {args.rounds}: off {off:.3f} s, on {on:.3f} s ({off / on:.2f}x)")
        del model


if __name__ == "__main__":
    main()
