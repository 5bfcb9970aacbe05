"""The ``ofa`` command line. Every user mistake ends as one ``ofa: error: ...`` line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .data.answer_lists import read_answer_list
from .errors import InputError, OFAError
from .preprocess import DEFAULT_MAX_PIXELS
from .tasks import TASKS, Task, TaskField

if TYPE_CHECKING:
    from .data.shapes import ShapesWorld
    from .imagegen.vqgan import VQGAN

# --dtype: ofa.load's dtypes
DTYPE_CHOICES = ["float32", "float16", "bfloat16", "auto", "int8"]
DTYPE_HELP = ("weights and activations dtype (default: float32, exact parity; auto: the "
              "fastest one the device runs natively, e.g. bfloat16 on CPUs with AVX512-BF16 "
              "or AMX, float32 on other CPUs; int8: int8 decoder and output-table weights, the "
              "rest in the fastest native float, CPU only)")
# CLI flag -> GenerationConfig field
DECODING_FLAGS = {"beam": "beam_size", "max_len": "max_len_b", "max_len_a": "max_len_a",
                  "min_len": "min_len", "no_repeat_ngram": "no_repeat_ngram_size",
                  "lenpen": "lenpen", "nbest": "nbest", "temperature": "temperature",
                  "top_k": "top_k", "top_p": "top_p", "seed": "seed"}


def _common(p: argparse.ArgumentParser, spec: Task) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help=f"registry name (see `ofa models`), checkpoint path or shapes-demo "
                        f"(default: {spec.default_model} when it is downloaded"
                        + (", else the embedded shapes-demo model)" if spec.demo else ")"))
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    g.add_argument("--dtype", default="float32", choices=DTYPE_CHOICES,
                   help=DTYPE_HELP)
    g.add_argument("--vocab", type=Path, default=None,
                   help="tokenizer folder for checkpoints that ship none")
    if spec.preprocess is not None:
        _add_max_pixels(g)
    for part in spec.parts:
        g.add_argument(_flag(part), type=Path, default=None, help=part.help)
    o = p.add_argument_group("output")
    if spec.kind == "draw":
        o.add_argument("--batch-size", type=int, default=None,
                       help="samples decoded together (default: all; fewer bounds memory, "
                            "and the draws depend on it)")
        o.add_argument("--out", type=Path, default=None,
                       help="folder for the images (N.png, best first) and scores.json; one "
                            "subfolder per text when there are several")
        o.add_argument("--no-progress", action="store_true", help="no progress bar")
        o.add_argument("--json", action="store_true",
                       help="one JSON object per line, images as base64 PNG")
    else:
        o.add_argument("--batch-size", type=int, default=8,
                       help="inputs per batch (default: 8)")
        o.add_argument("--json", action="store_true",
                       help="one JSON object per line: input, result, tokens, score")
    if spec.kind == "generate":
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


def _add_max_pixels(group: argparse._ActionsContainer) -> None:
    group.add_argument("--max-pixels", type=int, default=None, metavar="N",
                       help="largest image decoded, width x height, checked from the file's "
                            f"header before decoding (default: $OFA_MAX_PIXELS, else "
                            f"{DEFAULT_MAX_PIXELS})")


def _max_pixels(args: argparse.Namespace) -> int | None:
    """--max-pixels, checked before the model loads (None: the loader's default)."""
    from .preprocess import check_max_pixels

    value = getattr(args, "max_pixels", None)
    return None if value is None else check_max_pixels(value, "--max-pixels")


def _check_text_options(args: argparse.Namespace, spec: Task) -> None:
    """One error naming the option whose text is not valid UTF-8 (the shell passes bytes;
    Python keeps the undecodable ones as lone surrogates), before the model loads."""
    from .tokenizer import require_utf8

    for f in spec.fields:
        value = getattr(args, f.name, None)
        if f.kind == "text" and isinstance(value, str):
            require_utf8(value, _flag(f))


def _stdin_texts() -> list[str]:
    """The lines of standard input. Bytes that are not valid UTF-8 are kept (as lone
    surrogates) so that only their line is refused, with the others still summarised."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # a text stream put in place of stdin (embedding, tests)
        return sys.stdin.read().splitlines()
    return buffer.read().decode("utf-8", "surrogateescape").splitlines()


def _decoding(args: argparse.Namespace) -> dict:
    out = {field: getattr(args, flag) for flag, field in DECODING_FLAGS.items()
           if getattr(args, flag, None) is not None}
    if getattr(args, "unnormalized", None):
        out["normalize_scores"] = False
    if getattr(args, "sampling", None):
        out["sampling"] = True
    return out


def _flag(f: TaskField) -> str:
    return "--" + f.name.replace("_", "-")


def _comma_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _add_field(p: argparse.ArgumentParser, f: TaskField) -> None:
    """One task input as a flag: a text, a comma-separated list (per input) or a file of
    lines (an option), a number, a choice or an on/off switch."""
    names = [_flag(f)] + ([f"-{f.short}"] if f.short else [])
    if f.kind == "flag":
        if f.off:
            group = p.add_mutually_exclusive_group()
            group.add_argument(*names, dest=f.name, action="store_true", default=None,
                               help=f.help)
            group.add_argument(f"--{f.off}", dest=f.name, action="store_false",
                               help=f"the opposite of {_flag(f)}")
        else:
            p.add_argument(*names, dest=f.name, action="store_true", default=None, help=f.help)
        return
    kwargs: dict = {"dest": f.name, "required": f.required, "help": f.help}
    if f.kind == "texts" and f.per_input:
        kwargs.update(type=_comma_list, help=f.help + ", comma-separated")
    elif f.kind == "texts":
        kwargs.update(type=Path, metavar="FILE",
                      help=f.help + ": a file, one per line, or an official ans2label .pkl")
    elif f.kind == "int":
        kwargs.update(type=int, default=f.default)
    elif f.kind == "choice":
        kwargs.update(choices=f.choices, default=f.default)
    p.add_argument(*names, **kwargs)


def _add_task(sub: argparse._SubParsersAction, spec: Task) -> None:
    """The task's command, built from its table entry: the images (or, for a text-only task,
    its first input) as arguments, every other input as a flag."""
    p = sub.add_parser(spec.name, help=spec.summary[0].lower() + spec.summary[1:],
                       description=spec.summary + ".")
    fields = spec.fields
    if spec.image == "none":
        first, fields = spec.input_fields[0], tuple(f for f in fields
                                                     if f is not spec.input_fields[0])
        p.add_argument("texts", nargs="+", metavar=first.name.upper(),
                       help=f"{first.help}, one per argument; - reads one per line of "
                            "standard input")
    else:
        p.add_argument("images", nargs="+" if spec.image == "required" else "*",
                       help="image files" + (" (none: text only)"
                                             if spec.image == "optional" else ""))
    for f in fields:
        _add_field(p, f)
    _common(p, spec)
    p.set_defaults(func=_run_task)


def _add_tasks(sub: argparse._SubParsersAction) -> None:
    for spec in TASKS.values():
        _add_task(sub, spec)

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


def _default_model(task: str) -> str:
    """The task's official checkpoint when it is downloaded; else, for the tasks it knows, the
    embedded demo model (with a note), so nothing is fetched behind the user's back."""
    from .demo import DEMO_NAME
    from .download import model_dir
    from .pretrained import resolve

    official = TASKS[task].default_model
    folder = model_dir(resolve(official).name)
    if not TASKS[task].demo or (folder / "model.safetensors").is_file():
        return official
    print(f"ofa: note: {official} is not downloaded; using the embedded {DEMO_NAME} model "
          f"(synthetic shapes only). Pass --model {official} to download and use it.",
          file=sys.stderr)
    return DEMO_NAME


