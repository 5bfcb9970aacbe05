"""The ``ofa`` command line. Every user mistake ends as one ``ofa: error: ...`` line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import OFAError

# tasks the embedded ShapesWorld model was trained for: their default when no official
# checkpoint is in the cache
DEMO_TASKS = ("caption", "vqa", "ground", "entail", "classify")
DEFAULT_MODELS = {"caption": "ofa-base-caption", "vqa": "ofa-base-vqa",
                  "ground": "ofa-base-refcoco", "entail": "ofa-base-snli-ve",
                  "classify": "ofa-large-imagenet",
                  "summarize": "ofa-large-gigaword", "generate": "ofa-base"}
# CLI flag -> GenerationConfig field
DECODING_FLAGS = {"beam": "beam_size", "max_len": "max_len_b", "max_len_a": "max_len_a",
                  "min_len": "min_len", "no_repeat_ngram": "no_repeat_ngram_size",
                  "lenpen": "lenpen", "nbest": "nbest", "temperature": "temperature",
                  "top_k": "top_k", "top_p": "top_p", "seed": "seed"}


def _common(p: argparse.ArgumentParser, task: str, decoding: bool = True) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help=f"registry name (see `ofa models`), checkpoint path or shapes-demo "
                        f"(default: {DEFAULT_MODELS[task]} when it is downloaded"
                        + (", else the embedded shapes-demo model)" if task in DEMO_TASKS
                           else ")"))
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    g.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="weights and activations dtype (default: float32)")
    g.add_argument("--vocab", type=Path, default=None,
                   help="tokenizer folder for checkpoints that ship none")
    o = p.add_argument_group("output")
    o.add_argument("--batch-size", type=int, default=8, help="inputs per batch (default: 8)")
    o.add_argument("--json", action="store_true",
                   help="one JSON object per line: input, result, tokens, score")
    if decoding:
        d = p.add_argument_group("decoding (defaults: the official settings of the task)")
        d.add_argument("--beam", type=int, help="beam size")
        d.add_argument("--max-len", type=int, help="max generated tokens (fairseq max_len_b)")
        d.add_argument("--max-len-a", type=float, help="extra max length per source token")
        d.add_argument("--min-len", type=int, help="min generated tokens before EOS")
        d.add_argument("--no-repeat-ngram", type=int, help="block repeated n-grams of this size")
        d.add_argument("--lenpen", type=float, help="length penalty exponent")
        d.add_argument("--unnormalized", action="store_true", default=None,
                       help="rank by summed log-prob, not per-token average")
        d.add_argument("--nbest", type=int, help="hypotheses to output per input")
        d.add_argument("--sampling", action="store_true", default=None,
                       help="sample instead of beam search")
        d.add_argument("--temperature", type=float, help="softmax temperature")
        d.add_argument("--top-k", type=int, help="sampling: keep the k most likely tokens")
        d.add_argument("--top-p", type=float, help="sampling: nucleus probability mass")
        d.add_argument("--seed", type=int, help="sampling: random seed")


def _decoding(args: argparse.Namespace) -> dict:
    out = {field: getattr(args, flag) for flag, field in DECODING_FLAGS.items()
           if getattr(args, flag, None) is not None}
    if getattr(args, "unnormalized", None):
        out["normalize_scores"] = False
    if getattr(args, "sampling", None):
        out["sampling"] = True
    return out


def _read_lines(path: Path, what: str) -> list[str]:
    from .errors import InputError

    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {what} file {path}: {e}") from None
    lines = [ln for ln in lines if ln]
    if not lines:
        raise InputError(f"{what} file {path} is empty")
    return lines


def _add_tasks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("caption", help="describe images",
                       description="Caption images (official: beam 5, <= 16 tokens).")
    p.add_argument("images", nargs="+", help="image files")
    _common(p, "caption")

    p = sub.add_parser("vqa", help="answer a question about images",
                       description="Visual question answering. Fine-tuned VQA checkpoints force "
                                   "the question as decoder prefix; pre-trained ones answer "
                                   "zero-shot (beam 20, no trie).")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--question", "-q", required=True, help="the question")
    p.add_argument("--answers", type=Path, help="file of allowed answers, one per line "
                                                "(e.g. the 3,129 VQAv2 answers)")
    p.add_argument("--mode", choices=["beam", "all", "open"], default="beam",
                   help="beam: beam search (within --answers if given); all: score every "
                        "answer (official numbers); open: unconstrained")
    p.add_argument("--objects", help="VinVL object tags, comma-separated, for fine-tunes "
                                     "trained with them")
    zs = p.add_mutually_exclusive_group()
    zs.add_argument("--zero-shot", dest="zero_shot", action="store_true", default=None,
                    help="pre-trained model settings (default for non-VQA checkpoints)")
    zs.add_argument("--finetuned", dest="zero_shot", action="store_false",
                    help="fine-tuned VQA settings (default for VQA checkpoints)")
    _common(p, "vqa")

    p = sub.add_parser("ground", help="locate the region a text describes",
                       description="Visual grounding: prints the box x0 y0 x1 y1 in pixels.")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--text", "-t", required=True, help="referring expression")
    p.add_argument("--bins-only", action="store_true",
                   help="allow only location tokens (the official evaluation does not)")
    _common(p, "ground")

    p = sub.add_parser("entail", help="visual entailment: yes / no / maybe",
                       description="Does the image (and an optional premise) imply the text?")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--hypothesis", required=True, help="the statement to test")
    p.add_argument("--premise", help="optional text premise")
    _common(p, "entail", decoding=False)

    p = sub.add_parser("classify", help="rank class names for images",
                       description="Image classification by scoring every class name.")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--classes", type=Path, required=True, help="file of class names, one per line")
    p.add_argument("--topk", type=int, default=5, help="classes to report (default: 5)")
    _common(p, "classify", decoding=False)

    p = sub.add_parser("summarize", help="summarise texts (text only)",
                       description="Summarise each TEXT argument; '-' reads one text per line "
                                   "from standard input.")
    p.add_argument("texts", nargs="+", help="texts, or - for stdin")
    _common(p, "summarize")

    p = sub.add_parser("generate", help="follow a free instruction, with or without images",
                       description="Run any instruction, e.g. ' what is the color of the car?'")
    p.add_argument("images", nargs="*", help="image files (none: text only)")
    p.add_argument("--prompt", "-p", required=True, help="the instruction")
    _common(p, "generate")
    for name in ("caption", "vqa", "ground", "entail", "classify", "summarize", "generate"):
        sub.choices[name].set_defaults(func=_run_task)

    p = sub.add_parser("models", help="list the registered pretrained checkpoints")
    p.add_argument("--task", help="only this task")
    p.add_argument("--size", help="only this size")
    p.set_defaults(func=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from .pretrained import list_models, resolve

    for name in list_models(task=args.task, size=args.size):
        entry = resolve(name)
        print(f"{name:32s} {entry.task:10s} {entry.format:10s} {entry.description}")
    return 0


def _text_line(command: str, r: dict) -> str:
    if command == "caption":
        value = r["caption"]
    elif command == "vqa":
        value = r["answer"]
    elif command == "ground":
        value = "none" if r["box"] is None else " ".join(f"{v:.2f}" for v in r["box"])
    elif command == "entail":
        value = f"{r['answer']} ({r['label']})"
    elif command == "classify":
        value = ", ".join(f"{n} ({s:.3f})" for n, s in r["topk"])
    elif command == "summarize":
        value = r["summary"]
    else:
        value = r["text"]
    return f"{r['input']}\t{value}"


def _default_model(task: str) -> str:
    """The task's official checkpoint when it is downloaded; else, for the tasks it knows, the
    embedded demo model (with a note), so nothing is fetched behind the user's back."""
    from .demo import DEMO_NAME
    from .download import model_dir
    from .pretrained import resolve

    official = DEFAULT_MODELS[task]
    folder = model_dir(resolve(official).name)
    if task not in DEMO_TASKS or (folder / "model.safetensors").is_file():
        return official
    print(f"ofa: note: {official} is not downloaded; using the embedded {DEMO_NAME} model "
          f"(synthetic shapes only). Pass --model {official} to download and use it.",
          file=sys.stderr)
    return DEMO_NAME


