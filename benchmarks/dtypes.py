"""Our dtypes side by side on this CPU: fp32, bf16, int8 and what ``auto`` picks.

    .venv/bin/python benchmarks/dtypes.py [--rounds 3] [--repeats 3] [--threads 2]
                                          [--demo-scenes 500] [--json F]
                                          [--dtypes float32 bfloat16 int8]

1. OFA-base on the oracle's synthesized weights (``<shared>/oracle``, salt v2), captioning
   the oracle's astronaut at batch 1 with the official settings (beam 5, 480 px): median
   seconds per image of each dtype, the rounds interleaved (every dtype once per round, so a
   noisy neighbour slows them alike), and whether its tokens equal fp32's.
2. The shipped demo model (real learned weights) captioning ``--demo-scenes`` ShapesWorld test
   scenes in each dtype: how many captions are identical to fp32's.

Prints the CPU (model and flags) first: bf16 is only fast where the CPU has AVX512-BF16 or AMX.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DTYPES = ("float32", "bfloat16", "int8")


def synth_base(shared: Path, cache: Path) -> Path:
    """The oracle's ofa-base weights as an mmpretrain .pth (built once into ``cache``)."""
    import importlib.util

    out = cache / "ofa-base_v2.pth"
    if not out.exists():
        spec = importlib.util.spec_from_file_location("sw", shared / "oracle" / "synth_weights.py")
        sw = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sw)
        rows = sw.read_keys(shared / "oracle" / "keys" / "ofa-base.mmpretrain.tsv")
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(sw.synth_state_dict(rows, "v2"), out)
    return out


def caption_speed(args) -> dict:
    from safetensors.torch import load_file

    import ofa

    weights = synth_base(args.shared, args.cache)
    case = args.shared / "oracle" / "cases" / "caption_base.safetensors"
    image = load_file(str(case))["image_input"][:1]
    models = {d: ofa.load(weights, device="cpu", dtype=d, vocab=args.shared / "bpe",
                          progress=False) for d in args.dtypes}
    times: dict[str, list[float]] = {d: [] for d in args.dtypes}
    tokens: dict[str, list[int]] = {}
    for _ in range(args.rounds):
        for d, m in models.items():
            caption_tensor(m, image)  # warm-up
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                r = caption_tensor(m, image)
                times[d].append(time.perf_counter() - t0)
            tokens[d] = r
    return {d: {"median_s": statistics.median(t), "runs": len(t),
                "tokens_equal_fp32": tokens[d] == tokens["float32"]} for d, t in times.items()}


def caption_tensor(m, image: torch.Tensor) -> list[int]:
    """The official caption of a preprocessed image tensor (skips file decoding)."""
    from ofa.generate import generate
    from ofa.tasks import CaptionTask

    task = CaptionTask()
    ids = torch.tensor([task.prepare(m.tokenizer, "").source])
    with torch.inference_mode():
        hyps = generate(m.model, ids, image.to(m.dtype), None,
                        task.generation_config(m.model.config, m.tokenizer))
    return hyps[0][0].tokens.tolist()


def demo_agreement(n: int, dtypes: list[str]) -> dict:
    import ofa
    from ofa.data.shapes import ShapesWorld

    world = ShapesWorld()
    images = [world.scene("test", i).render() for i in range(n)]
    captions = {}
    speed = {}
    for d in dtypes:
        m = ofa.load("shapes-demo", device="cpu", dtype=d)
        m.caption(images[:8], batch_size=8)  # warm-up
        t0 = time.perf_counter()
        captions[d] = [r["caption"] for r in m.caption(images, batch_size=8)]
        speed[d] = n / (time.perf_counter() - t0)
    return {d: {"identical_to_fp32": sum(a == b for a, b in zip(captions["float32"], c,
                                                                strict=True)),
                "images_per_s": speed[d]} for d, c in captions.items()}


def main() -> None:
    from ofa.api import parse_dtype
    from ofa.hardware import cpu_summary

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    p.add_argument("--cache", type=Path, default=Path("/tmp/ofa-dtypes"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--demo-scenes", type=int, default=500)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES),
                   help="the dtypes to compare (float32 is always added: the reference)")
    args = p.parse_args()
    args.dtypes = ["float32", *[d for d in args.dtypes if d != "float32"]]
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_summary()}; auto picks {parse_dtype('auto')}", flush=True)
    result = {"cpu": cpu_summary(), "auto": str(parse_dtype("auto")),
              "caption_base": caption_speed(args)}
    for d, r in result["caption_base"].items():
        print(f"OFA-base caption, batch 1, {d}: {r['median_s']:.2f} s (median of {r['runs']}), "
              f"tokens = fp32: {r['tokens_equal_fp32']}", flush=True)
    if args.demo_scenes:
        result["demo"] = demo_agreement(args.demo_scenes, args.dtypes)
        for d, r in result["demo"].items():
            print(f"demo model, {args.demo_scenes} test scenes, {d}: "
                  f"{r['identical_to_fp32']} captions = fp32, {r['images_per_s']:.1f} images/s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