def _task_inputs(args: argparse.Namespace, spec: Task) -> tuple[list | None, dict]:
    """The images and the task's inputs by field name, as ``OFA.run`` takes them."""
    inputs = {}
    for f in spec.fields:
        value = getattr(args, f.name, None)
        if value is not None and f.kind == "texts" and not f.per_input:
            value = read_answer_list(value, f.name)
        inputs[f.name] = value
    if spec.image == "none":
        texts = [t for arg in args.texts for t in (_stdin_texts() if arg == "-" else [arg])]
        inputs[spec.input_fields[0].name] = texts
        return None, inputs
    images = list(args.images) or None
    if images is None:  # a task with an optional image, run on text only: one input
        inputs = {k: [v] if k in {f.name for f in spec.input_fields} and v is not None else v
                  for k, v in inputs.items()}
    return images, inputs


def _run_task(args: argparse.Namespace) -> int:
    import json

    from .api import load

    spec = TASKS[args.command]
    _check_text_options(args, spec)
    drawing = spec.kind == "draw"
    if drawing and args.out is None and not args.json:
        raise InputError("give --out DIR for the images (or --json to print them)")
    if drawing and args.out is not None and args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file, not a folder")
    ofa = load(args.model or _default_model(spec.name), device=args.device, dtype=args.dtype,
               vocab=args.vocab, max_pixels=_max_pixels(args))
    ofa.attach(**{part.name: getattr(args, part.name) for part in spec.parts})
    images, inputs = _task_inputs(args, spec)
    decoding = _decoding(args) if spec.kind == "generate" else {}
    count = len(images or getattr(args, "texts", None) or [])
    progress = not args.no_progress if drawing else count > 1
    results = ofa.run(spec.name, images, batch_size=args.batch_size, errors="return",
                      progress=progress, **inputs, **decoding)
    results = results if isinstance(results, list) else [results]
    failed = 0
    for k, r in enumerate(results):
        if "error" in r:
            failed += 1
            _print_error(f"{r['input']}: {r['error']}")
            continue
        if drawing and args.out is not None:
            folder = args.out if len(results) == 1 else args.out / str(k)
            _write_drawings(folder, r, inputs)
        if args.json:
            print(json.dumps(spec.to_json(r), ensure_ascii=False))
        else:
            print(f"{r['input']}\t{spec.one_line(r)}")
        sys.stdout.flush()
    return 1 if failed else 0


def _write_drawings(folder: Path, result: dict, options: dict) -> None:
    """A drawing task's images as ``N.png`` (best first) and ``scores.json``."""
    import json

    from .files import write_atomic

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for rank, (image, score, sample) in enumerate(zip(
            result["images"], result["scores"], result["samples"], strict=True)):
        image.save(folder / f"{rank}.png")
        files.append({"file": f"{rank}.png", "score": score, "sample": sample})
    settings = {k: options[k] for k in ("samples", "seed") if options.get(k) is not None}
    write_atomic(folder / "scores.json", json.dumps(
        {"text": result["text"], "ranked_by": result["ranked_by"], **settings,
         "images": files}, indent=2) + "\n")
    print(f"ofa: wrote {len(files)} images and scores.json to {folder}", file=sys.stderr)



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


