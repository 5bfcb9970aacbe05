"""``python -m ofa.train CONFIG.yaml [--resume] [--set key=value ...]`` (what torchrun runs)."""

from __future__ import annotations

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
