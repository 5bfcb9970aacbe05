"""Inference speed of ofa against mmpretrain 1.2.0 on the same synthesized OFA-base weights.

    .venv/bin/python benchmarks/speed.py [--write BENCHMARKS.md] [--tasks caption,ground,...]

What it does, in one run:

1. builds the mmpretrain reference with ``<shared>/oracle/setup.sh`` (idempotent; ``--env``);
2. writes the oracle's synthesized OFA-base weights (salt v2) once, as an mmpretrain ``.pth``
   that both implementations load;
3. for every task and batch size, runs mmpretrain, ours in fp32 and ours in bf16 in fresh
   processes, interleaved round by round, each on the same normalized image tensors and texts:
   captioning (beam 5, 480 px), grounding (512 px), VQA with an answer trie (480 px) and
   zero-shot VQA (beam 20, 480 px). Each process loads the model, runs once to warm up, then
   ``--repeats`` timed runs; it reports images/s, median latency, peak resident memory (the
   whole process, and inference alone after the load) and the generated tokens;
4. compares the tokens (ours fp32 vs mmpretrain; ours bf16 vs ours fp32) and measures the
   encoder forward's FLOP/s against a 2048x2048 matmul in the same process (MFU);
5. prints a markdown table and, with ``--write``, puts it into BENCHMARKS.md.

``--side-by-side`` instead runs the strongest alternatives for captioning and grounding beside
ours (fp32, bf16, int8): mmpretrain as shipped, mmpretrain with its KV cache revived (its
``prepare_inputs_for_generation`` reads ``past`` where transformers passes
``past_key_values``, so every step re-runs the decoder on the whole prefix; the worker passes
it on, the fix any user can apply) and ModelScope's port of the official fairseq generator
(its venv from the same ``setup.sh``), and reports each against the floor of this machine:
the encoder's FLOPs at the measured matmul peak plus one weight stream per decoding step at the
measured read ceiling (``--write`` fills the ``side`` block of BENCHMARKS.md).

Generation settings are the official ones (fairseq ``SequenceGenerator``) for ours and the same
search expressed in HF terms for mmpretrain (as ``<shared>/oracle`` matches them): captions
16 tokens + EOS, grounding exactly 4 tokens, VQA unnormalised scores with the question as a
forced prefix, zero-shot VQA 10 tokens + EOS. Where the two searches return different ids the
oracle README explains why (near-tied beams scored with HF's forced-EOS convention).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- speed:begin -->", "<!-- speed:end -->"
SIDE_BEGIN, SIDE_END = "<!-- side:begin -->", "<!-- side:end -->"
TASKS = ("caption", "ground", "vqa", "zsvqa")
IMAGE_SIZE = {"caption": 480, "ground": 512, "vqa": 480, "zsvqa": 480}
# the oracle case whose stored image (and text) is item 0 of every batch
ORACLE_CASE = {"caption": "caption_chelsea", "ground": "refcoco_base", "vqa": "vqa_base",
               "zsvqa": "zsvqa_base"}
EXPRESSIONS = ["the dog on the left", "a man in a red shirt", "the white car", "the smaller cat",
               "woman holding an umbrella", "the top left window", "the blue bus",
               "the plate of food in the middle"]
QUESTIONS = ["what color is the cat?", "is it sunny?", "how many people are there?",
             "what is the man holding?", "is there a dog in the picture?", "what sport is this?",
             "where is the bus?", "what is on the table?"]
# mmpretrain (HF GenerationMixin) settings that reproduce the official search
MM_SETTINGS = {
    "caption": dict(num_beams=5, max_new_tokens=17, min_new_tokens=1, no_repeat_ngram_size=3,
                    length_penalty=1.0),
    "ground": dict(num_beams=5, max_new_tokens=5, min_new_tokens=4, no_repeat_ngram_size=3,
                   length_penalty=1.0),
    "vqa": dict(num_beams=5, max_new_tokens=200, min_new_tokens=1, no_repeat_ngram_size=0,
                length_penalty=0.0),
    "zsvqa": dict(num_beams=20, max_new_tokens=11, min_new_tokens=1, no_repeat_ngram_size=0,
                  length_penalty=0.0),
}
MM_TASK = {"caption": "caption", "ground": "refcoco", "vqa": "vqa", "zsvqa": "zs_vqa"}
MS_TASK = {"caption": "caption", "ground": "refcoco"}  # what the side-by-side run measures
REFERENCES = ("mmpretrain", "mmpretrain-cached", "modelscope")


# ----------------------------------------------------------------------------- helpers
def peak_rss_mb() -> float:
    """Peak resident set size of this process since start or the last :func:`reset_peak`."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Reset VmHWM (Linux: writing 5 to clear_refs) so the next peak covers inference only."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def timed(fn, repeats: int) -> tuple[list[float], object]:
    # warm-up, every implementation alike: first-call allocations, oneDNN primitive creation,
    # and ours keeps the encoder's position biases from the second input of a shape on
    fn()
    fn()
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def strip_hf(ids: list[int]) -> list[int]:
    """HF ids -> fairseq tokens: drop the decoder-start 0 and the batch padding 1s."""
    ids = ids[1:] if ids and ids[0] == 0 else ids
    while ids and ids[-1] == 1:
        ids = ids[:-1]
    return ids