def _run_convert(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint

    print(convert_checkpoint(args.src, args.dst, ema=args.ema, vocab=args.vocab).summary())
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


def _add_train_vqgan(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-vqgan", help="train a small VQGAN image tokenizer on ShapesWorld",
        description="Train a VQGAN from scratch on ShapesWorld scenes as CONFIG "
                    "describes (configs/shapes-vqgan.yaml), evaluate it on held-out scenes and "
                    "write model.yaml + last.ckpt (taming's layout) + metrics.json.")
    p.add_argument("config", type=Path, help="YAML VQGAN training config")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: the config's output_dir)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_train_vqgan)


def _run_train_vqgan(args: argparse.Namespace) -> int:
    from .imagegen.train_vqgan import load_vqgan_train_config, train_vqgan

    overrides = {"output_dir": str(args.out)} if args.out is not None else None
    cfg = load_vqgan_train_config(args.config, overrides)
    m = train_vqgan(cfg, progress=not args.no_progress)
    rec, orig = m["reconstructions"], m["originals"]
    print(f"trained {m['steps']} steps in {m['train_seconds']:.0f} s -> {cfg.output_dir} "
          f"(PSNR {m['psnr']:.2f} dB; checker colors/sizes/positions {rec['colors']:.3f}/"
          f"{rec['sizes']:.3f}/{rec['positions']:.3f}, originals {orig['colors']:.3f}/"
          f"{orig['sizes']:.3f}/{orig['positions']:.3f})")
    return 0


def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot", help="render a training run's curves to a PNG",
        description="Plot train_log.jsonl (loss, nll, token accuracy, lr, grad norm: each "
                    "update faint, with a moving average) and valid_log.jsonl (every "
                    "validation metric) of a training run folder to one PNG, with matplotlib "
                    "(pip install 'ofa-vl[watch]'). TensorBoard users: tensorboard: true in "
                    "the training config writes RUN_DIR/tensorboard instead.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run's output_dir")
    p.add_argument("--out", type=Path, default=None,
                   help="PNG to write (default: RUN_DIR/curves.png)")
    p.add_argument("--smooth", type=int, default=50,
                   help="updates in the moving average of the train curves (default 50)")
    p.set_defaults(func=_run_plot)


def _run_plot(args: argparse.Namespace) -> int:
    from .train.watch import plot_run

    print(plot_run(args.run_dir, args.out, smooth=args.smooth))
    return 0


def _add_scene_counts(parser: argparse.ArgumentParser, val: int) -> None:
    """The output folder and the ShapesWorld scenes per split of an ``ofa data shapes*``."""
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--train", type=int, default=20000,
                        help="training scenes (default 20000)")
    parser.add_argument("--val", type=int, default=val, help=f"validation scenes (default {val})")
    parser.add_argument("--test", type=int, default=1000, help="test scenes (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="build datasets")
    dsub = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    s = dsub.add_parser(
        "shapes", help="write the synthetic ShapesWorld dataset",
        description="Render ShapesWorld scenes and write images plus train/val/test JSONL "
                    "records for captioning, VQA, grounding, entailment and classification, "
                    "plus exhaustive sets for training curricula: SPLIT_relations.jsonl (every "
                    "spatial relation of every scene as a question and as a statement), "
                    "SPLIT_counts.jsonl (count questions, absent colours as many as present "
                    "ones, and every total-count statement), SPLIT_existence.jsonl (every "
                    "colour-kind pair and as many absent ones sharing a colour or kind, as "
                    "questions and statements), SPLIT_referring.jsonl (every unique "
                    "expression of every shape) and SPLIT_distractors.jsonl (those of the "
                    "shapes that share a colour or a kind with another shape).")
    _add_scene_counts(s, val=500)
    s.add_argument("--image-size", type=int, default=128, help="image side (default 128)")
    s.add_argument("--max-shapes", type=int, default=3, help="shapes per scene (default 3)")
    s.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="processes rendering scenes; the files are the same for any number "
                        "(default: the CPU count, at most 4)")
    s.add_argument("--vqgan", type=Path, default=None,
                   help="a VQGAN (folder or checkpoint): also write SPLIT_imagine.jsonl, each "
                        "caption with the codes of its scene drawn plain (flat background, "
                        "palette colours), to train text-to-image (the demo model's is "
                        "src/ofa/assets/shapes-demo/vqgan)")
    s.add_argument("--far-background", action="store_true",
                   help="with --vqgan: each code tile with no shape pixel in or next to it takes "
                        "its code in the scene drawn without its shapes, so every drawing's "
                        "background is the same codes (the tokenizer's encoder sees the whole "
                        "image: a shape changes far tiles' codes too); what the demo's drawing "
                        "model learns from")
    s.add_argument("--imagine-only", action="store_true",
                   help="with --vqgan: write only SPLIT_imagine.jsonl, straight from the scenes "
                        "(no image files or other records: what text-to-image training alone "
                        "reads, in a fraction of the time)")
    s.add_argument("--pretrain", type=int, default=0, metavar="N",
                   help="also write OFA's pretraining files (needs --vqgan) to OUT/pretrain: "
                        "pairs/text/image/detection_pretrain.tsv of N scenes of a split of "
                        "their own, the same of --val scenes of the val split (held-out "
                        "checks of each pretraining task) and negatives/ (ITM's negatives)")
    s.set_defaults(func=_run_data_shapes)
    g = dsub.add_parser(
        "shapes-glue", help="write a small text-only GLUE-format task from ShapesWorld",
        description="Write RTE/ and MRPC/ folders of GLUE-format TSVs (train.tsv, dev.tsv, "
                    "test.tsv, all labelled) built from ShapesWorld scene descriptions: "
                    "statements true or false of a scene's caption (RTE), and two wordings of "
                    "the same scene or of one changed in one respect (MRPC), and the curriculum "
                    "subsets of RTE's training rows (RTE/train_relations.tsv, "
                    "RTE/train_multi.tsv). `ofa eval glue` and training configs read them "
                    "(configs/shapes-glue*.yaml).")
    _add_scene_counts(g, val=250)
    g.set_defaults(func=_run_data_shapes_glue)
    c = dsub.add_parser(
        "cider-df", help="count CIDEr-D document frequencies for SCST's reward",
        description="Count, over the caption references of training records (JSONL, or an "
                    "official caption TSV), in how many images each 1-4-gram occurs, and "
                    "write them as gzipped JSON: the fixed document frequencies of SCST's "
                    "CIDEr-D reward (what OFA's cached coco-train-words file holds). "
                    "References of one image are gathered by its path or bytes; a "
                    "'&&'-joined TSV caption is one image's set.")
    c.add_argument("records", type=Path, nargs="+", help=".jsonl or .tsv files")
    c.add_argument("--out", type=Path, required=True, help="file to write (e.g. df.json.gz)")
    c.add_argument("--selected-cols", default=None,
                   help="TSV columns id,image,caption (default: the official layout)")
    c.set_defaults(func=_run_data_cider_df)


