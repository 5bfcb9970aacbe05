"""Where one OFA-base caption's time goes on this CPU: ``torch.profiler`` over one ``generate``.

    .venv/bin/python benchmarks/profile_caption.py [--dtype float32] [--threads 2] [--rows 25]

The roofline's model and prompt (``roofline.build``: random OFA-base weights, the time does not
depend on them; ``--dtype int8`` as ``quantize_int8`` makes it), one 480 px image, the
captioning task's official generation settings (beam 5). Prints the median of three timed
captions after two warm-ups, then the profiler's table of operators by self time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from roofline import IDS, build


def main() -> None:
    from ofa.generate import generate
    from ofa.tasks import CaptionTask

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "int8"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, default=25, help="operators in the table")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = build(args.dtype)
    ids = IDS
    image = torch.randn(1, 3, 480, 480).to(model.embed_tokens.weight.dtype)
    config = CaptionTask().generation_config(model.config)
    with torch.no_grad():
        for _ in range(2):
            generate(model, ids, image, None, config)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            [hyps] = generate(model, ids, image, None, config)
            times.append(time.perf_counter() - start)
        with torch.profiler.profile() as prof:
            generate(model, ids, image, None, config)
    print(f"{args.dtype}, {args.threads} threads: {statistics.median(times):.3f} s per caption "
          f"(median of 3), {len(hyps[0].tokens)} tokens")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