# ----------------------------------------------------------------------------- workers
def _inputs(path: str, task: str, batch: int):
    """The task's first ``batch`` prepared items (the 8 stored ones repeated beyond 8)."""
    import torch

    data = torch.load(path)
    images, texts = data[task]["images"], data[task]["texts"]
    take = [i % len(texts) for i in range(batch)]
    return images[take].contiguous(), [texts[i] for i in take], data["answers"]


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _gpu_peak_mb(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None


def worker_mmpretrain(args) -> dict:
    """Runs inside the mmpretrain venv: no ofa imports here."""
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(args.oracle))
    import run_mmpretrain as mm  # the oracle's builder: mmpretrain config + tokenizer dir

    images, texts, answers = _inputs(args.inputs, args.task, args.batch)
    task = MM_TASK[args.task]
    t0 = time.perf_counter()
    tok_dir = str(Path(args.inputs).parent / "tokenizer")
    cfg = mm.build_cfg(task, "ofa-base", tok_dir, answers if task == "vqa" else None)
    from mmpretrain.apis import get_model

    model = get_model(cfg, pretrained=False, device=args.device).eval()
    if args.impl == "mmpretrain-cached":
        revive_cache(type(model.model))
    state = torch.load(args.weights, map_location=args.device)
    res = model.load_state_dict(state, strict=False)
    assert not res.unexpected_keys, res.unexpected_keys
    del state
    load_s = time.perf_counter() - t0
    load_peak = peak_rss_mb()
    images = images.to(args.device)
    case = {"images": [None] * len(texts), "text": texts}
    raw: dict = {}
    generate = model.model.generate

    def keep_raw(*a, **kw):  # predict() then overwrites VQA's question positions with 1
        out = generate(*a, **kw)
        raw["ids"] = out.clone()
        return out

    model.model.generate = keep_raw
    reset_peak()

    def run():
        with torch.no_grad():
            out = model.predict(images, mm.make_samples(case, task), post_process=False,
                                **MM_SETTINGS[args.task])
        _sync(args.device)
        return out

    times, _ = timed(run, args.repeats)
    tokens = [strip_hf(r) for r in raw["ids"].tolist()]
    return {"times": times, "tokens": tokens, "load_s": load_s, "load_peak_mb": load_peak,
            "infer_peak_mb": peak_rss_mb(), "gpu_peak_mb": _gpu_peak_mb(args.device)}


def revive_cache(cls) -> None:
    """mmpretrain's one-line KV-cache fix: hand transformers' ``past_key_values`` to the
    ``past`` argument its ``prepare_inputs_for_generation`` reads (captioning and grounding
    only: with a cache its VQA constraint sees only the last token)."""
    original = cls.prepare_inputs_for_generation

    def prepare(self, decoder_input_ids=None, past=None, **kwargs):
        past_key_values = kwargs.pop("past_key_values", None)
        return original(self, decoder_input_ids, past=past if past is not None
                        else past_key_values, **kwargs)

    cls.prepare_inputs_for_generation = prepare


def worker_modelscope(args) -> dict:
    """Runs inside the ModelScope venv (``<oracle>/stubs`` on PYTHONPATH): the oracle's builder
    (the same synthesized weights) and ModelScope's port of the fairseq SequenceGenerator with
    the official settings."""
    import torch

    sys.path.insert(0, str(args.oracle))
    import run_modelscope as ms  # threads from OFA_ORACLE_THREADS

    if args.task not in MS_TASK:
        raise SystemExit(f"modelscope worker: {args.task} is not measured")
    images, texts, _ = _inputs(args.inputs, args.task, args.batch)
    t0 = time.perf_counter()
    model = ms.build_model("ofa-base", "v2")
    tok = ms.build_tokenizer(str(Path(args.inputs).parent / "tokenizer"))
    load_s = time.perf_counter() - t0
    load_peak = peak_rss_mb()
    case = {"task": MS_TASK[args.task], "images": [None] * len(texts), "text": texts}
    prompt = tok(ms.prompt_texts(case), return_tensors="pt", padding=True).input_ids
    net_input = {"input_ids": prompt, "patch_images": images,
                 "patch_masks": torch.ones(len(texts), dtype=torch.bool)}
    generator = ms.sg.SequenceGenerator(tokenizer=tok,
                                        **ms.gen_runs(MS_TASK[args.task])["fs_official"])
    reset_peak()

    def run():
        with torch.no_grad():
            return generator.generate([model], {"net_input": net_input})

    times, hyps = timed(run, args.repeats)
    return {"times": times, "tokens": [h[0]["tokens"].tolist() for h in hyps], "load_s": load_s,
            "load_peak_mb": load_peak, "infer_peak_mb": peak_rss_mb()}