def _run_data_cider_df(args: argparse.Namespace) -> int:
    from .data.records import read_jsonl
    from .data.tsv import read_tsv
    from .metrics.cider_d import DocumentFrequency, reference_sets

    records: list[dict] = []
    for path in args.records:
        if path.suffix == ".tsv":
            records += read_tsv(path, "caption", args.selected_cols, decode_images=False)
        else:
            records += read_jsonl(path, tasks=["caption"])
    sets = reference_sets(records)
    df = DocumentFrequency.from_references(sets)
    out = df.save(args.out)
    print(f"{sum(len(s) for s in sets)} references of {df.images} images, "
          f"{len(df.counts)} n-grams -> {out}")
    return 0


def _run_data_shapes_glue(args: argparse.Namespace) -> int:
    from .data.shapes_glue import write_shapes_glue

    counts = {"train": args.train, "val": args.val, "test": args.test}
    if any(n < 0 for n in counts.values()) or args.seed < 0:
        raise InputError("scene counts and the seed must not be negative")
    write_shapes_glue(args.out, counts, seed=args.seed, progress=print)
    return 0


def _run_data_shapes(args: argparse.Namespace) -> int:
    from .data.shapes import ShapesWorld

    counts = {"train": args.train, "val": args.val, "test": args.test}
    if any(n < 0 for n in counts.values()) or args.pretrain < 0:
        raise InputError("scene counts must not be negative")
    if args.pretrain and (args.vqgan is None or args.val < 1):
        raise InputError("--pretrain needs --vqgan (image infilling's codes) and --val >= 1")
    for flag, given in (("--far-background", args.far_background),
                        ("--imagine-only", args.imagine_only)):
        if given and args.vqgan is None:
            raise InputError(f"{flag} needs --vqgan")
    vqgan = None
    if args.vqgan is not None:  # checked before minutes of rendering
        from .imagegen.vqgan_io import load_vqgan

        vqgan = load_vqgan(args.vqgan)
    world = ShapesWorld(seed=args.seed, image_size=args.image_size, max_shapes=args.max_shapes)
    if args.imagine_only:
        from .data.shapes_codes import write_world_imagine_records

        written = write_world_imagine_records(world, args.out,
                                              {k: n for k, n in counts.items() if n > 0},
                                              vqgan, far_background=args.far_background)
        for split, path in written.items():
            print(f"{split}: {counts[split]} scenes -> {path}")
    else:
        _write_shapes_folder(args, world, counts, vqgan)
    if args.pretrain:
        from .data.shapes_pretrain import write_pretraining_data

        out = args.out / "pretrain"
        written = write_pretraining_data(world, out, {"pretrain": args.pretrain,
                                                      "val": args.val}, vqgan)
        print(f"pretraining: {args.pretrain} + {args.val} scenes -> {out} "
              f"({', '.join(sorted(written))})")
    return 0


def _write_shapes_folder(args: argparse.Namespace, world: ShapesWorld, counts: dict[str, int],
                         vqgan: VQGAN | None) -> None:
    """`ofa data shapes`' folder: images, records, exhaustive sets (and imagine records)."""
    from .data.shapes import EXHAUSTIVE_SETS

    files = world.write(args.out, {k: n for k, n in counts.items() if n > 0},
                        workers=args.workers)
    sets = list(EXHAUSTIVE_SETS)
    if vqgan is not None:
        from .data.shapes_codes import write_imagine_records

        write_imagine_records(args.out, files, vqgan, world=world,
                              far_background=args.far_background)
        sets.append("imagine")
    for split, path in files.items():
        extra = ", ".join(f"{path.stem}_{name}.jsonl" for name in sets)
        print(f"{split}: {counts[split]} scenes -> {path} (+ {extra})")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="caption, VQA and grounding with the embedded demo model",
        description="Run the embedded ShapesWorld model on the demo image (or yours): caption "
                    "it, answer a question, ground an object and save the image with the box; "
                    "then draw a scene from text and say what the ShapesWorld checker sees in "
                    "the drawing.")
    p.add_argument("--image", default=None, help="image (default: the demo image)")
    p.add_argument("--question", default=None, help="question (default: one about the image)")
    p.add_argument("--text", default=None, help="referring expression to ground")
    p.add_argument("--out", type=Path, default=Path("demo_out.png"),
                   help="where to write the image with the box (default: demo_out.png)")
    p.add_argument("--draw", default=None,
                   help="caption to draw (default: the demo image's caption)")
    p.add_argument("--drawn", type=Path, default=Path("demo_imagine.png"),
                   help="where to write the drawing, enlarged 4x (default: demo_imagine.png)")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    import time

    from .demo import run_demo

    start = time.perf_counter()
    r = run_demo(args.out, image=args.image, question=args.question, text=args.text,
                 draw=args.draw, drawn_image=args.drawn)
    box = "none" if r["box"] is None else "[" + ", ".join(f"{v:.1f}" for v in r["box"]) + "]"
    print(f"image:    {r['image']}")
    print(f"caption:  {r['caption']}")
    print(f"question: {r['question']} -> {r['answer']}")
    print(f"ground:   \"{r['text']}\" -> box {box}")
    print(f"wrote {r['output_image']}")
    print(f"draw:     \"{r['draw']}\" -> {r['drawn_image']}")
    seen = r["checker"]
    if seen is None:
        print(f"checker:  cannot judge it: {r['checker_error']}")
    else:
        marks = ", ".join(f"{k} {'right' if seen[k] else 'wrong'}"
                          for k in ("colors", "sizes", "positions"))
        print(f"checker:  sees {seen['seen']} ({marks})")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