def _run_task(args: argparse.Namespace) -> int:
    import json

    from .api import load

    cmd = args.command
    ofa = load(args.model or _default_model(cmd), device=args.device, dtype=args.dtype,
               vocab=args.vocab)
    common = dict(batch_size=args.batch_size, errors="return")
    decoding = _decoding(args) if hasattr(args, "beam") else {}
    many = len(getattr(args, "images", None) or getattr(args, "texts", None) or []) > 1
    common["progress"] = many
    if cmd == "caption":
        results = ofa.caption(list(args.images), **common, **decoding)
    elif cmd == "vqa":
        answers = _read_lines(args.answers, "answers") if args.answers else None
        objects = [o.strip() for o in args.objects.split(",")] if args.objects else None
        results = ofa.vqa(list(args.images), args.question, answers=answers, mode=args.mode,
                          objects=objects, zero_shot=args.zero_shot, **common, **decoding)
    elif cmd == "ground":
        results = ofa.ground(list(args.images), args.text, bins_only=args.bins_only, **common,
                             **decoding)
    elif cmd == "entail":
        results = ofa.entail(list(args.images), args.hypothesis, premises=args.premise,
                             **common)
    elif cmd == "classify":
        results = ofa.classify(list(args.images), _read_lines(args.classes, "classes"),
                               topk=args.topk, **common)
    elif cmd == "summarize":
        texts = [t for arg in args.texts
                 for t in (sys.stdin.read().splitlines() if arg == "-" else [arg])]
        results = ofa.summarize(texts, **common, **decoding)
    else:
        images = list(args.images) or None
        prompts = [args.prompt] if images is None else args.prompt
        results = ofa.generate(prompts, images, **common, **decoding)
    failed = 0
    for r in results:
        if "error" in r:
            failed += 1
            print(f"ofa: error: {r['input']}: {r['error']}", file=sys.stderr)
        elif args.json:
            print(json.dumps(r, ensure_ascii=False))
        else:
            print(_text_line(cmd, r))
        sys.stdout.flush()
    return 1 if failed else 0