def worker_ofa(args) -> dict:
    import torch

    from ofa.checkpoints import load_model
    from ofa.generate import Trie, generate
    from ofa.hardware import keep_freed_memory
    from ofa.tasks import CaptionTask, GroundingTask, VQATask
    from ofa.tokenizer import OFATokenizer, pad_batch

    torch.set_num_threads(args.threads)
    if args.device == "cpu":
        keep_freed_memory()  # as ofa.load does for CPU models
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
             "int8": torch.float32}[args.dtype]
    images, texts, answers = _inputs(args.inputs, args.task, args.batch)
    t0 = time.perf_counter()
    tokenizer = OFATokenizer.from_dir(args.bpe)
    model = load_model(args.weights, device=args.device, dtype=dtype)
    if args.dtype == "int8":
        from ofa.model.quantize import quantize_int8

        quantize_int8(model)
    load_s = time.perf_counter() - t0
    load_peak = peak_rss_mb()
    task = {"caption": CaptionTask(), "ground": GroundingTask(), "vqa": VQATask(),
            "zsvqa": VQATask(zero_shot=True)}[args.task]
    examples = [task.prepare(tokenizer, "bench", **({} if args.task == "caption" else
                                                    {"text" if args.task == "ground"
                                                     else "question": t}))
                for t in texts]
    ids = pad_batch([ex.source for ex in examples])
    prefix = pad_batch([ex.prefix for ex in examples]) if examples[0].prefix else None
    config = task.generation_config(model.config)
    trie = None
    if args.task == "vqa":
        trie = Trie.from_answers(tokenizer, answers)
    if args.task == "zsvqa":
        config = config.replace(max_len_b=10)  # as the oracle's matched runs
    images = images.to(args.device, dtype)
    reset_peak()

    def run():
        with torch.no_grad():
            out = generate(model, ids, images, None, config, prefix_tokens=prefix, trie=trie)
        _sync(args.device)
        return out

    times, hyps = timed(run, args.repeats)
    out = {"times": times, "tokens": [h[0].tokens.tolist() for h in hyps], "load_s": load_s,
           "load_peak_mb": load_peak, "infer_peak_mb": peak_rss_mb(),
           "gpu_peak_mb": _gpu_peak_mb(args.device)}
    if args.with_mfu:
        out.update(encoder_mfu(model, ids, images, repeats=max(args.repeats, 3)))
    if args.with_floor:
        out.update(floor_terms(model, ids, images))
    return out


def floor_terms(model, ids, images) -> dict:
    """What bounds a caption from below on this machine, in the worker's dtype: the encoder's
    FLOPs at the measured matmul peak, and per decoding step the bytes every step must read
    (the decoder layers' weights, the output table and one image's cached cross-attention
    keys and values) at the measured read ceiling."""
    import torch
    from peaks import read_ceiling_gbps

    mfu = encoder_mfu(model, ids[:1], images[:1], repeats=3)
    size = images.element_size()
    with torch.no_grad():
        tokens = model.encode(ids[:1], images[:1]).hidden.shape[1]
    d = model.config.d_model
    step = (sum(p.numel() for p in model.decoder.layers.parameters())
            + model.embed_tokens.weight.numel()
            + 2 * model.config.decoder_layers * tokens * d) * size
    return {"floor_encoder_gflop": mfu["encoder_gflop"],
            "floor_matmul_gflops": mfu["matmul_gflops"], "floor_step_mb": step / 1e6,
            "floor_read_gbps": read_ceiling_gbps()}


def worker_main(args) -> None:
    fn = {"ofa": worker_ofa, "modelscope": worker_modelscope}.get(args.impl, worker_mmpretrain)
    result = fn(args)
    Path(args.result).write_text(json.dumps(result))


