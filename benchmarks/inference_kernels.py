"""CPU inference paths against the plain ones they replace, side by side in one process:

- **attention on the CPU** (``ofa.model.attention``: ``cpu_fp32_attention`` and
  ``cpu_bf16_attention``) against SDPA, at OFA-base's shapes: the encoder's self-attention
  (12 heads x 908 tokens, 480 px plus an 8-token prompt, a [1, 12, 908, 908] bias) and a
  decoding step's cross-attention (5 beams' queries against one image's 908 keys, 16
  different key sets in turn so that they come from memory as in a caption);
- **one query against a long cache** (``cpu_one_query_attention``) against SDPA: a
  text-to-image sampling step's self-attention, 24 rows x 12 heads, one query each, against
  256 / 1000 cached positions held in buffers reserved for 1025 (the cache's views), the six
  layers' caches in turn so that they come from memory;
- **the folded ResNet** (``ofa.model.backbone``: BatchNorm folded into each convolution,
  channels-last) against the unfolded one, OFA-base's ResNet at 480 px, fp32 and bf16.

    .venv/bin/python benchmarks/inference_kernels.py [--threads 2] [--repeats 7]

Prints the CPU and a Markdown table: best-of-``repeats`` milliseconds of each path and the
largest difference from the fp32 reference (SDPA on fp32 copies of the same inputs; the
unfolded fp32 ResNet).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from peaks import best_ms


def attention_case(name: str, queries: int, sets: int, repeats: int) -> list[tuple]:
    """One shape's rows: OFA-base's 12 heads of 64 against 908 keys, ``queries`` queries,
    ``sets`` key/value sets taken in turn."""
    from ofa.model.attention import cpu_bf16_attention, cpu_fp32_attention

    torch.manual_seed(0)
    heads, dim, tokens = 12, 64, 908
    scale = (dim * 2) ** -0.5
    q = torch.randn(1, heads, queries, dim)
    keys = [torch.randn(1, heads, tokens, dim) for _ in range(sets)]
    values = [torch.randn(1, heads, tokens, dim) for _ in range(sets)]
    bias = torch.randn(1, heads, queries, tokens)
    want = F.scaled_dot_product_attention(q, keys[0], values[0], attn_mask=bias, scale=scale)
    qb, bb = q.bfloat16(), bias.bfloat16()
    kb, vb = [k.bfloat16() for k in keys], [v.bfloat16() for v in values]
    paths = {
        ("fp32", "SDPA"): lambda i: F.scaled_dot_product_attention(
            q, keys[i], values[i], attn_mask=bias, scale=scale),
        ("fp32", "cpu_fp32_attention"): lambda i: cpu_fp32_attention(q, keys[i], values[i],
                                                                      bias, scale),
        ("bf16", "SDPA"): lambda i: F.scaled_dot_product_attention(
            qb, kb[i], vb[i], attn_mask=bb, scale=scale),
        ("bf16", "cpu_bf16_attention"): lambda i: cpu_bf16_attention(qb, kb[i], vb[i], bb,
                                                                      scale),
    }
    rows = []
    for (dtype, path), fn in paths.items():
        ms = best_ms(lambda fn=fn: [fn(i) for i in range(sets)], repeats) / sets
        rows.append((name, dtype, path, ms, (fn(0).float() - want).abs().max().item()))
    return rows


def one_query_rows(cached: int, repeats: int) -> list[tuple]:
    """A text-to-image step's fp32 self-attention: 24 rows, 12 heads, one query each, against
    ``cached`` positions of buffers reserved for 1025."""
    from ofa.model.attention import cpu_one_query_attention

    torch.manual_seed(0)
    samples, heads, dim, reserved, layers = 24, 12, 64, 1025, 6
    scale = (dim * 2) ** -0.5
    q = torch.randn(samples, heads, 1, dim)
    keys = [torch.randn(samples, heads, reserved, dim).narrow(2, 0, cached) for _ in range(layers)]
    values = [torch.randn(samples, heads, reserved, dim).narrow(2, 0, cached)
              for _ in range(layers)]
    bias = torch.randn(samples, heads, 1, cached)
    want = F.scaled_dot_product_attention(q, keys[0], values[0], attn_mask=bias, scale=scale)
    paths = {
        "SDPA": lambda i: F.scaled_dot_product_attention(q, keys[i], values[i], attn_mask=bias,
                                                         scale=scale),
        "cpu_one_query_attention": lambda i: cpu_one_query_attention(q, keys[i], values[i],
                                                                     bias, scale),
    }
    rows = []
    for path, fn in paths.items():
        ms = best_ms(lambda fn=fn: [fn(i) for i in range(layers)], repeats) / layers
        rows.append((f"text-to-image self-attention, {cached} cached", "fp32", path, ms,
                     (fn(0) - want).abs().max().item()))
    return rows


def resnet_rows(repeats: int) -> list[tuple]:
    from ofa.model import backbone
    from ofa.model.backbone import ResNet

    torch.manual_seed(0)
    net = ResNet((3, 4, 23)).eval()
    for m in net.modules():  # BatchNorm statistics as a trained network has them
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_(1.0, 0.1)
            m.bias.data.normal_(0.0, 0.1)
    image = torch.randn(1, 3, 480, 480)
    folds = backbone._folds
    rows, want = [], None
    for dtype in (torch.float32, torch.bfloat16):
        net.to(dtype)
        x = image.to(dtype)
        for path, on in (("unfolded", False), ("folded, channels-last", True)):
            backbone._folds = folds if on else (lambda module, x: False)
            out = net(x).float()
            want = out if want is None else want
            ms = best_ms(lambda x=x: net(x), repeats)
            rows.append(("ResNet, 480 px", str(dtype).removeprefix("torch."), path, ms,
                         (out - want).abs().max().item()))
        backbone._folds = folds
    return rows


def main() -> None:
    from ofa.hardware import cpu_summary

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with torch.no_grad():
        rows = (attention_case("encoder self-attention", 908, 1, args.repeats)
                + attention_case("decoding step cross-attention", 5, 16, args.repeats)
                + one_query_rows(256, args.repeats) + one_query_rows(1000, args.repeats)
                + resnet_rows(args.repeats))
    print(f"\n{cpu_summary()}\n")
    print("| shape | dtype | path | ms | max abs diff from fp32 |")
    print("|---|---|---|---|---|")
    for name, dtype, path, ms, diff in rows:
        print(f"| {name} | {dtype} | {path} | {ms:.3f} | {diff:.2g} |")


if __name__ == "__main__":
    main()