def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert", help="convert any OFA checkpoint to the native folder format",
        description="Convert an official fairseq .pt, an HF-port folder (pytorch_model.bin or "
                    "model.safetensors + config.json) or an mmpretrain .pth into a native folder "
                    "(config.json, model.safetensors, vocab.json, merges.txt). The format is "
                    "detected from the file's contents.")
    p.add_argument("src", type=Path, help="checkpoint file or folder to read")
    p.add_argument("dst", type=Path, help="output folder (must not exist or be empty)")
    ema = p.add_mutually_exclusive_group()
    ema.add_argument("--ema", dest="ema", action="store_true", default=None,
                     help="use the EMA weights (extra_state.ema); error if the file has none")
    ema.add_argument("--no-ema", dest="ema", action="store_false",
                     help="use the regular weights even if EMA weights are present "
                          "(default: EMA when present, as the official VQA evaluation does)")
    p.add_argument("--vocab", type=Path, default=None,
                   help="tokenizer folder: encoder.json + vocab.bpe + dict.txt (official) or "
                        "vocab.json + merges.txt (HF). Default: the files next to SRC")
    p.set_defaults(func=_run_convert)


def _find_tokenizer(vocab: Path | None, fallback: Path | None):
    from .errors import InputError
    from .tokenizer import OFATokenizer

    if vocab is not None:
        return OFATokenizer.from_dir(vocab)
    if fallback is not None:
        try:
            return OFATokenizer.from_dir(fallback)
        except InputError:
            pass
    raise InputError(
        "no tokenizer files next to the checkpoint; pass --vocab DIR with encoder.json, "
        "vocab.bpe and dict.txt (OFA repository, utils/BPE) or vocab.json and merges.txt "
        "(any OFA HF checkpoint)")


def _run_convert(args: argparse.Namespace) -> int:
    from .checkpoints import describe, model_from_checkpoint, read_checkpoint, save_native

    ckpt = read_checkpoint(args.src, ema=args.ema)
    tokenizer = _find_tokenizer(args.vocab, ckpt.tokenizer_dir)
    model = model_from_checkpoint(ckpt)
    out = save_native(model, args.dst, tokenizer, source=ckpt.meta)
    weights = "EMA" if ckpt.used_ema else "regular"
    print(f"{args.src} ({ckpt.format}, {describe(ckpt.config)}, {weights} weights, "
          f"{model.num_parameters():,} parameters) -> {out}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train or fine-tune from a YAML config",
        description="Train or fine-tune OFA as CONFIG describes (see configs/ and the README). "
                    "Many processes: torchrun --nproc_per_node N -m ofa.train CONFIG.")
    p.add_argument("config", type=Path, help="YAML training config")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the config's output_dir from checkpoint_last.pt")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set max_updates=100 --set "
                        "data.num_workers=2 (repeatable; values are YAML)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    import yaml

    from .errors import InputError
    from .train import load_config, run

    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    cfg = load_config(args.config, overrides)
    result = run(cfg, resume=args.resume, progress=not args.no_progress)
    metrics = result.get("metrics") or {}
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    print(f"trained {result['step']} updates -> {cfg.output_dir}" + (f" ({shown})"
                                                                    if shown else ""))
    return 0


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="build datasets")
    dsub = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    s = dsub.add_parser(
        "shapes", help="write the synthetic ShapesWorld dataset",
        description="Render ShapesWorld scenes and write images plus train/val/test JSONL "
                    "records for captioning, VQA, grounding, entailment and classification.")
    s.add_argument("out", type=Path, help="output folder")
    s.add_argument("--train", type=int, default=20000, help="training scenes (default 20000)")
    s.add_argument("--val", type=int, default=500, help="validation scenes (default 500)")
    s.add_argument("--test", type=int, default=1000, help="test scenes (default 1000)")
    s.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    s.add_argument("--image-size", type=int, default=128, help="image side (default 128)")
    s.add_argument("--max-shapes", type=int, default=3, help="shapes per scene (default 3)")
    s.set_defaults(func=_run_data_shapes)


