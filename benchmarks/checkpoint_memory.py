"""Time and memory of loading a checkpoint into a model (``ofa.checkpoints.load_model``).

    .venv/bin/python benchmarks/checkpoint_memory.py CHECKPOINT [--dtype float32] [--src DIR]

Each measurement runs in a fresh process: the seconds ``load_model`` takes, the process's
peak resident memory during the load (VmHWM) and what stays resident once the checkpoint
object is dropped (VmRSS), both above the resident memory after ``import ofa``, next to the
bytes of the model's own parameters and buffers. ``--src`` imports ofa from another source
folder, e.g. an older commit checked out with ``git worktree add /tmp/before HEAD~1``, to
compare two versions on the same file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import gc, json, re, sys, time
sys.path.insert(0, sys.argv[1])
import torch
from ofa.checkpoints import load_model

def status(field):
    return int(re.search(field + r":\s+(\d+)", open("/proc/self/status").read())[1]) / 1024

torch.set_num_threads(1)
base = status("VmRSS")
t0 = time.perf_counter()
model = load_model(sys.argv[2], dtype=getattr(torch, sys.argv[3]))
seconds = time.perf_counter() - t0
gc.collect()
unique = {t.data_ptr(): t for t in model.state_dict().values()}  # tied embeddings once
model_mb = sum(t.numel() * t.element_size() for t in unique.values()) / 2**20
print(json.dumps({"seconds": seconds, "peak_mb": status("VmHWM") - base,
                  "resident_mb": status("VmRSS") - base, "model_mb": model_mb}))
"""


def measure(checkpoint: Path, dtype: str, src: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", WORKER, str(src), str(checkpoint), dtype],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr.strip().splitlines()[-1] if out.stderr else "worker failed")
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="ofa source folder")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    runs = [measure(args.checkpoint, args.dtype, args.src) for _ in range(args.repeats)]
    best = min(runs, key=lambda r: r["seconds"])
    print(f"{args.checkpoint.name} {args.dtype} (ofa from {args.src}): load "
          f"{best['seconds']:.2f} s (best of {args.repeats}), peak +{best['peak_mb']:.0f} MB, "
          f"resident after +{best['resident_mb']:.0f} MB, model {best['model_mb']:.0f} MB")


if __name__ == "__main__":
    main()
