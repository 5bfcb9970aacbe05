"""``export_onnx``: trace the graph adapters and write an export folder with its manifest."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import InputError
from ..preprocess import OFA_MEAN, OFA_STD
from ..tasks import TASKS
from .check import check_onnx
from .common import (
    DECODER_FILE,
    DEFAULT_OPSET,
    ENCODER_FILE,
    EXTERNAL_DATA_BYTES,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    MAX_OPSET,
    MIN_OPSET,
    example_source,
    fp32_cpu,
    io_names,
    require,
    unwrap,
)
from .graphs import DecoderStepGraph, EncoderGraph

if TYPE_CHECKING:
    from ..api import OFA
    from ..model.ofa import OFAModel
    from ..tokenizer import OFATokenizer


def _dims(cfg) -> dict[str, Any]:
    from torch.export import Dim

    return {
        "batch": Dim("batch", min=1),
        "src_len": Dim("src_len", min=2, max=cfg.max_source_positions),
        "rows": Dim("rows", min=1),
        "enc_len": Dim("enc_len", min=2, max=cfg.max_source_positions + cfg.image_bucket_size**2),
        "past_len": Dim("past_len", min=0, max=cfg.max_target_positions - 1),
    }


def _torch_export(module: nn.Module, args: tuple, path: Path, input_names: list[str],
                  output_names: list[str], dynamic_shapes: tuple, opset: int,
                  external: bool) -> None:
    import logging
    import warnings

    # the exporter logs a warning per torchvision op it cannot register (torchvision is not a
    # dependency) and its dependencies emit deprecation warnings: neither concerns this model
    quiet = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [log.level for log in quiet]
    try:
        for log in quiet:
            log.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module, args, dynamo=True, input_names=input_names, output_names=output_names,
                dynamic_shapes=dynamic_shapes, opset_version=opset, optimize=True,
                verbose=False, external_data=external)
        program.save(str(path), external_data=external)
    finally:
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)


def _value_info(path: Path) -> dict[str, list[dict]]:
    """Inputs and outputs of a saved graph as written: name, dtype, shape (symbolic names)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)

    def describe(values) -> list[dict]:
        out = []
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
            out.append({"name": v.name,
                        "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                        "shape": shape})
        return out

    return {"inputs": describe(proto.graph.input), "outputs": describe(proto.graph.output)}


def export_onnx(model: OFAModel | OFA, out_dir: str | Path, *, opset: int = DEFAULT_OPSET,
                image_size: int | None = None, tokenizer: OFATokenizer | None = None,
                check: bool = True, overwrite: bool = False) -> dict:
    """Export ``model`` (an ``OFAModel`` or an ``ofa.load(...)`` result) to ``out_dir``.

    Writes ``encoder.onnx``, ``decoder_step.onnx``, ``manifest.json`` and, with a tokenizer
    (given, or the one of an ``ofa.OFA``), ``vocab.json`` + ``merges.txt``. The graphs are fp32
    on CPU whatever the model's dtype/device (the model itself is not changed).
    ``image_size``: the square input resolution baked into the encoder (default: the model's
    trained size when known, else 480, the official caption/VQA size, or the largest the
    model's position table covers if that is smaller). ``check`` runs :func:`check_onnx` and
    raises :class:`OnnxCheckError` if the graphs do not reproduce the model.

    Returns the manifest (with the check's results under ``"check"``).
    """
    require("onnx", "onnxscript", "onnxruntime")
    import onnx

    model, own_tokenizer, own_size = unwrap(model)
    tokenizer = tokenizer if tokenizer is not None else own_tokenizer
    cfg = model.config
    max_side = cfg.image_bucket_size * 16
    if image_size is None:
        image_size = own_size or min(TASKS["caption"].image_size, max_side)
    max_opset = min(onnx.defs.onnx_opset_version(), MAX_OPSET)
    if isinstance(opset, bool) or not isinstance(opset, int) \
            or not MIN_OPSET <= opset <= max_opset:
        raise InputError(f"opset must be an integer in [{MIN_OPSET}, {max_opset}], got "
                         f"{opset!r}")
    if (isinstance(image_size, bool) or not isinstance(image_size, int)
            or not 16 <= image_size <= max_side):
        raise InputError(f"image_size must be an integer in [16, {max_side}] for this model "
                         f"(its position table covers {cfg.image_bucket_size} patches a side),"
                         f" got {image_size!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder")
    fresh = not out.exists() or not any(out.iterdir())
    if not fresh and not overwrite:
        raise InputError(f"{out} is not empty; choose a new folder (or overwrite=True)")
    out.mkdir(parents=True, exist_ok=True)

    export_model = fp32_cpu(model)
    was_training = export_model.training
    export_model.eval()
    names = io_names(cfg.decoder_layers)
    params = sum(p.numel() for p in export_model.parameters()) * 4
    external = params > EXTERNAL_DATA_BYTES
    started = time.perf_counter()
    try:
        with torch.no_grad():
            ids, images, mask = example_source(cfg, image_size)
            enc_graph = EncoderGraph(export_model).eval()
            enc_outs = enc_graph(ids, images, mask)
            d = _dims(cfg)
            _torch_export(
                enc_graph, (ids, images, mask), out / ENCODER_FILE, names["encoder_inputs"],
                names["encoder_outputs"],
                ({0: d["batch"], 1: d["src_len"]}, {0: d["batch"]}, {0: d["batch"]}),
                opset, external)

            # a decoder example with a non-empty past (torch.export specialises sizes 0 and 1;
            # the graph still runs with an empty past, which check_onnx verifies)
            dec_graph = DecoderStepGraph(export_model).eval()
            n, past_len = ids.shape[0], 3
            heads, hd = cfg.attention_heads, cfg.head_dim
            padding, cross_pos_k, cross_kv = enc_outs[1], enc_outs[2], list(enc_outs[3:])
            past_kv = [torch.randn(n, heads, past_len, hd) for _ in range(2 * cfg.decoder_layers)]
            tokens = torch.full((n, 1), 5, dtype=torch.long)
            rows, s = {0: d["rows"]}, {0: d["rows"], 2: d["enc_len"]}
            _torch_export(
                dec_graph, (tokens, padding, cross_pos_k, cross_kv, past_kv), out / DECODER_FILE,
                names["decoder_inputs"], names["decoder_outputs"],
                (rows, {0: d["rows"], 1: d["enc_len"]}, {1: d["enc_len"]},
                 [s] * len(cross_kv), [{0: d["rows"], 2: d["past_len"]}] * len(past_kv)),
                opset, external)
    except BaseException:
        if fresh:  # leave no half-written export behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        export_model.train(was_training)
    seconds = time.perf_counter() - started

    files = [ENCODER_FILE, DECODER_FILE, MANIFEST_FILE]
    files += [f + ".data" for f in (ENCODER_FILE, DECODER_FILE) if (out / (f + ".data")).is_file()]
    if tokenizer is not None:
        files += [p.name for p in tokenizer.save(out)]
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "opset": opset,
        "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
        "model_config": cfg.to_dict(),
        "dtype": "float32",
        "special_tokens": {"bos": cfg.bos_token_id, "pad": cfg.pad_token_id,
                           "eos": cfg.eos_token_id},
        "image": {"size": image_size, "mean": list(OFA_MEAN), "std": list(OFA_STD),
                  "layout": "RGB, bicubic resize to size x size, (pixel / 255 - mean) / std, "
                            "NCHW float32 (ImageNet-finetuned classifiers use the ImageNet "
                            "mean/std instead)"},
        "tokenizer": [f for f in ("vocab.json", "merges.txt") if f in files] or None,
        "graphs": {
            "encoder": {"file": ENCODER_FILE, **_value_info(out / ENCODER_FILE)},
            "decoder_step": {"file": DECODER_FILE, **_value_info(out / DECODER_FILE)},
        },
        "decoding": {
            "first_step": "input_ids = [[BOS]] per row, past_key_i/past_value_i with past_len 0",
            "next_step": "input_ids = the chosen token, past_* = the previous present_*",
            "past_len": "the step index (positions already decoded); at most "
                        f"{cfg.max_target_positions - 1}",
            "rows": "repeat encoder rows (encoder_padding_mask, cross_key_i, cross_value_i) "
                    "per beam; cross_pos_k is shared by all rows",
        },
        "export_seconds": round(seconds, 2),
        "files": files,
    }
    manifest_path = out / MANIFEST_FILE
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if check:
        manifest["check"] = check_onnx(out, model, tokenizer=tokenizer)
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
