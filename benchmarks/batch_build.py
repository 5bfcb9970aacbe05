"""Milliseconds to build one update's batches of a config, images already cached.

    .venv/bin/python benchmarks/batch_build.py configs/shapes-demo.yaml \\
        [--step 4000] [--updates 100]

Builds the trainer of CONFIG (output in a temporary folder), builds the batches of updates
``step .. step + updates - 1`` once to fill the image cache (``data.cache_images``), then times
building them again: the per-update cost that the training loop adds to ``Trainer.train_step``
(BENCHMARKS.md quotes it for the demo model).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from ofa.train.config import load_config
from ofa.train.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="training config (YAML)")
    parser.add_argument("--step", type=int, default=4000, help="first update (default 4000)")
    parser.add_argument("--updates", type=int, default=100, help="updates to time (default 100)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(load_config(args.config, {"output_dir": out}), progress=False)
        steps = range(args.step, args.step + args.updates)
        for step in steps:
            trainer.batches[step]
        start = time.perf_counter()
        for step in steps:
            trainer.batches[step]
        ms = (time.perf_counter() - start) / args.updates * 1000
    print(f"{args.config}: {ms:.1f} ms per update to build its batches (images cached)")


if __name__ == "__main__":
    main()
