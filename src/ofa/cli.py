"""The ``ofa`` command line. Every user mistake ends as one ``ofa: error: ...`` line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import OFAError


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ofa", description="OFA: one vision-language model for captioning, VQA, "
                                "grounding, entailment, classification and more.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_convert(sub)
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
