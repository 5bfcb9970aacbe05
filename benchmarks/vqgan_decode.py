"""Seconds for the VQGAN (vqgan_gumbel_f8) to decode OFA's samples of one caption.

    .venv/bin/python benchmarks/vqgan_decode.py [--images 24] [--batch 8] [--threads 2]
        [--dtype fp32 bf16] [--device cpu] [--ckpt PATH]

OFA's evaluation draws 24 samples per caption (``--beam=24``) and decodes all of them to
256x256 images before CLIP picks one (OFA-Sys/OFA run_scripts/image_gen/evaluate_image_gen.sh).
This times ``VQGAN.decode_codes`` on random 32x32 code grids, ``--batch`` images per call,
after one warm-up call, and for bf16 also reports the largest difference from fp32. Weights
are random unless ``--ckpt`` names a checkpoint; the time does not depend on them.
"""

from __future__ import annotations

import argparse
import time

import torch

from ofa.imagegen.vqgan import VQGAN
from ofa.imagegen.vqgan_io import load_vqgan, to_uint8

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def decode_all(model: VQGAN, codes: torch.Tensor, batch: int) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model.decode_codes(c).float().cpu() for c in codes.split(batch)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--batch", type=int, default=8, help="images per decode call")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ckpt", help="a VQGAN checkpoint or folder (default: random weights)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = load_vqgan(args.ckpt) if args.ckpt else VQGAN().eval()
    codes = torch.randint(0, base.config.n_embed, (args.images, 32, 32)).to(args.device)
    print(f"torch {torch.__version__}, {args.threads} threads, device {args.device}, "
          f"{args.images} images of 256x256, {args.batch} per call")
    reference = None
    for name in args.dtype:
        model = VQGAN(base.config).eval()
        model.load_state_dict(base.state_dict())
        model = model.to(device=args.device, dtype=DTYPES[name])
        decode_all(model, codes[:1], 1)  # warm-up: kernel selection, allocator
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = decode_all(model, codes, args.batch)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        line = f"{name}: {seconds:.2f} s ({seconds / args.images:.3f} s/image)"
        if reference is None:
            reference = out
        else:
            u8 = (to_uint8(out).int() - to_uint8(reference).int()).abs()
            line += (f"; vs {args.dtype[0]}: max abs {float((out - reference).abs().max()):.3g}, "
                     f"uint8 levels differ {float((u8 > 0).float().mean()):.2%} "
                     f"(max {int(u8.max())})")
        print(line)


if __name__ == "__main__":
    main()
