"""The CLIP reranker (ofa.imagegen.clip) on a GPU against itself on the CPU, and its speed.

    PYTHONPATH=src python3 benchmarks/clip_gpu_check.py [--json OUT.json]

The CPU fp32 path is held to OpenAI's CLIP by tests/imagegen/test_clip.py (oracle weights); this
script needs no oracle files: it fills a ViT-B/16 with seeded random weights of sensible scale
(the same on any machine: CPU generator), scores synthetic uint8 images (OFA's 256x256 decodes
and odd sizes) against four token rows, and reports, against CPU fp32:

* GPU fp32 with TF32 off (should agree to ~1e-5), GPU fp32 with TF32 on, GPU fp16 (OFA runs
  CLIP in fp16 on GPU) and bf16: max abs diff of features and cosines, and whether the
  per-caption image ranking is the same;
* seconds to score OFA's 24 samples of one caption (preprocessing included) and the image
  tower's time for a batch of 24.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ofa.imagegen.clip import CLIP, CLIPReranker, LayerNorm


def seeded_weights(model: CLIP) -> None:
    """n ~ N(0, 1) per tensor (seed = its index); LayerNorms 1 + 0.1n / 0.1n, biases 0.02n,
    matrices n / sqrt(fan_in) (q/k rows x sqrt(2) for selective attention), embeddings small."""
    with torch.no_grad():
        for i, (name, p) in enumerate(model.named_parameters()):
            n = torch.randn(p.shape, generator=torch.Generator().manual_seed(1000 + i))
            if ".ln_" in name or name.startswith("ln_") or "ln_final" in name:
                value = 1 + 0.1 * n if name.endswith("weight") else 0.1 * n
            elif name == "logit_scale":
                value = torch.tensor(math.log(100.0))
            elif name.endswith("bias"):
                value = 0.02 * n
            elif name in ("token_embedding.weight", "positional_embedding"):
                value = 0.02 * n
            elif p.dim() == 1 or name == "visual.positional_embedding":
                value = n * p.shape[-1] ** -0.5
            else:
                fan_in = p[0].numel() if p.dim() > 1 else p.shape[0]
                value = n / math.sqrt(fan_in)
                if name.endswith("in_proj_weight"):
                    value[: 2 * p.shape[1]] *= math.sqrt(2.0)
                if name.endswith(("out_proj.weight", "c_proj.weight")):
                    value *= 0.5
            p.copy_(value)


def synthetic_images() -> list[np.ndarray]:
    g = np.random.default_rng(0)
    out = []
    for k, (h, w) in enumerate([(256, 256)] * 6 + [(400, 600), (512, 384)]):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * (k + 1)) % 256, (yy * (k + 2)) % 256, (xx + yy) % 256], -1)
        out.append(np.clip(base + g.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8))
    return out


def tokens() -> torch.Tensor:
    rows = torch.zeros(4, 77, dtype=torch.long)
    g = torch.Generator().manual_seed(7)
    for i, n in enumerate([5, 9, 14, 30]):
        rows[i, 0], rows[i, n + 1] = 49406, 49407
        rows[i, 1:n + 1] = torch.randint(256, 49000, (n,), generator=g)
    return rows


def run(reranker: CLIPReranker, images, toks) -> tuple[torch.Tensor, torch.Tensor]:
    return reranker.image_features(images), reranker.text_features(toks)


def compare(ref, got) -> dict:
    (fi0, ft0), (fi, ft) = ref, got
    c0 = F.normalize(fi0, dim=-1) @ F.normalize(ft0, dim=-1).T
    c = F.normalize(fi, dim=-1) @ F.normalize(ft, dim=-1).T
    r0 = torch.argsort(-c0.double(), dim=0, stable=True)
    r = torch.argsort(-c.double(), dim=0, stable=True)
    return dict(image=float((fi - fi0).abs().max()), text=float((ft - ft0).abs().max()),
                cosine=float((c - c0).abs().max()), ranks_equal=bool(torch.equal(r, r0)),
                top1_equal=bool(torch.equal(r[0], r0[0])))


def on(model_cpu: CLIP, device: str, dtype: torch.dtype) -> CLIPReranker:
    model = CLIP(model_cpu.config)
    model.load_state_dict(model_cpu.state_dict())
    model.to(device=device, dtype=dtype)
    for m in model.modules():
        if isinstance(m, LayerNorm):
            m.float()
    return CLIPReranker(model, batch_size=24)


def timed(fn, repeats: int = 5) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cpu = CLIP().eval()
    seeded_weights(cpu)
    images, toks = synthetic_images(), tokens()
    ref = run(CLIPReranker(cpu), images, toks)
    report: dict = dict(torch=torch.__version__, gpu=torch.cuda.get_device_name(),
                        feature_norms=[round(float(x), 2) for x in ref[0].norm(dim=-1)])
    for label, dtype, tf32 in (("fp32", torch.float32, False), ("fp32_tf32", torch.float32, True),
                               ("fp16", torch.float16, False), ("bf16", torch.bfloat16, False)):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        r = on(cpu, "cuda", dtype)
        report[label] = compare(ref, run(r, images, toks))
        batch = [images[i % 6] for i in range(24)]  # OFA: 24 samples of 256x256 per caption
        score = timed(lambda r=r, b=batch: r.scores(b, toks[0]))
        pixels = torch.randn(24, 3, 224, 224, device="cuda")
        with torch.inference_mode():
            tower = timed(lambda r=r, x=pixels: r.model.encode_image(x))
        report[label].update(s_score_24_images=round(score, 4), s_image_tower_24=round(tower, 5))
        del r
        torch.cuda.empty_cache()
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
