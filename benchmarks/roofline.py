"""Roofline of OFA-base inference on this CPU: each phase's time, the FLOP/s or GB/s it reaches,
and its share of the peak measured in the same run.

    .venv/bin/python benchmarks/roofline.py [--threads 2] [--dtypes float32,bfloat16,int8]
                                            [--repeats 5] [--write BENCHMARKS.md]

The OFA-base architecture with random weights (speed does not depend on the values), one
480 px image, an 8-token prompt. Phases:

- **ResNet** and **transformer encoder** (``encode`` minus the ResNet): compute-bound; FLOPs
  counted by torch's FLOP counter, against a 2048 x 2048 matmul in the phase's dtype (int8:
  a dynamic-int8 linear of the same size).
- **one decoding step** at 5 rows (beam 5) and at 24 rows (24 samples, as a text-to-image
  draw): memory-bound; the median step inside ``generate`` (16 steps, the first left out),
  against the bytes every step must read (the decoder layers' weights, the output table, the
  image's cached cross-attention keys and values) at the read ceiling (a plain ``sum`` over
  200 MB; the best of the reads taken before each memory-bound phase and at both ends of the
  run, since the rate moves with the machine's load).
- **the vocabulary projection** alone at 5 and 24 rows: the largest single read of a step.

Prints the CPU (model and flags) and a Markdown table; ``--write`` puts it into BENCHMARKS.md
between ``<!-- roofline:begin -->`` and ``<!-- roofline:end -->``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from peaks import best_ms, matmul_peak_gflops, read_ceiling_gbps

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- roofline:begin -->", "<!-- roofline:end -->"
DynamicLinear = torch.ao.nn.quantized.dynamic.Linear


def build(kind: str):
    from ofa.model import OFAConfig, OFAModel
    from ofa.model.quantize import quantize_int8

    torch.manual_seed(0)
    model = OFAModel(OFAConfig.preset("base")).eval()
    if kind == "int8":
        quantize_int8(model)
    elif kind == "bfloat16":
        model.to(torch.bfloat16)
    return model


def step_bytes(model, image_tokens: int) -> int:
    """Bytes one decoding step reads for one image: decoder layers, output table, cross K/V."""
    total = 0
    for m in model.decoder.layers.modules():
        if isinstance(m, DynamicLinear):
            total += m.weight().numel() + (m.bias().numel() * 4 if m.bias() is not None else 0)
        else:
            total += sum(p.numel() * p.element_size() for p in m.parameters(recurse=False))
    table = model.vocab_projection
    total += (table.weight().numel() if table is not None
              else model.embed_tokens.weight.numel() * model.embed_tokens.weight.element_size())
    size = 4 if model.embed_tokens.weight.dtype == torch.float32 else 2
    return total + 2 * model.config.decoder_layers * image_tokens * model.config.d_model * size


def step_times(model, ids, images, rows: int) -> list[float]:
    """Seconds of each decoding step (the first left out) of a 16-token generation with
    ``rows`` rows: beam 5, or ``rows`` samples."""
    from ofa.generate import GenerationConfig, generate

    cfg = (GenerationConfig(beam_size=5, max_len_b=16, min_len=16) if rows == 5 else
           GenerationConfig(beam_size=rows, sampling=True, seed=0, max_len_b=16, min_len=16))
    times: list[float] = []
    decode = model.decode

    def timed_decode(*args, **kwargs):
        t0 = time.perf_counter()
        out = decode(*args, **kwargs)
        times.append(time.perf_counter() - t0)
        return out

    model.decode = timed_decode
    try:
        with torch.inference_mode():
            generate(model, ids, images, None, cfg)
    finally:
        del model.decode
    return times[1:]


IDS = torch.tensor([[0, 99, 473, 5, 2218, 6190, 116, 2]])  # BOS, 6 text tokens, EOS


def encoder_flops() -> tuple[int, int]:
    """FLOPs of the ResNet and of the transformer encoder for one 480 px image (counted on the
    fp32 model: the counter does not see int8 kernels, and the arithmetic is the same)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ofa.model.packed import packed_weights

    model = build("float32")
    images = torch.randn(1, 3, 480, 480)
    with torch.inference_mode(), packed_weights(False):  # the counter does not see oneDNN's op
        counter = FlopCounterMode(display=False)
        with counter:
            model.encoder.embed_images(images)
        resnet = counter.get_total_flops()
        counter = FlopCounterMode(display=False)
        with counter:
            model.encode(IDS, images)
    return resnet, counter.get_total_flops() - resnet


