"""How fast a decoding step can read OFA-base's weights on this CPU.

    .venv/bin/python benchmarks/gemv.py [--threads 2]

A beam-search step multiplies a few rows (the beams) by every decoder weight and by the
59457 x 768 output table, so it is bound by how fast those weights stream from memory. This
prints, for 5 and 40 rows: the output table in both orientations (``F.linear`` vs
``table @ hidden^T``), the decoder's FFN weights in both orientations, cycled so they never
stay in cache, the same through oneDNN on packed weights (the model's path,
``ofa.model.packed``) with one attention-sized product in cache and from memory, and a plain
read (``sum``) for the bandwidth ceiling.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from peaks import best_ms, read_ceiling_gbps

from ofa.model.packed import packs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from ofa.hardware import cpu_summary

    print(f"CPU: {cpu_summary()}")
    print(f"read ceiling (sum of 200 MB): {read_ceiling_gbps():.1f} GB/s")
    for dtype in (torch.float32, torch.bfloat16):
        for rows in (5, 40):
            print(f"{str(dtype)[6:]:8s} rows {rows:2d}: {step_weights(dtype, rows)}")


def step_weights(dtype: torch.dtype, rows: int) -> str:
    table = torch.randn(59457, 768).to(dtype)
    nbytes = table.numel() * table.element_size()
    # 6 layers x (fc1 + fc2) = 12 FFN matrices, as one decoding step reads them
    ffn = [torch.randn(3072, 768).to(dtype) if i % 2 == 0 else torch.randn(768, 3072).to(dtype)
           for i in range(12)]
    ffn_bytes = sum(w.numel() * w.element_size() for w in ffn)
    h = {768: torch.randn(rows, 768).to(dtype), 3072: torch.randn(rows, 3072).to(dtype)}
    linear = best_ms(lambda: F.linear(h[768], table))
    flipped = best_ms(lambda: (table @ h[768].T).T.contiguous())
    layers = best_ms(lambda: [F.linear(h[w.shape[1]], w) for w in ffn])
    layers_flipped = best_ms(lambda: [(w @ h[w.shape[1]].T).T.contiguous() for w in ffn])
    line = (f"output table F.linear {linear:5.1f} ms ({nbytes / linear / 1e6:4.1f} GB/s), "
            f"table @ h^T {flipped:5.1f} ms ({nbytes / flipped / 1e6:4.1f} GB/s); decoder FFN "
            f"weights F.linear {ffn_bytes / layers / 1e6:4.1f} GB/s, W @ h^T "
            f"{ffn_bytes / layers_flipped / 1e6:4.1f} GB/s")
    if not packs(dtype):
        return line
    # the model's path: oneDNN on weights packed once (ofa.model.packed)
    product = torch.ops.mkldnn._linear_pointwise
    packed_table = torch.ops.mkldnn._reorder_linear_weight(table, None)
    packed_ffn = [torch.ops.mkldnn._reorder_linear_weight(w, None) for w in ffn]
    table_ms = best_ms(lambda: product(h[768], packed_table, None, "none", [], ""))
    ffn_ms = best_ms(lambda: [product(h[w.shape[1]], p, None, "none", [], "")
                              for w, p in zip(ffn, packed_ffn, strict=True)])
    # one attention-sized weight (768 x 768) read 48 times: from the cache, and 48 different
    # ones from memory; the first is mostly the cost of a call
    square = [torch.ops.mkldnn._reorder_linear_weight(torch.randn(768, 768).to(dtype), None)
              for _ in range(48)]
    hot = best_ms(lambda: [product(h[768], square[0], None, "none", [], "") for _ in square])
    cold = best_ms(lambda: [product(h[768], p, None, "none", [], "") for p in square])
    square_mb = 768 * 768 * table.element_size() / 1e6
    return (f"{line}\n{'':18s}packed: output table {table_ms:5.1f} ms "
            f"({nbytes / table_ms / 1e6:4.1f} GB/s), decoder FFN weights "
            f"{ffn_bytes / ffn_ms / 1e6:4.1f} GB/s; one 768 x 768 product "
            f"{hot / len(square) * 1e3:4.1f} us in cache, {cold / len(square) * 1e3:4.1f} us "
            f"from memory ({square_mb * len(square) / cold:4.1f} GB/s)")

if __name__ == "__main__":
    main()