EVAL_TASKS = ("caption", "vqa", "ground", "entail", "classify", "summarize", "imagine", "ocr",
              "glue")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="score a model on a benchmark (COCO, RefCOCO, VQAv2, SNLI-VE, ImageNet, "
                     "Gigaword) or on JSONL records",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run MODEL over an evaluation set and report the task's published metrics.\n"
                    "Writes predictions.jsonl, metrics.json, summary.md and run.json to\n"
                    "--out; an interrupted run resumes from the predictions already written,\n"
                    "if run.json shows the same model and settings (else it stops and says\n"
                    "so). A record whose image cannot be read gets an \"error\" in\n"
                    "predictions.jsonl, counts as wrong, and is retried by the next run. Under\n"
                    "`torchrun --nproc_per_node N -m ofa.cli eval ...` the records are sharded\n"
                    "over the processes and rank 0 merges and scores them.\n\n"
                    "Data formats (detected from --data):\n"
                    "  caption    Karpathy dataset_coco.json, coco_karpathy_{val,test}.json\n"
                    "             (+ *_gt.json), official caption TSV\n"
                    "  ground     refer folder (refs(unc).p / refs(umd).p + instances.json),\n"
                    "             official refcoco TSV\n"
                    "  vqa        VQAv2 questions JSON (+ annotations JSON next to it; test-dev:\n"
                    "             questions only, writes vqa_submission.json), official TSV\n"
                    "  entail     SNLI-VE JSONL, official TSV\n"
                    "  classify   ImageNet-style class folder, official TSV\n"
                    "  summarize  Gigaword text files (src + tgt), official TSV\n"
                    "  imagine    official coco_vqgan_*.tsv (or a folder of them), captions\n"
                    "             .txt or .jsonl: CLIP score; FID and IS with --inception\n"
                    "  glue       a GLUE TSV (SST-2/dev.tsv, MNLI/dev_matched.tsv; OFA's\n"
                    "             sst2_dev.tsv) or a dataset folder; --glue-dataset (or the\n"
                    "             task sst2, cola, mrpc, qqp, qnli, rte, mnli, mnli-mm) names it\n"
                    "  ocr        OFA-OCR TSV (uniq_id, base64 image, text): line accuracy\n"
                    "             and NED, spaces removed (Chinese OCR checkpoints)\n"
                    "  (no task)  JSONL records in the training format, any tasks")
    p.add_argument("task", nargs="?", default=None, metavar="TASK",
                   help=f"one of {', '.join(EVAL_TASKS)} or a benchmark name (coco, vqav2, "
                        "refcoco, refcoco+, refcocog, snli_ve, imagenet, gigaword, image_gen, "
                        "sst2, cola, mrpc, qqp, qnli, rte, mnli, mnli-mm); "
                        "omit for JSONL records")
    p.add_argument("--model", required=True, help="registry name, checkpoint or shapes-demo")
    p.add_argument("--data", type=Path, required=True,
                   help="annotation file or folder (see the formats above)")
    p.add_argument("--split", default=None,
                   help="split to evaluate where the file holds several (e.g. test, val, testA)")
    p.add_argument("--images", type=Path, default=None,
                   help="image folder (default: next to --data)")
    p.add_argument("--annotations", type=Path, default=None,
                   help="separate references file (VQAv2 annotations, COCO *_gt.json, "
                        "Gigaword targets) when not found next to --data")
    p.add_argument("--class-names", type=Path, default=None,
                   help="classification: 'folder_name class name' lines mapping class folders")
    p.add_argument("--tasks", default=None,
                   help="JSONL records: comma-separated tasks to keep (default all)")
    p.add_argument("--glue-dataset", "--task", dest="glue_dataset", default=None,
                   metavar="NAME", help="glue: the GLUE dataset of --data (sst2, cola, mrpc, "
                                        "qqp, qnli, rte, mnli; default: told by the file)")
    p.add_argument("--limit", type=int, default=None, help="first N records only")
    p.add_argument("--vqa-answers", type=Path, default=None,
                   help="candidate answers for trie-constrained VQA decoding: a text file (one "
                        "per line) or the official trainval_ans2label.pkl")
    p.add_argument("--vqa-mode", default="beam", choices=["beam", "all"],
                   help="with --vqa-answers: beam search in the trie (default) or score every "
                        "candidate (the official all-candidate figures; slow)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: eval/<model>-<data>[-<split>])")
    p.add_argument("--no-resume", action="store_true",
                   help="discard predictions already in --out instead of resuming (needed "
                        "when they were made by another model or with other settings)")
    p.add_argument("--fast-metrics", action="store_true",
                   help="captions: BLEU and CIDEr only (skip METEOR, ROUGE-L, SPICE)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--dtype", default="float32", choices=DTYPE_CHOICES)
    _add_max_pixels(p)
    p.add_argument("--batch-size", type=int, default=32,
                   help="inputs per batch (default: 32; imagine: samples decoded together)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group(
        "text-to-image (imagine)", "the official evaluation: SAMPLES draws per caption ranked "
        "by CLIP; the best image per caption in OUT/top1/. FID and IS need an Inception-v3 "
        "weights file: the FID network (torch-fidelity's or pytorch-fid's "
        "*inception-2015-12-05*.pth, the standard figures) or torchvision's ImageNet "
        "inception_v3 (OFA's own protocol, with its gt_stat.npz as --fid-stats)")
    g.add_argument("--samples", type=int, default=24, help="draws per caption (default: 24)")
    g.add_argument("--top", type=int, default=1, help="best images kept per caption (default: 1)")
    g.add_argument("--seed", type=int, default=0,
                   help="run seed; each caption's own seed derives from it and its id")
    for part in TASKS["imagine"].parts:
        g.add_argument(_flag(part), type=Path, default=None, help=part.help)
    g.add_argument("--inception", type=Path, default=None,
                   help="Inception-v3 weights for FID and IS (none: CLIP score only)")
    g.add_argument("--fid-stats", type=Path, default=None,
                   help="reference statistics for FID (.npz with mu and sigma, e.g. OFA's "
                        "gt_stat.npz) instead of --images")
    g.add_argument("--is-splits", type=int, default=None,
                   help="Inception Score splits (default: 10 for the FID network, 1 for "
                        "torchvision's, as OFA's script)")
    g.add_argument("--all-captions", action="store_true",
                   help="FID/IS over every record's image, not one per distinct caption")
    p.set_defaults(func=_run_eval)