def encoder_mfu(model, ids, images, repeats: int) -> dict:
    """Encoder forward (ResNet + transformer) FLOP/s, counted by torch's FLOP counter, against
    the matmul FLOP/s measured in the same process and dtype."""
    import torch
    from peaks import matmul_peak_gflops
    from torch.utils.flop_counter import FlopCounterMode

    from ofa.model.packed import packed_weights

    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter, packed_weights(False):  # the counter does not see oneDNN's op
            model.encode(ids, images)
        flops = counter.get_total_flops()
        times, _ = timed(lambda: model.encode(ids, images), repeats)
    achieved = flops / statistics.median(times)
    peak = matmul_peak_gflops(images.dtype) * 1e9
    return {"encoder_gflop": flops / 1e9, "encoder_s": statistics.median(times),
            "encoder_gflops": achieved / 1e9, "matmul_gflops": peak / 1e9,
            "mfu": achieved / peak}


def demo_agreement(n: int, threads: int) -> dict:
    """Captions of ``n`` ShapesWorld test scenes by the shipped demo model in fp32 and bf16
    (real learned weights): how many are identical, and each dtype's images/s."""
    import torch

    import ofa
    from ofa.data.shapes import ShapesWorld

    torch.set_num_threads(threads)
    world = ShapesWorld()
    images = [world.scene("test", i).render() for i in range(n)]
    out: dict = {"images": n}
    for dtype in ("float32", "bfloat16"):
        model = ofa.load("shapes-demo", device="cpu", dtype=dtype)
        model.caption(images[:8], batch_size=8)  # warm-up
        t0 = time.perf_counter()
        out[dtype] = [r["caption"] for r in model.caption(images, batch_size=8)]
        out[f"{dtype}_images_per_s"] = n / (time.perf_counter() - t0)
    out["identical"] = sum(a == b for a, b in zip(out["float32"], out["bfloat16"], strict=True))
    return out