def _run_data_shapes(args: argparse.Namespace) -> int:
    from .data.shapes import ShapesWorld
    from .errors import InputError

    counts = {"train": args.train, "val": args.val, "test": args.test}
    if any(n < 0 for n in counts.values()):
        raise InputError("scene counts must not be negative")
    world = ShapesWorld(seed=args.seed, image_size=args.image_size, max_shapes=args.max_shapes)
    files = world.write(args.out, {k: n for k, n in counts.items() if n > 0})
    for split, path in files.items():
        print(f"{split}: {counts[split]} scenes -> {path}")
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="caption, VQA and grounding with the embedded demo model",
        description="Run the embedded ShapesWorld model on the demo image (or yours): caption "
                    "it, answer a question, ground an object and save the image with the box.")
    p.add_argument("--image", default=None, help="image (default: the demo image)")
    p.add_argument("--question", default=None, help="question (default: one about the image)")
    p.add_argument("--text", default=None, help="referring expression to ground")
    p.add_argument("--out", type=Path, default=Path("demo_out.png"),
                   help="where to write the image with the box (default: demo_out.png)")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    import time

    from .demo import run_demo

    start = time.perf_counter()
    r = run_demo(args.out, image=args.image, question=args.question, text=args.text)
    box = "none" if r["box"] is None else "[" + ", ".join(f"{v:.1f}" for v in r["box"]) + "]"
    print(f"image:    {r['image']}")
    print(f"caption:  {r['caption']}")
    print(f"question: {r['question']} -> {r['answer']}")
    print(f"ground:   \"{r['text']}\" -> box {box}")
    print(f"wrote {r['output_image']} ({time.perf_counter() - start:.1f} s)")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="score a model on records (JSONL) with each task's metric",
        description="Run MODEL over the records of a JSONL file (the training format) and "
                    "report caption BLEU/CIDEr, VQA accuracy, grounding Acc@0.5, entailment and "
                    "classification accuracy. Writes predictions.jsonl and metrics.json.")
    p.add_argument("--model", required=True, help="registry name, checkpoint or shapes-demo")
    p.add_argument("--data", type=Path, required=True, help="records (.jsonl)")
    p.add_argument("--tasks", default=None, help="comma-separated tasks to keep (default all)")
    p.add_argument("--limit", type=int, default=None, help="first N records only")
    p.add_argument("--vqa-answers", type=Path, default=None,
                   help="candidate answers (one per line): trie-constrained VQA decoding")
    p.add_argument("--out", type=Path, default=None, help="folder for predictions and metrics")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--batch-size", type=int, default=32, help="inputs per batch (default: 32)")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    import json

    from .api import load
    from .data.records import read_jsonl
    from .evaluate import evaluate_records

    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    records = read_jsonl(args.data, tasks)[:args.limit]
    answers = _read_lines(args.vqa_answers, "answers") if args.vqa_answers else None
    ofa = load(args.model, device=args.device, dtype=args.dtype)
    metrics, predictions = evaluate_records(ofa, records, vqa_answers=answers,
                                            batch_size=args.batch_size, progress=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        with (args.out / "predictions.jsonl").open("w", encoding="utf-8") as f:
            for p in predictions:
                f.write(json.dumps(p) + "\n")
        (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n",
                                               encoding="utf-8")
    counts: dict[str, int] = {}
    for r in records:
        counts[r["task"]] = counts.get(r["task"], 0) + 1
    shown = ", ".join(f"{k} {v}" for k, v in counts.items())
    print(f"{args.data}: {len(records)} records ({shown})")
    for k, v in metrics.items():
        print(f"{k}\t{v:.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ofa", description="OFA: one vision-language model for captioning, VQA, "
                                "grounding, entailment, classification and more.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_tasks(sub)
    _add_convert(sub)
    _add_train(sub)
    _add_data(sub)
    _add_eval(sub)
    _add_demo(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except OFAError as e:
        print(f"ofa: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ofa: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