def _default_eval_dir(args: argparse.Namespace) -> Path:
    import re

    parts = [Path(str(args.model)).name, args.task or "", getattr(args, "glue_dataset", None)
             or "", args.data.stem, args.split or ""]
    name = "-".join(re.sub(r"[^A-Za-z0-9_.+]+", "_", p) for p in parts if p)
    return Path("eval") / name


def _run_eval(args: argparse.Namespace) -> int:
    import os

    from .api import load
    from .evaluate import run_evaluation

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be a positive integer, got {args.limit}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if args.vqa_mode == "all" and args.vqa_answers is None:
        raise InputError("--vqa-mode all scores candidate answers: give them with --vqa-answers")
    from .data.benchmarks import IMAGINE_TASKS

    if args.task is not None and args.task.strip().lower() in IMAGINE_TASKS:
        return _run_eval_imagine(args)
    max_pixels = _max_pixels(args)
    records, class_names, described = _eval_records(args)
    if args.limit is not None:
        records = records[:args.limit]
    if not records:
        raise InputError(f"{args.data}: no records to evaluate")
    answers = read_answer_list(args.vqa_answers) if args.vqa_answers else None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, device = 0, args.device
    if world > 1:
        from .train.distributed import init_distributed

        info = init_distributed(args.device, timeout_minutes=24 * 60)
        rank, device = info.rank, str(info.device)
    out = args.out or _default_eval_dir(args)
    ofa = load(args.model, device=device, dtype=args.dtype, max_pixels=max_pixels)
    result = run_evaluation(ofa, records, out, vqa_answers=answers, vqa_mode=args.vqa_mode,
                            class_names=class_names, batch_size=args.batch_size,
                            resume=not args.no_resume, rank=rank, world_size=world,
                            progress=not args.no_progress, full=not args.fast_metrics,
                            title=f"{args.model} on {described}")
    if result is None:  # not rank 0
        return 0
    if result.discarded:
        print(f"ofa: note: discarded {result.discarded} earlier predictions in {out} "
              "(--no-resume)", file=sys.stderr)
    shown = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    print(f"{described}: {len(records)} records ({shown}); {result.computed} predicted now")
    if result.failed:
        first = next(p for p in result.predictions if p.get("error"))
        print(f"failed: {result.failed} of {len(records)} records, counted as wrong (errors in "
              f"predictions.jsonl; the next run retries them); first: {first['id']}: "
              f"{first['error']}")
    for k, v in result.metrics.items():
        print(f"{k}\t{v:.4f}")
    if not result.metrics:
        print("no references: predictions only")
    for what, path in result.files.items():
        print(f"wrote {what}: {path}")
    return 0


def _run_eval_imagine(args: argparse.Namespace) -> int:
    from .api import load
    from .data.benchmarks import read_eval_data
    from .imagegen.evaluate import run_imagegen_evaluation

    data = read_eval_data(args.task, args.data, split=args.split, images=args.images,
                          annotations=args.annotations, class_names=args.class_names)
    records = data.records[:args.limit] if args.limit is not None else data.records
    out = args.out or _default_eval_dir(args)
    ofa = load(args.model, device=args.device, dtype=args.dtype)
    result = run_imagegen_evaluation(
        ofa, records, out, samples=args.samples, top=args.top, seed=args.seed,
        vqgan=args.vqgan, clip=args.clip, inception=args.inception,
        reference_images=data.meta.get("reference_images"), reference_stats=args.fid_stats,
        is_splits=args.is_splits, distinct_captions=not args.all_captions,
        batch_size=args.batch_size, resume=not args.no_resume,
        progress=not args.no_progress, title=f"{args.model} on {args.data}")
    print(f"{args.data} ({data.format}): {len(records)} captions; {result.computed} drawn now")
    if result.failed:
        print(f"failed: {result.failed} of {len(records)} captions (errors in "
              "predictions.jsonl; the next run retries them)")
    for k, v in result.metrics.items():
        print(f"{k}\t{v:.4f}")
    for k, v in result.notes.items():
        print(f"note: {k}: {v}")
    for what, path in result.files.items():
        print(f"wrote {what}: {path}")
    return 0