def phases(kind: str, repeats: int, reads: list[float], peaks: dict[str, float],
           flops: tuple[int, int]) -> list[tuple]:
    """The phases' rows; a read of the ceiling is added to ``reads`` before each memory-bound
    one (their peak is left None: the best read of the whole run, filled in by ``main``)."""
    model = build(kind)
    float_dtype = model.embed_tokens.weight.dtype  # int8: bf16 where native, else fp32
    ids = IDS
    images = torch.randn(1, 3, 480, 480).to(float_dtype)
    resnet_flops, transformer_flops = flops
    rows = []
    with torch.inference_mode():
        enc = model.encode(ids, images)
        resnet_ms = best_ms(lambda: model.encoder.embed_images(images), repeats)
        encode_ms = best_ms(lambda: model.encode(ids, images), repeats)
    backbone = str(float_dtype).removeprefix("torch.")
    encoder = ("int8" if isinstance(model.encoder.layers[0].fc1, DynamicLinear)
               else backbone)
    rows.append(("ResNet", kind, resnet_ms, resnet_flops / 1e9, "GFLOP",
                 resnet_flops / resnet_ms / 1e6, peaks[backbone], f"{backbone} matmul"))
    encoder_ms = encode_ms - resnet_ms
    rows.append(("transformer encoder", kind, encoder_ms, transformer_flops / 1e9, "GFLOP",
                 transformer_flops / encoder_ms / 1e6, peaks[encoder], f"{encoder} matmul"))
    nbytes = step_bytes(model, enc.hidden.shape[1])
    for n in (5, 24):
        reads.append(read_ceiling_gbps())
        ms = statistics.median(step_times(model, ids, images, n)) * 1e3
        rows.append((f"decoding step, {n} rows", kind, ms, nbytes / 1e6, "MB",
                     nbytes / ms / 1e6, None, "read ceiling"))
    hidden = {n: torch.randn(n, 1, model.config.d_model).to(float_dtype) for n in (5, 24)}
    table = model.embed_tokens.weight
    proj = model.vocab_projection
    table_bytes = (proj.weight().numel() if proj is not None
                   else table.numel() * table.element_size())
    for n, h in hidden.items():
        reads.append(read_ceiling_gbps())
        with torch.inference_mode():
            ms = best_ms(lambda h=h: model.logits(h), repeats)
        rows.append((f"vocabulary projection, {n} rows", kind, ms, table_bytes / 1e6, "MB",
                     table_bytes / ms / 1e6, None, "read ceiling"))
    return rows


def render(rows: list[tuple], reads: list[float], peaks: dict[str, float], command: str) -> str:
    from ofa.hardware import cpu_summary

    ceiling = max(reads)
    lines = [BEGIN, "", "Command:", "", f"    .venv/bin/python benchmarks/roofline.py {command}",
             "", f"CPU: {cpu_summary()}. Measured in the same run: read ceiling "
             f"{ceiling:.1f} GB/s (the best of {len(reads)} reads of 200 MB taken through the "
             f"run, which gave {min(reads):.1f}-{ceiling:.1f}); 2048 x 2048 matmul "
             + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()) + ".", "",
             "| phase | dtype | ms | work | achieved | peak | share of the peak |",
             "|---|---|---|---|---|---|---|"]
    for phase, kind, ms, work, unit, rate, peak, what in rows:
        peak = ceiling if peak is None else peak
        per_s = "GFLOP/s" if unit == "GFLOP" else "GB/s"
        lines.append(f"| {phase} | {kind} | {ms:.1f} | {work:.1f} {unit} | {rate:.1f} {per_s} "
                     f"| {peak:.1f} {per_s} ({what}) | {rate / peak:.0%} |")
    lines += ["", END]
    return "\n".join(lines)


def main() -> None:
    from ofa.hardware import keep_freed_memory

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtypes", default="float32,bfloat16,int8")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per phase (best kept)")
    ap.add_argument("--write", type=Path, default=None, help="update this markdown file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as ofa.load does for CPU models
    kinds = [k for k in args.dtypes.split(",") if k]
    bad = [k for k in kinds if k not in ("float32", "bfloat16", "int8")]
    if bad:
        ap.error(f"unknown dtype(s) {bad}")
    # the read rate moves with the machine's other tenants (46-100 GB/s over a day): read
    # before each memory-bound phase and at both ends, and divide by the best
    reads = [read_ceiling_gbps()]
    peaks = {k: matmul_peak_gflops(k) for k in ("float32", "bfloat16", "int8")}
    flops = encoder_flops()
    rows = [row for kind in kinds for row in phases(kind, args.repeats, reads, peaks, flops)]
    reads.append(read_ceiling_gbps())
    block = render(rows, reads, peaks, " ".join(sys.argv[1:]))
    print(block)
    if args.write:
        text = args.write.read_text()
        if BEGIN in text:
            start, stop = text.index(BEGIN), text.index(END) + len(END)
            text = text[:start] + block + text[stop:]
        else:
            text += "\n## Roofline: where each phase stands (`benchmarks/roofline.py`)\n\n" + block
        args.write.write_text(text + ("" if text.endswith("\n") else "\n"))


if __name__ == "__main__":
    main()