# ----------------------------------------------------------------------------- orchestration
def load_module(name: str, path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare(args) -> tuple[Path, Path]:
    """The reference venv, the tokenizer folder, the weights and the inputs (all cached)."""
    import torch
    from safetensors.torch import load_file

    work = args.env / "speed"
    work.mkdir(parents=True, exist_ok=True)
    mm_python = args.env / "venv-mmpretrain" / "bin" / "python"
    if not args.skip_setup or not mm_python.exists():
        subprocess.run(["bash", str(args.oracle / "setup.sh"), str(args.env)], check=True)
    tok = work / "tokenizer"
    if not (tok / "vocab.json").exists():
        subprocess.run([sys.executable, str(args.oracle / "make_vocab.py"), str(tok),
                        str(args.shared / "bpe")], check=True)
    weights = work / "ofa-base_v2.pth"
    if not weights.exists():
        subprocess.run([sys.executable, str(args.oracle / "synth_weights.py"), "--config",
                        "ofa-base", "--salt", "v2", "--out", str(weights)], check=True)
    inputs = work / "inputs.pt"
    data: dict = {}
    for task in TASKS:
        case = json.loads((args.oracle / "cases" / f"{ORACLE_CASE[task]}.json").read_text())
        first = load_file(str(args.oracle / "cases" / f"{ORACLE_CASE[task]}.safetensors"))
        size = IMAGE_SIZE[task]
        gen = torch.Generator().manual_seed(2024)
        rest = torch.randint(0, 256, (7, 3, size, size), generator=gen, dtype=torch.uint8)
        images = torch.cat([first["image_input"][:1], (rest / 255 - 0.5) / 0.5])
        text = (case["inputs"].get("text") or [""])[0] if task != "caption" else ""
        pool = EXPRESSIONS if task == "ground" else QUESTIONS
        texts = [""] * 8 if task == "caption" else [text] + [t for t in pool if t != text][:7]
        data[task] = {"images": images.float().contiguous(), "texts": texts}
    vqa_case = json.loads((args.oracle / "cases" / "vqa_base.json").read_text())
    data["answers"] = vqa_case["inputs"]["answers"]
    torch.save(data, inputs)
    return weights, inputs


def result_path(args, impl: str, task: str, batch: int, dtype: str) -> Path:
    return args.env / "speed" / f"{impl}-{dtype}-{task}-{batch}.json"


def summarize(r: dict, batch: int) -> dict:
    r["median_s"] = statistics.median(r["times"])
    r["images_per_s"] = batch / r["median_s"]
    r["peak_mb"] = max(r["load_peak_mb"], r["infer_peak_mb"])
    return r


def cached_result(args, impl: str, task: str, batch: int, dtype: str) -> dict:
    path = result_path(args, impl, task, batch, dtype)
    if not path.exists():
        sys.exit(f"speed.py: no cached result {path}; run without --table-only first")
    return summarize(json.loads(path.read_text()), batch)


def run_worker(args, impl: str, task: str, batch: int, dtype: str, weights: Path,
               inputs: Path) -> dict:
    venv = {"mmpretrain": "venv-mmpretrain", "mmpretrain-cached": "venv-mmpretrain",
            "modelscope": "venv-modelscope"}.get(impl)
    python = Path(sys.executable)
    if venv and impl != "modelscope" and args.mm_python:
        python = Path(args.mm_python)
    elif venv:
        python = args.env / venv / "bin" / "python"
    result = result_path(args, impl, task, batch, dtype)
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", impl, "--task", task,
           "--batch", str(batch), "--dtype", dtype, "--weights", str(weights), "--inputs",
           str(inputs), "--result", str(result), "--repeats",
           str(args.repeats if batch == 1 else args.repeats_batched),
           "--threads", str(args.threads), "--oracle", str(args.oracle), "--bpe",
           str(args.shared / "bpe"), "--device", args.device]
    if impl == "ofa" and args.mfu:
        cmd.append("--with-mfu")
    if impl == "ofa" and args.side_by_side and dtype != "int8" and args.device == "cpu":
        cmd.append("--with-floor")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONWARNINGS="ignore",
               OFA_ORACLE_THREADS=str(args.threads))
    if impl == "modelscope":  # the oracle's stand-in for fairseq, which ModelScope imports
        env["PYTHONPATH"] = str(args.oracle / "stubs")
    print(f"  {impl} {dtype} {task} batch {batch} ...", flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    r = summarize(json.loads(result.read_text()), batch)
    print(f"    median {r['median_s']:.2f} s, {r['images_per_s']:.2f} images/s, "
          f"peak {r['peak_mb']:.0f} MB (during inference {r['infer_peak_mb']:.0f} MB)", flush=True)
    return r


def merge_rounds(runs: list[dict]) -> dict:
    """Rounds of one configuration: all timings pooled, tokens from the last round."""
    out = dict(runs[-1])
    out["times"] = [t for r in runs for t in r["times"]]
    out["median_s"] = statistics.median(out["times"])
    out["peak_mb"] = max(r["peak_mb"] for r in runs)
    out["infer_peak_mb"] = max(r["infer_peak_mb"] for r in runs)
    return out


OFFICIAL_RUN = {"caption": "fs_official", "ground": "fs_official", "vqa": "fs_official"}


def official_tokens(oracle: Path, task: str) -> list | None:
    """Item 0's tokens from the official fairseq generator (the oracle's modelscope port, the
    search the published numbers use); zero-shot VQA there used beam 5, not 20."""
    if task not in OFFICIAL_RUN:
        return None
    case = json.loads((oracle / "cases" / f"{ORACLE_CASE[task]}.json").read_text())
    return case["generation"]["modelscope"][OFFICIAL_RUN[task]]["ids"]


def identical(a: list | None, b: list | None) -> str:
    if a is None or b is None:
        return "n/a"
    same = sum(x == y for x, y in zip(a, b, strict=True))
    return "yes" if same == len(a) else f"{same}/{len(a)}"


def _speed_row(task: str, batch: int, r: dict, official: list | None) -> str:
    mm, f32, b16 = r.get("mmpretrain"), r.get("float32"), r.get("bfloat16")

    def ips(x):
        return f"{batch / x['median_s']:.3f}" if x else "-"

    def ratio(x):
        return f"**{mm['median_s'] / x['median_s']:.1f}x**" if x and mm else "-"

    def cell(key, runs, fmt):
        return " / ".join(fmt.format(x[key]) if x else "-" for x in runs)

    return (f"| {task} | {batch} | {ips(mm)} | {ips(f32)} | {ratio(f32)} | {ips(b16)} | "
            f"{ratio(b16)} | {cell('median_s', (mm, f32, b16), '{:.2f}')} | "
            f"{cell('peak_mb', (mm, f32, b16), '{:.0f}')} | "
            f"{cell('infer_peak_mb', (mm, f32), '{:.0f}')} | "
            f"{identical(f32 and f32['tokens'][:1], official)} | "
            f"{identical(f32 and f32['tokens'], mm and mm['tokens'])} | "
            f"{identical(b16 and b16['tokens'], f32 and f32['tokens'])} |")


def table(results: dict, args) -> str:
    from ofa.hardware import cpu_summary

    lines = [BEGIN, "",
             f"CPU: {cpu_summary()}.", "",
             f"OFA-base, synthesized weights (oracle salt v2), {args.threads} CPU threads, "
             f"{args.repeats} timed runs at batch 1 and {args.repeats_batched} at batch 8 after "
             f"two warm-up runs, {args.rounds} interleaved round(s). Peak memory is the whole "
             "process's resident peak (model load included); *during inference* is the peak "
             "resident size while generating (the loaded model included).", "",
             "Tokens: item 0 of each task is an oracle case, so ours fp32 is compared with the "
             "official fairseq generator's output for it (the search the published numbers "
             "use; zero-shot VQA is stored there with beam 5 only); every item with "
             "mmpretrain's HF beam search, which on these random weights often picks another "
             "of near-tied beams (it scores an EOS forced at the length limit as log p = 0; "
             "`<shared>/oracle/README.md`, known differences 1); and bf16 with fp32.", "",
             "| task | batch | mmpretrain images/s | ours fp32 images/s | speed-up fp32 | "
             "ours bf16 images/s | speed-up bf16 | median latency mm / fp32 / bf16 (s) | "
             "peak MB mm / fp32 / bf16 | peak MB during inference mm / fp32 | tokens fp32 = "
             "official (item 0) | tokens fp32 = mm | tokens bf16 = fp32 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_speed_row(*key, r, official_tokens(args.oracle, key[0]))
              for key, r in results.items() if key != "demo"]
    mfu = [(k, d, r[d]) for k, r in results.items() if k != "demo"
           for d in ("float32", "bfloat16") if r.get(d) and "mfu" in r[d]]
    if mfu:
        lines += ["", "Encoder forward (ResNet + transformer encoder) against a 2048x2048 "
                  "matmul measured in the same process:", "",
                  "| task | batch | dtype | encoder GFLOP | encoder s | achieved GFLOP/s | "
                  "matmul GFLOP/s | MFU |", "|---|---|---|---|---|---|---|---|"]
        for (task, batch), dtype, x in mfu:
            lines.append(f"| {task} | {batch} | {dtype} | {x['encoder_gflop']:.1f} | "
                         f"{x['encoder_s']:.3f} | {x['encoder_gflops']:.0f} | "
                         f"{x['matmul_gflops']:.0f} | {x['mfu']:.0%} |")
    demo = results.get("demo")
    if demo:
        lines += ["", f"bf16 against fp32 on real learned weights: the shipped demo model "
                  f"captions {demo['images']} ShapesWorld test scenes (batch 8); "
                  f"**{demo['identical']}/{demo['images']} "
                  f"({demo['identical'] / demo['images']:.1%}) captions identical**; "
                  f"{demo['float32_images_per_s']:.1f} images/s in fp32, "
                  f"{demo['bfloat16_images_per_s']:.1f} in bf16."]
    lines += ["", END]
    return "\n".join(lines)


IMPL_NAMES = {"mmpretrain": "mmpretrain 1.2.0 as shipped",
              "mmpretrain-cached": "mmpretrain, KV cache revived",
              "modelscope": "ModelScope 1.40.2 (official generator port)",
              "float32": "ours fp32", "bfloat16": "ours bf16", "float16": "ours fp16",
              "int8": "ours int8"}


def floor_s(x: dict, read_gbps: float, matmul_gflops: float) -> float:
    """Seconds this machine needs at least for item 0: the encoder at the matmul peak, one
    weight stream per generated token at the read ceiling (``floor_terms``)."""
    steps = len(x["tokens"][0])
    return (x["floor_encoder_gflop"] / matmul_gflops
            + steps * x["floor_step_mb"] / 1e3 / read_gbps)


def best_peaks(results: dict) -> tuple[float, dict[str, float]]:
    """The best read rate of every worker of the run, and per dtype the best matmul peak: each
    worker measures them once, and the read rate moved with the machine's load (48-94 GB/s
    between the workers of one run), so each floor takes the best the machine gave."""
    runs = [(key, x) for r in results.values() for key, x in r.items()
            if "floor_read_gbps" in x]
    matmul: dict[str, float] = {}
    for key, x in runs:
        matmul[key] = max(matmul.get(key, 0.0), x["floor_matmul_gflops"])
    return max((x["floor_read_gbps"] for _, x in runs), default=0.0), matmul


def side_table(results: dict, args) -> str:
    from ofa.hardware import cpu_summary

    if args.device.startswith("cuda"):
        import torch

        where = f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}"
    else:
        where = f"CPU: {cpu_summary()}"
    read_gbps, matmul_gflops = best_peaks(results)
    lines = [SIDE_BEGIN, "", f"{where}.", "",
             f"OFA-base, synthesized weights (oracle salt v2), {args.threads} CPU threads, "
             f"{args.repeats} timed runs per process after two warm-up runs, {args.rounds} "
             "interleaved round(s), the same image tensors and prompts for every "
             "implementation. *Floor*: the encoder's FLOPs at the matmul peak of the dtype plus, "
             "for each generated token, one read of the decoder weights, the output table and "
             "the image's cached cross-attention keys/values at the read ceiling, all measured "
             "in the same run (each worker of ours measures them; the best of the run counts"
             + (f": read ceiling {read_gbps:.1f} GB/s" if read_gbps else "")
             + "; int8 has no such floor: its kernels' peak is not measured). "
             "Tokens: item 0 against the official fairseq generator's ids stored in the oracle.",
             "", "| task | batch | implementation | median s | images/s | speed-up over "
             "mmpretrain | over mmpretrain, cache revived | floor s | share of the floor | "
             "peak GPU MB | tokens = official |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (task, batch), r in results.items():
        official = official_tokens(args.oracle, task)
        mm, cached = r.get("mmpretrain"), r.get("mmpretrain-cached")
        for key, x in r.items():
            floor = (floor_s(x, read_gbps, matmul_gflops[key])
                     if batch == 1 and "floor_step_mb" in x else None)
            lines.append(
                f"| {task} | {batch} | {IMPL_NAMES[key]} | {x['median_s']:.2f} | "
                f"{batch / x['median_s']:.2f} | "
                + (f"{mm['median_s'] / x['median_s']:.1f}x" if mm else "-") + " | "
                + (f"**{cached['median_s'] / x['median_s']:.2f}x**" if cached else "-") + " | "
                + (f"{floor:.2f} | {floor / x['median_s']:.0%}" if floor else "- | -") + " | "
                + (f"{x['gpu_peak_mb']:.0f}" if x.get("gpu_peak_mb") else "-") + " | "
                + identical(x["tokens"][:1], official) + " |")
    lines += ["", SIDE_END]
    return "\n".join(lines)


def write_block(args, block: str, begin: str, end: str, saved_name: str, title: str) -> None:
    """Put ``block`` (from ``begin`` to ``end``) into ``args.write`` with the command that made
    it (``--table-only`` keeps the command of the run that measured the results, saved as
    ``saved_name``), replacing the previous block or appending a section ``title``."""
    saved = args.env / "speed" / saved_name
    if not args.table_only:
        saved.write_text(" ".join(sys.argv[1:]))
    command = saved.read_text() if saved.exists() else " ".join(sys.argv[1:])
    path = args.write
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    body = (f"{begin}\n\nCommand:\n\n    .venv/bin/python benchmarks/speed.py {command}\n"
            + block[len(begin):])
    if begin in text:
        start, stop = text.index(begin), text.index(end) + len(end)
        text = text[:start] + body + text[stop:]
    else:
        text += f"\n{title}\n\n{body}\n"
    path.write_text(text)


def run_rounds(args, task: str, batch: int, impls: list[tuple[str, str]], weights, inputs
               ) -> dict:
    """Every implementation once per round (interleaved, so a noisy neighbour slows them
    alike), the rounds merged; keyed by reference name or our dtype."""
    rounds: dict = {}
    for _ in range(args.rounds):
        for impl, dtype in impls:
            rounds.setdefault(dtype if impl == "ofa" else impl, []).append(
                cached_result(args, impl, task, batch, dtype) if args.table_only
                else run_worker(args, impl, task, batch, dtype, weights, inputs))
    return {k: merge_rounds(v) for k, v in rounds.items()}


def run_side_by_side(args) -> None:
    tasks = [t for t in (args.tasks or "caption,ground").split(",") if t]
    batches = [int(b) for b in (args.batches or "1").split(",")]
    dtypes = [d for d in (args.dtypes or "float32,bfloat16,int8").split(",") if d]
    references = [r for r in args.references.split(",") if r]
    weights, inputs = (None, None) if args.table_only else prepare(args)
    results: dict = {}
    for task in tasks:
        # with its cache revived mmpretrain's VQA constraint sees only the last token, and
        # the ModelScope worker runs the searches the oracle stores (captions, boxes)
        impls = [(r, "float32") for r in references if r == "mmpretrain"
                 or (r == "mmpretrain-cached" and task in ("caption", "ground"))
                 or (r == "modelscope" and task in MS_TASK)] + [("ofa", d) for d in dtypes]
        for batch in batches:
            results[(task, batch)] = run_rounds(args, task, batch, impls, weights, inputs)
    block = side_table(results, args)
    print(block)
    if args.write:
        write_block(args, block, SIDE_BEGIN, SIDE_END, "side-command.txt",
                    "## Side by side with the strongest alternatives (`benchmarks/speed.py "
                    "--side-by-side`)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--env", type=Path, default=Path(os.environ.get(
        "OFA_ORACLE_SCRATCH", "/tmp/ofa-oracle-env")), help="reference venvs and cached files")
    ap.add_argument("--tasks", default=None,
                    help=f"subset of {','.join(TASKS)} (default all; --side-by-side: "
                         "caption,ground)")
    ap.add_argument("--batches", default=None,
                    help="batch sizes, 1-64 (default 1,8; --side-by-side: 1)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the GPU table: gpu.sh)")
    ap.add_argument("--references", default=",".join(REFERENCES),
                    help="--side-by-side: the alternatives to run, of "
                         f"{','.join(REFERENCES)} (default all)")
    ap.add_argument("--mm-python", default=None,
                    help="the Python where mmpretrain imports (default: the oracle's venv)")
    ap.add_argument("--dtypes", default=None,
                    help="our dtypes to run (float32, bfloat16, int8; default float32,bfloat16, "
                         "with --side-by-side float32,bfloat16,int8)")
    ap.add_argument("--no-reference", action="store_true", help="skip mmpretrain")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per process, batch 1")
    ap.add_argument("--repeats-batched", type=int, default=1,
                    help="timed runs per process at batch > 1")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-mfu", dest="mfu", action="store_false",
                    help="skip the encoder FLOP/s measurement")
    ap.add_argument("--skip-setup", action="store_true",
                    help="do not rerun setup.sh when the mmpretrain venv exists")
    ap.add_argument("--demo-images", type=int, default=200,
                    help="ShapesWorld test scenes for the bf16-vs-fp32 caption check (0: skip)")
    ap.add_argument("--table-only", action="store_true",
                    help="rebuild the table from the last run's cached results, run nothing")
    ap.add_argument("--write", type=Path, default=None, help="update this markdown file")
    # worker mode (internal)
    ap.add_argument("--side-by-side", action="store_true",
                    help="captioning and grounding against mmpretrain (as shipped and with its "
                         "cache revived) and ModelScope, with the floor of this machine")
    ap.add_argument("--worker", choices=["ofa", *REFERENCES], help=argparse.SUPPRESS)
    for name in ("--task", "--dtype", "--weights", "--inputs", "--result", "--oracle",
                 "--bpe"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--with-mfu", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--with-floor", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.impl = args.worker
        args.oracle = Path(args.oracle)
        worker_main(args)
        return
    args.oracle = args.shared / "oracle"
    bad = [t for t in (args.tasks or "").split(",") if t and t not in TASKS]
    if bad:
        ap.error(f"unknown task(s) {bad}; choose from {', '.join(TASKS)}")
    if any(not b.isdigit() or not 1 <= int(b) <= 64 for b in (args.batches or "1").split(",")):
        ap.error("batch sizes must be between 1 and 64")
    bad = [r for r in args.references.split(",") if r and r not in REFERENCES]
    if bad:
        ap.error(f"unknown reference(s) {bad}; choose from {', '.join(REFERENCES)}")
    if args.side_by_side:
        run_side_by_side(args)
        return
    tasks = [t for t in (args.tasks or ",".join(TASKS)).split(",") if t]
    batches = [int(b) for b in (args.batches or "1,8").split(",")]
    dtypes = [d for d in (args.dtypes or "float32,bfloat16").split(",") if d]
    weights, inputs = (None, None) if args.table_only else prepare(args)
    impls = ([] if args.no_reference else [("mmpretrain", "float32")]) + [
        ("ofa", d) for d in dtypes]
    results: dict = {}
    for task in tasks:
        for batch in batches:
            results[(task, batch)] = run_rounds(args, task, batch, impls, weights, inputs)
    demo_cache = args.env / "speed" / "demo.json"
    if args.table_only and demo_cache.exists():
        results["demo"] = json.loads(demo_cache.read_text())
    elif args.demo_images > 0:
        print(f"  demo model fp32 vs bf16 on {args.demo_images} test scenes ...", flush=True)
        results["demo"] = demo_agreement(args.demo_images, args.threads)
        demo_cache.write_text(json.dumps(results["demo"]))
    block = table(results, args)
    print(block)
    if args.write:
        write_block(args, block, BEGIN, END, "command.txt",
                    "## Inference speed against mmpretrain (`benchmarks/speed.py`)")


if __name__ == "__main__":
    main()