def _eval_records(args: argparse.Namespace) -> tuple[Sequence[dict], list[str] | None, str]:
    """The records to evaluate (lazy for TSV files), the classification candidates, and a
    description."""
    if args.task is None and args.tasks and args.tasks.strip() == "glue" \
            and args.data.suffix == ".tsv":  # `--tasks glue --data SST-2/dev.tsv`
        args.task = "glue"
    if args.task is None:
        from .data.records import read_jsonl

        if args.data.suffix != ".jsonl":
            raise InputError(f"{args.data}: without TASK, --data must be JSONL records; "
                             f"name the task for benchmark files ({', '.join(EVAL_TASKS)})")
        from .data.benchmarks.common import check_first_image

        tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
        records = read_jsonl(args.data, tasks)
        if args.glue_dataset is not None:  # GLUE records of that dataset only
            from .tasks.glue import get_dataset

            wanted = get_dataset(args.glue_dataset).name
            records = [r for r in records if r["task"] != "glue" or r["dataset"] == wanted]
        check_first_image(records, str(args.data))
        return records, None, str(args.data)
    from .data.benchmarks import read_eval_data

    data = read_eval_data(args.task, args.data, split=args.split, images=args.images,
                          annotations=args.annotations, class_names=args.class_names,
                          glue_dataset=args.glue_dataset)
    split = f" [{args.split}]" if args.split else ""
    return data.records, data.candidates, f"{args.data}{split} ({data.format})"


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="HTTP API with dynamic batching, metrics and a web page",
        description="Serve a model over HTTP: POST /v1/<task> for every task ("
                    + ", ".join(TASKS) + "; JSON with a base64 image, or multipart upload; "
                    "/v1/imagine answers base64 PNGs); GET /healthz, /v1/models, /v1/tasks, "
                    "/metrics "
                    "(Prometheus), /openapi.json; the web page at /. Concurrent requests for "
                    "a task are batched. Binds to 127.0.0.1 unless told otherwise; any other "
                    "address needs an API key (or --allow-no-auth).")
    p.add_argument("--model", required=True,
                   help="registry name (see `ofa models`), checkpoint path or shapes-demo")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0: any free)")
    p.add_argument("--api-key", default=None,
                   help="require this key as 'Authorization: Bearer KEY' or 'X-API-Key: KEY' "
                        "on /v1/* and /metrics (default: $OFA_API_KEY if set, else no key)")
    p.add_argument("--allow-no-auth", action="store_true",
                   help="allow a non-loopback --host without an API key (anyone who can reach "
                        "the port can use the model)")
    b = p.add_argument_group("batching and limits")
    b.add_argument("--max-batch-size", type=int, default=8,
                   help="most requests per model call (default: 8; 1 turns batching off)")
    b.add_argument("--max-wait-ms", type=float, default=10.0,
                   help="how long a request waits for companions (default: 10)")
    b.add_argument("--queue-size", type=int, default=64,
                   help="waiting requests per task before 503 (default: 64)")
    b.add_argument("--timeout", type=float, default=30.0,
                   help="seconds per request, queue included, before 504 (default: 30)")
    b.add_argument("--max-body-mb", type=float, default=10.0,
                   help="largest request body in MB before 413 (default: 10)")
    b.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"largest decoded image in pixels before 422 (default: "
                        f"{DEFAULT_MAX_PIXELS})")
    b.add_argument("--vqa-answers", type=Path, default=None,
                   help="default candidate answers for VQA, one per line or an ans2label "
                        ".pkl (default: the list the checkpoint's folder carries, as "
                        "shapes-demo does, else none)")
    b.add_argument("--max-score-tokens", type=int, default=2000,
                   help="most scoring tokens one classify or VQA mode-all request may cost "
                        "before 422; a candidate costs 65 + its tokens (+ the question's, for "
                        "VQA) (default: 2000, a few seconds of the base model on 2 CPU cores; "
                        "raise it on a GPU)")
    b.add_argument("--max-samples", type=int, default=24,
                   help="most images one /v1/imagine request may sample (default: 24, the "
                        "official evaluation; each decodes the whole code grid)")
    b.add_argument("--read-timeout", type=float, default=20.0,
                   help="seconds a request may take to arrive whole (headers and body) "
                        "before 408 and the connection is closed (default: 20)")
    b.add_argument("--keep-alive", type=float, default=5.0,
                   help="seconds an idle connection is kept open (default: 5)")
    b.add_argument("--max-connections", type=int, default=512,
                   help="open connections beyond which requests get 503 (default: 512)")
    g = p.add_argument_group("model")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    g.add_argument("--dtype", default="float32", choices=DTYPE_CHOICES,
                   help=DTYPE_HELP)
    g.add_argument("--vocab", type=Path, default=None,
                   help="tokenizer folder for checkpoints that ship none")
    for part in _parts():
        g.add_argument(_flag(part), type=Path, default=None, help=part.help)
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"],
                   help="server log level (default: info)")
    p.set_defaults(func=_run_serve)


