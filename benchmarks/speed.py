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
    fn()  # warm-up: first-call allocations, oneDNN primitive creation
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
    import torch

    data = torch.load(path)
    return data[task]["images"][:batch], data[task]["texts"][:batch], data["answers"]


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

    model = get_model(cfg, pretrained=False, device="cpu").eval()
    state = torch.load(args.weights, map_location="cpu")
    res = model.load_state_dict(state, strict=False)
    assert not res.unexpected_keys, res.unexpected_keys
    del state
    load_s = time.perf_counter() - t0
    load_peak = peak_rss_mb()
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
            return model.predict(images, mm.make_samples(case, task), post_process=False,
                                 **MM_SETTINGS[args.task])

    times, _ = timed(run, args.repeats)
    tokens = [strip_hf(r) for r in raw["ids"].tolist()]
    return {"times": times, "tokens": tokens, "load_s": load_s, "load_peak_mb": load_peak,
            "infer_peak_mb": peak_rss_mb()}


def worker_ofa(args) -> dict:
    import torch

    from ofa.checkpoints import load_model
    from ofa.generate import Trie, generate
    from ofa.tasks import CaptionTask, GroundingTask, VQATask
    from ofa.tokenizer import OFATokenizer, pad_batch

    torch.set_num_threads(args.threads)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    images, texts, answers = _inputs(args.inputs, args.task, args.batch)
    t0 = time.perf_counter()
    tokenizer = OFATokenizer.from_dir(args.bpe)
    model = load_model(args.weights, dtype=dtype)
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
    images = images.to(dtype)
    reset_peak()

    def run():
        with torch.no_grad():
            return generate(model, ids, images, None, config, prefix_tokens=prefix, trie=trie)

    times, hyps = timed(run, args.repeats)
    out = {"times": times, "tokens": [h[0].tokens.tolist() for h in hyps], "load_s": load_s,
           "load_peak_mb": load_peak, "infer_peak_mb": peak_rss_mb()}
    if args.with_mfu:
        out.update(encoder_mfu(model, ids, images, repeats=max(args.repeats, 3)))
    return out


def worker_main(args) -> None:
    fn = worker_mmpretrain if args.impl == "mmpretrain" else worker_ofa
    result = fn(args)
    Path(args.result).write_text(json.dumps(result))


def matmul_flops(dtype, size: int = 2048, seconds: float = 2.0) -> float:
    """FLOP/s of a size x size matmul in ``dtype`` on this process's threads."""
    import torch

    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return 2 * size**3 * n / (time.perf_counter() - t0)


def encoder_mfu(model, ids, images, repeats: int) -> dict:
    """Encoder forward (ResNet + transformer) FLOP/s, counted by torch's FLOP counter, against
    the matmul FLOP/s measured in the same process and dtype."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            model.encode(ids, images)
        flops = counter.get_total_flops()
        times, _ = timed(lambda: model.encode(ids, images), repeats)
    achieved = flops / statistics.median(times)
    peak = matmul_flops(images.dtype)
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
    python = (args.env / "venv-mmpretrain" / "bin" / "python" if impl == "mmpretrain"
              else Path(sys.executable))
    result = result_path(args, impl, task, batch, dtype)
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", impl, "--task", task,
           "--batch", str(batch), "--dtype", dtype, "--weights", str(weights), "--inputs",
           str(inputs), "--result", str(result), "--repeats",
           str(args.repeats if batch == 1 else args.repeats_batched),
           "--threads", str(args.threads), "--oracle", str(args.oracle), "--bpe",
           str(args.shared / "bpe")]
    if impl == "ofa" and args.mfu:
        cmd.append("--with-mfu")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONWARNINGS="ignore")
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
             f"a warm-up, {args.rounds} interleaved round(s). Peak memory is the whole "
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--env", type=Path, default=Path(os.environ.get(
        "OFA_ORACLE_SCRATCH", "/tmp/ofa-oracle-env")), help="reference venvs and cached files")
    ap.add_argument("--tasks", default=",".join(TASKS), help=f"subset of {','.join(TASKS)}")
    ap.add_argument("--batches", default="1,8", help="batch sizes (at most 8)")
    ap.add_argument("--dtypes", default="float32,bfloat16", help="our dtypes to run")
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
    ap.add_argument("--worker", choices=["mmpretrain", "ofa"], help=argparse.SUPPRESS)
    for name in ("--task", "--dtype", "--weights", "--inputs", "--result", "--oracle",
                 "--bpe"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--with-mfu", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.impl = args.worker
        args.oracle = Path(args.oracle)
        worker_main(args)
        return
    args.oracle = args.shared / "oracle"
    tasks = [t for t in args.tasks.split(",") if t]
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        ap.error(f"unknown task(s) {bad}; choose from {', '.join(TASKS)}")
    batches = [int(b) for b in args.batches.split(",")]
    if any(not 1 <= b <= 8 for b in batches):
        ap.error("batch sizes must be between 1 and 8")
    dtypes = [d for d in args.dtypes.split(",") if d]
    weights, inputs = (None, None) if args.table_only else prepare(args)
    impls = ([] if args.no_reference else [("mmpretrain", "float32")]) + [
        ("ofa", d) for d in dtypes]
    results: dict = {}
    for task in tasks:
        for batch in batches:
            rounds: dict = {}
            for _ in range(args.rounds):  # interleaved: every implementation once per round
                for impl, dtype in impls:
                    key = "mmpretrain" if impl == "mmpretrain" else dtype
                    rounds.setdefault(key, []).append(
                        cached_result(args, impl, task, batch, dtype) if args.table_only
                        else run_worker(args, impl, task, batch, dtype, weights, inputs))
            results[(task, batch)] = {k: merge_rounds(v) for k, v in rounds.items()}
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
        text = args.write.read_text() if args.write.exists() else "# Benchmarks\n"
        # --table-only keeps the command of the run that measured the results
        saved = args.env / "speed" / "command.txt"
        if not args.table_only:
            saved.write_text(" ".join(sys.argv[1:]))
        used = saved.read_text() if saved.exists() else " ".join(sys.argv[1:])
        cmd = "    .venv/bin/python benchmarks/speed.py " + used
        body = f"{BEGIN}\n\nCommand:\n\n{cmd}\n" + block[len(BEGIN):]
        if BEGIN in text:
            start, end = text.index(BEGIN), text.index(END) + len(END)
            text = text[:start] + body + text[end:]
        else:
            title = "## Inference speed against mmpretrain (`benchmarks/speed.py`)"
            text += f"\n{title}\n\n{body}\n"
        args.write.write_text(text)


if __name__ == "__main__":
    main()
