"""``ofa export onnx``: its arguments and what it prints."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..tasks import TASKS
from .common import DEFAULT_OPSET, MIN_OPSET, require
from .export import export_onnx


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``export`` (with its ``onnx`` subcommand) to the CLI's subparsers."""
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
    p.set_defaults(func=run_export_onnx)
    return p


def run_export_onnx(args: argparse.Namespace) -> int:
    from ..api import load

    require("onnx", "onnxscript", "onnxruntime")
    ofa = load(args.model, device="cpu", dtype="float32", vocab=args.vocab)
    manifest = export_onnx(ofa, args.out_dir, opset=args.opset, image_size=args.image_size,
                           check=args.check, overwrite=args.overwrite)
    out = Path(args.out_dir)
    for name in manifest["files"]:
        size = (out / name).stat().st_size
        print(f"wrote {out / name} ({_human(size)})")
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


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