def _parts() -> list[TaskField]:
    """The files tasks need besides the model (the VQGAN, CLIP), each once."""
    return list({part.name: part for spec in TASKS.values() for part in spec.parts}.values())


def _run_serve(args: argparse.Namespace) -> int:
    import os

    try:
        from .serve import ServeSettings, bind, create_app, is_loopback, run_server
    except ImportError as e:
        raise InputError(f"`ofa serve` needs the serving extras: pip install 'ofa-vl[serve]' "
                         f"({e})") from None
    from .api import load

    api_key = args.api_key or os.environ.get("OFA_API_KEY") or None
    if not is_loopback(args.host) and not api_key and not args.allow_no_auth:
        raise InputError(f"refusing to serve on {args.host} without an API key: anyone who "
                         "can reach it could use the model. Pass --api-key KEY (or set "
                         "OFA_API_KEY), or --allow-no-auth if that is intended")
    answers = read_answer_list(args.vqa_answers, "VQA answers") if args.vqa_answers else None
    settings = ServeSettings(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                             queue_size=args.queue_size, timeout_s=args.timeout,
                             max_body_mb=args.max_body_mb, max_pixels=args.max_pixels,
                             api_key=api_key, vqa_answers=answers,
                             max_score_tokens=args.max_score_tokens,
                             read_timeout_s=args.read_timeout, keep_alive_s=args.keep_alive,
                             max_connections=args.max_connections,
                             max_samples=args.max_samples)
    sock = bind(args.host, args.port)
    try:
        ofa = load(args.model, device=args.device, dtype=args.dtype, vocab=args.vocab)
        ofa.attach(**{part.name: getattr(args, part.name) for part in _parts()})
        app = create_app(ofa, settings)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"ofa: serving {ofa.name} on http://{shown}:{port}/ (batch <= "
              f"{settings.max_batch_size}, wait {settings.max_wait_ms:g} ms, API key "
              f"{'required' if api_key else 'off'}); Ctrl+C stops", file=sys.stderr, flush=True)
        run_server(app, sock, settings, log_level=args.log_level)
    finally:
        sock.close()
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    from .export_onnx.common import DEFAULT_OPSET, MIN_OPSET

    export = sub.add_parser("export", help="export a model for other runtimes (ONNX)",
                            description="Export a model for inference outside PyTorch.")
    targets = export.add_subparsers(dest="export_format", required=True, metavar="FORMAT")
    p = targets.add_parser(
        "onnx", help="ONNX encoder + decoder step with KV cache",
        description="Write encoder.onnx (source -> encoder states and every decoder layer's "
                    "cross-attention keys/values), decoder_step.onnx (one token with the "
                    "self-attention cache as inputs/outputs), manifest.json and the tokenizer "
                    "files to OUT_DIR, then check them with onnxruntime against PyTorch "
                    "(random inputs and a greedy decode). Needs pip install \"ofa-vl[onnx]\".")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="output folder (new or empty)")
    p.add_argument("--model", "-m", required=True,
                   help="registry name, shapes-demo, or a checkpoint file/folder")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset (>= {MIN_OPSET}; default {DEFAULT_OPSET})")
    p.add_argument("--image-size", type=int, default=None,
                   help="square input resolution baked into the encoder (default: the model's "
                        f"trained size when known, else {TASKS['caption'].image_size})")
    p.add_argument("--vocab", type=Path, default=None,
                   help="tokenizer folder for checkpoints that ship none")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the onnxruntime comparison with PyTorch")
    p.add_argument("--overwrite", action="store_true", help="allow a non-empty OUT_DIR")
    p.set_defaults(func=_run_export_onnx)


def _run_export_onnx(args: argparse.Namespace) -> int:
    from .api import load
    from .export_onnx import export_onnx
    from .export_onnx.common import require

    require("onnx", "onnxscript", "onnxruntime")
    ofa = load(args.model, device="cpu", dtype="float32", vocab=args.vocab)
    manifest = export_onnx(ofa, args.out_dir, opset=args.opset, image_size=args.image_size,
                           check=args.check, overwrite=args.overwrite)
    out = Path(args.out_dir)
    for name in manifest["files"]:
        print(f"wrote {out / name} ({_human_size((out / name).stat().st_size)})")
    print(f"opset {manifest['opset']}, image size {manifest['image']['size']}, "
          f"export {manifest['export_seconds']:.1f} s")
    check = manifest.get("check")
    if check is None:
        print("check skipped (--no-check)")
    else:
        diffs = ", ".join(f"{k} {v:.2e}" for k, v in check["max_abs_diff"].items())
        print(f"check ok: max abs diff {check['max_abs_diff_all']:.2e} ({diffs}); greedy "
              f"tokens identical to PyTorch over {check['greedy_steps']} steps")
    return 0


def _human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ofa", description="OFA: one vision-language model for captioning, VQA, "
                                "grounding, entailment, classification and more.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_tasks(sub)
    _add_convert(sub)
    _add_train(sub)
    _add_train_vqgan(sub)
    _add_plot(sub)
    _add_data(sub)
    _add_eval(sub)
    _add_demo(sub)
    _add_serve(sub)
    _add_export(sub)
    return parser


def _print_error(message: str) -> None:
    """``ofa: error: message`` on stderr, printable whatever bytes a file name or an
    argument held (an unprintable one would otherwise end in a traceback)."""
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:
        from .tokenizer import printable  # imported only when needed: it loads torch

        message = printable(message)
    print(f"ofa: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except OFAError as e:
        _print_error(str(e))
        return 1
    except KeyboardInterrupt:
        print("ofa: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
