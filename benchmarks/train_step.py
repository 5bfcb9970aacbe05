"""Seconds per training update of a config, for sizing a recipe to a time budget.

    .venv/bin/python benchmarks/train_step.py configs/shapes-demo.yaml \\
        [--set model.config.attention_heads=8 ...] [--step 3000] [--updates 13]

Builds the trainer of CONFIG (overrides as ``ofa train --set``, values parsed as YAML), takes
the batches of updates ``step, step+1, ...``, runs 3 of them to warm up and times the next
``--updates`` (``Trainer.train_step`` only: no data loading, validation or checkpoints). The
output folder is a temporary one. BENCHMARKS.md quotes it for the demo model's variants.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import yaml

from ofa.train.config import load_config
from ofa.train.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="training config (YAML)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. model.config.attention_heads=8")
    parser.add_argument("--step", type=int, default=3000, help="first update to time")
    parser.add_argument("--updates", type=int, default=13, help="updates to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        overrides = {"output_dir": out}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                parser.error(f"--set needs KEY=VALUE, got {item!r}")
            overrides[key] = yaml.safe_load(value)
        trainer = Trainer(load_config(args.config, overrides), progress=False)
        steps = range(args.step, args.step + 3 + args.updates)
        batches = [trainer.batches[s] for s in steps]
        trainer.step = args.step
        for i, micro in enumerate(batches):
            if i == 3:
                start = time.perf_counter()
            trainer.train_step(micro)
            trainer.step += 1
        seconds = (time.perf_counter() - start) / args.updates
    print(f"{args.config} {' '.join(args.set)}: {seconds:.3f} s per update")


if __name__ == "__main__":
    main()
