"""Text-to-image speed on this CPU: OFA-base sampling 24 images of 1024 codes, fp32 and bf16.

    .venv/bin/python benchmarks/imagine_speed.py [--samples 24] [--steps 1024] [--threads 2]
                                                   [--vqgan-images 24] [--device cuda]
                                                   [--dtypes float16,bfloat16]

Each dtype runs in a fresh process (its own peak memory) on random OFA-base weights (speed
does not depend on the values) with the official sampling settings
(:func:`ofa.imagegen.imagine.generation_config`: top-k 256, only code tokens, exactly
``--steps`` codes). It reports seconds per sample, generated tokens per second, the peak
resident memory, and, per step, the fraction of the weight-streaming floor reached: the bytes
a step must read (every decoder weight, the output-table rows of the ids a step may emit,
and the self-attention cache of the steps so far) divided by the read bandwidth measured in
the same process (a sum over 200 MB, as ``benchmarks/gemv.py`` measures it), over the
measured step time. With 24 rows per weight a step is also bound by arithmetic, so it
reports the roofline fraction too: the larger of that floor and the step's multiply-adds
over the matmul peak measured in the same process (2048^3 in the run's dtype), over the step
time. It also times the VQGAN (taming's f8-8192 architecture, random weights) decoding
``--vqgan-images`` images in fp32, with its FLOPs and the fraction of the fp32 peak they
reach, and gives its share of the whole. On a GPU (``--device cuda``, what
``benchmarks/gpu.sh`` runs) it reports the times and the peak GPU memory; the floor fractions
are CPU figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from peaks import matmul_peak_gflops, read_ceiling_gbps


def step_bytes(model, rows: int, past: int, itemsize: int, vocab: int) -> int:
    """What one decoding step reads: decoder weights, the ``vocab`` output-table rows it
    computes, the KV cache."""
    dec = model.decoder
    weights = sum(p.numel() for p in dec.layers.parameters())
    cfg = model.config
    cache = 2 * cfg.decoder_layers * rows * past * cfg.d_model
    return (weights + vocab * cfg.d_model + cache) * itemsize


def step_flops(model, rows: int, past: int, vocab: int) -> int:
    """Multiply-adds x 2 of one step: every matrix weight and output row once per row, and
    the attention over ``past`` cached positions."""
    dec, cfg = model.decoder, model.config
    matrices = sum(p.numel() for p in dec.layers.parameters() if p.dim() == 2)
    attention = 2 * cfg.decoder_layers * past * cfg.d_model  # scores and weighted sum
    return 2 * rows * (matrices + vocab * cfg.d_model + attention)


def run_one(dtype_name: str, samples: int, steps: int, device: str = "cpu") -> dict:
    from ofa.generate import generate, on_checkpoint
    from ofa.imagegen.imagine import generation_config
    from ofa.model import OFAConfig, OFAModel

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16,
             "float16": torch.float16}[dtype_name]
    torch.manual_seed(0)
    model = OFAModel(OFAConfig.preset("base", code_image_size=256)).eval().to(device, dtype)
    ids = torch.tensor([[0, *range(100, 120), 2]], device=device)
    if device != "cpu":
        return run_on_gpu(model, ids, dtype_name, samples, steps)
    from ofa.hardware import keep_freed_memory

    keep_freed_memory()  # as ofa.load does for CPU models
    bandwidth = read_ceiling_gbps() * 1e9
    peak = matmul_peak_gflops(dtype) * 1e9
    grid = int(steps ** 0.5)
    cfg = generation_config(samples, 0, grid)
    start_id, end_id = cfg.constraint_range
    vocab = 4 + end_id - start_id  # the ids a fine-tuned model may emit: their logits only
    stamps: list[float] = []
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with torch.inference_mode(), on_checkpoint(lambda: stamps.append(time.perf_counter())):
        [hyps] = generate(model, ids, None, None, cfg)
    total = time.perf_counter() - start
    assert len(hyps) == samples and all(len(h.tokens) == steps + 1 for h in hyps)
    step_times = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    itemsize = torch.finfo(dtype).bits // 8
    fractions = sorted(step_bytes(model, samples, t + 1, itemsize, vocab) / bandwidth / dt
                       for t, dt in enumerate(step_times, start=1))
    roofline = sorted(max(step_bytes(model, samples, t + 1, itemsize, vocab) / bandwidth,
                          step_flops(model, samples, t + 1, vocab) / peak) / dt
                      for t, dt in enumerate(step_times, start=1))
    return {"dtype": dtype_name, "samples": samples, "steps": steps, "seconds": total,
            "s_per_sample": total / samples, "tokens_per_s": samples * steps / total,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "rss_before_gb": rss_before / 2**20, "bandwidth_gbs": bandwidth / 1e9,
            "floor_fraction_median": fractions[len(fractions) // 2],
            "floor_fraction_p10": fractions[len(fractions) // 10],
            "peak_gflops": peak / 1e9, "roofline_median": roofline[len(roofline) // 2]}


def run_on_gpu(model, ids, dtype_name: str, samples: int, steps: int) -> dict:
    from ofa.generate import generate
    from ofa.imagegen.imagine import generation_config

    cfg = generation_config(samples, 0, int(steps ** 0.5))
    with torch.inference_mode():
        generate(model, ids, None, None, cfg.replace(min_len=16, max_len_b=16))  # warm-up
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        [hyps] = generate(model, ids, None, None, cfg)
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    assert len(hyps) == samples and all(len(h.tokens) == steps + 1 for h in hyps)
    return {"dtype": dtype_name, "samples": samples, "steps": steps, "seconds": total,
            "s_per_sample": total / samples, "tokens_per_s": samples * steps / total,
            "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30}


def run_vqgan(images: int, device: str = "cpu") -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from ofa.imagegen.vqgan import VQGAN
    from ofa.imagegen.vqgan_io import to_uint8

    torch.manual_seed(0)
    vq = VQGAN().eval().to(device)
    codes = torch.randint(0, 8192, (images, 32, 32), device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        vq.decode_codes(codes[:1])
    peak = matmul_peak_gflops(torch.float32) * 1e9 if device == "cpu" else float("nan")
    start = time.perf_counter()
    with torch.inference_mode():
        for chunk in codes.split(8):
            to_uint8(vq.decode_codes(chunk))
        if device != "cpu":
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    flops = counter.get_total_flops()
    return {"images": images, "seconds": seconds, "gflop_per_image": flops / 1e9,
            "peak_fraction": flops * images / seconds / peak, "peak_gflops": peak / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--steps", type=int, default=1024, help="codes per sample (a square)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vqgan-images", type=int, default=24)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--dtypes", default=None,
                    help="sampling dtypes (default float32,bfloat16 on CPU, float16,bfloat16 "
                         "on a GPU)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child == "vqgan":
        print(json.dumps(run_vqgan(args.vqgan_images, args.device)))
        return
    if args.child:
        print(json.dumps(run_one(args.child, args.samples, args.steps, args.device)))
        return
    dtypes = (args.dtypes or ("float32,bfloat16" if args.device == "cpu"
                              else "float16,bfloat16")).split(",")
    results = {}
    for child in (*dtypes, "vqgan"):
        out = subprocess.run([sys.executable, __file__, "--child", child, "--samples",
                              str(args.samples), "--steps", str(args.steps), "--threads",
                              str(args.threads), "--vqgan-images", str(args.vqgan_images),
                              "--device", args.device],
                             check=True, capture_output=True, text=True).stdout
        results[child] = json.loads(out.strip().splitlines()[-1])
    if args.device != "cpu":
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
        print("| dtype | samples x codes | total s | s/sample | tokens/s | peak GPU GB |")
        print("|---|---|---|---|---|---|")
        for name in dtypes:
            r = results[name]
            print(f"| {name} | {r['samples']} x {r['steps']} | {r['seconds']:.1f} | "
                  f"{r['s_per_sample']:.3f} | {r['tokens_per_s']:.0f} | "
                  f"{r['peak_gpu_gb']:.2f} |")
        vq = results["vqgan"]
        print(f"VQGAN decode of {vq['images']} images (fp32): {vq['seconds']:.2f} s")
        return
    from ofa.hardware import cpu_summary

    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_summary()}")
    print("| dtype | samples x codes | total s | s/sample | tokens/s | peak RSS GB | "
          "read GB/s | matmul peak GFLOP/s | floor fraction (median, p10) | roofline "
          "fraction (median) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in dtypes:
        r = results[name]
        print(f"| {name} | {r['samples']} x {r['steps']} | {r['seconds']:.1f} | "
              f"{r['s_per_sample']:.2f} | {r['tokens_per_s']:.1f} | {r['peak_rss_gb']:.2f} | "
              f"{r['bandwidth_gbs']:.1f} | {r['peak_gflops']:.0f} | "
              f"{r['floor_fraction_median']:.0%}, {r['floor_fraction_p10']:.0%} | "
              f"{r['roofline_median']:.0%} |")
    vq = results["vqgan"]
    print(f"VQGAN: {vq['gflop_per_image']:.0f} GFLOP per 256 px image; {vq['peak_fraction']:.0%} "
          f"of the fp32 matmul peak ({vq['peak_gflops']:.0f} GFLOP/s)")
    for name in dtypes:
        share = vq["seconds"] / (vq["seconds"] + results[name]["seconds"])
        print(f"VQGAN decode of {vq['images']} images (fp32): {vq['seconds']:.1f} s = "
              f"{share:.0%} of the whole with {name} sampling")


if __name__ == "__main__":
    main()
