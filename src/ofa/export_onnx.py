"""ONNX export of OFA for inference outside PyTorch (onnxruntime and other ONNX runtimes).

An export folder holds two graphs, a manifest and the tokenizer files:

* ``encoder.onnx``: ``input_ids`` [B, L] int64 (BOS ... EOS, right-padded with PAD),
  ``images`` [B, 3, H, W] float32 (H = W = the export's image size, normalised as
  ``ofa.preprocess.ImageTransform`` does) and ``image_mask`` [B] bool (False: the sample has no
  image; give any image, e.g. zeros, its patches are ignored) ->
  ``encoder_hidden`` [B, S, D], ``encoder_padding_mask`` [B, S] bool (S = patches + L),
  ``cross_pos_k`` [H, S, D/H] (the encoder positions projected for the decoder's cross-attention
  bias, shared by every row) and, for every decoder layer i, ``cross_key_i`` /
  ``cross_value_i`` [B, heads, S, head_dim]: the cross-attention keys and values are computed
  once per source, never per decoding step.
* ``decoder_step.onnx``: one decoding step for N rows (N = B x beams: repeat the encoder rows as
  the search needs): ``input_ids`` [N, 1] (the newest token; BOS on the first step),
  ``encoder_padding_mask`` [N, S], ``cross_pos_k``, ``cross_key_i`` / ``cross_value_i`` [N, ...]
  and ``past_key_i`` / ``past_value_i`` [N, heads, P, head_dim], the self-attention cache of the
  P tokens already decoded (P = 0 on the first step: pass arrays with a zero-length axis) ->
  ``logits`` [N, 1, V] and ``present_key_i`` / ``present_value_i`` [N, heads, P + 1, head_dim],
  the next step's past. The step index is P itself (the length of the past), so there is no
  separate position input; a beam search reorders the rows of the present arrays as it picks
  parents. Decoder tokens are text tokens that are never PAD (image-code generation, OFA's
  text-to-image mode, is not exported).
* ``manifest.json``: names, dtypes and shapes of every input and output, the opset, the model
  config, special token ids, image size and normalisation, and the check's results;
  ``vocab.json`` + ``merges.txt``: the tokenizer (``OFATokenizer.from_dir`` reads the folder).

The exporter is ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript), the
default of torch >= 2.9: the TorchScript one is deprecated and bakes every Python-side int
(such as the decoder's past length) into the graph. The model code has data-dependent Python
branches (``if padding.any()``) that torch.export cannot trace, so the graphs are built by small
adapter modules below that run the model's own submodules and position functions without those
branches (multiplying by an all-ones mask or adding zeros where the model skips the work, which
gives identical numbers); the model code is unchanged. The decoder step tabulates its position
terms (which depend on the position only) for every decoder position at export time, so a step
does no position projections. :func:`check_onnx` compares both graphs with the PyTorch model
and runs a greedy decode on both; :class:`ONNXModel` runs an export folder with onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError, OFAError
from .model.config import BOS_ID, EOS_ID, PAD_ID
from .model.decoder import DecoderCache, LayerCache
from .model.encoder import position_bias
from .model.positions import image_rel_buckets, token_rel_buckets
from .preprocess import OFA_MEAN, OFA_STD, TASK_IMAGE_SIZES

if TYPE_CHECKING:
    from .api import OFA
    from .model.ofa import OFAModel
    from .tokenizer import OFATokenizer

__all__ = ["export_onnx", "check_onnx", "ONNXModel", "OnnxCheckError", "add_parser",
           "ENCODER_FILE", "DECODER_FILE", "MANIFEST_FILE", "DEFAULT_OPSET"]

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder_step.onnx"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "ofa-onnx"
MANIFEST_VERSION = 1
DEFAULT_OPSET = 18  # the oldest opset the dynamo exporter targets; onnxruntime >= 1.14 runs it
MIN_OPSET = 18
MAX_OPSET = 23  # the newest the torch 2.13 exporter writes
_INSTALL_HINT = 'ONNX export needs the onnx extra: pip install "ofa-vl[onnx]" ' \
                "(onnx, onnxscript, onnxruntime)"
# external weights above this many bytes (protobuf files cannot exceed 2 GiB)
_EXTERNAL_DATA_BYTES = 1_500_000_000


class OnnxCheckError(OFAError):
    """The exported graphs do not reproduce the PyTorch model."""


def _require(*modules: str) -> None:
    import importlib

    if "onnxscript" in modules and _torch_version() < (2, 6):
        raise InputError(f"ONNX export needs torch >= 2.6 (its torch.export-based exporter); "
                         f"this is torch {torch.__version__}")
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise InputError(f"{_INSTALL_HINT}; {name} is not installed") from None


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int(minor)


# ---------------------------------------------------------------------- graph adapters
class EncoderGraph(nn.Module):
    """``OFAEncoder.forward`` with images always present and no data-dependent branches, plus
    what every decoding step needs from the source: projected cross positions and each
    decoder layer's cross-attention keys/values."""

    def __init__(self, model: OFAModel) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.decoder = model.decoder

    def forward(self, input_ids: torch.Tensor, images: torch.Tensor,
                image_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        enc, dec = self.encoder, self.decoder
        cfg, heads = enc.cfg, enc.cfg.attention_heads
        b, n_text = input_ids.shape
        text_pos = torch.arange(n_text, device=input_ids.device)
        x = enc.embed_text(input_ids, text_pos)
        img_x, img_ids = enc.embed_image(images.to(x.dtype))
        n_img = img_x.shape[1]
        img_pad = image_mask.to(torch.bool).logical_not()[:, None].expand(b, n_img)
        x = torch.cat([img_x, x], dim=1)
        padding = torch.cat([img_pad, input_ids.eq(cfg.pad_token_id)], dim=1)
        pos = torch.cat([enc.image_pos_ln(enc.embed_image_positions(img_ids)),
                         enc.pos_ln(enc.embed_positions(text_pos))])
        # the model skips these two when nothing is padded: x * 1 and + 0 change no value
        x = x * padding.logical_not().unsqueeze(-1).to(x.dtype)
        abs_bias = position_bias(enc.pos_q_linear, enc.pos_k_linear, pos, pos, heads,
                                 enc.pos_scaling)
        key_pad = torch.zeros(padding.shape, dtype=abs_bias.dtype, device=x.device)
        key_pad = key_pad.masked_fill(padding, float("-inf"))[:, None, None, :]
        text_buckets = token_rel_buckets(text_pos, text_pos, cfg.token_bucket_size,
                                         cfg.max_source_positions)
        img_buckets = image_rel_buckets(img_ids, img_ids, cfg.image_bucket_size)
        for i, layer in enumerate(enc.layers):
            # relative biases on the image-image and text-text blocks (zero elsewhere): the
            # model adds them in place into those blocks, the same sums
            img_rel = enc.image_rel_pos_table_list[i](img_buckets).permute(2, 0, 1)
            text_rel = enc.token_rel_pos_table_list[i](text_buckets).permute(2, 0, 1)
            rel = F.pad(img_rel, (0, n_text, 0, n_text)) + F.pad(text_rel, (n_img, 0, n_img, 0))
            x = layer(x, (abs_bias + rel).unsqueeze(0) + key_pad)
        hidden = enc.layer_norm(x)
        cross_pos_k = dec.cross_pos_k_linear(pos).view(pos.shape[0], heads, -1).transpose(0, 1)
        kv: list[torch.Tensor] = []
        for layer in dec.layers:
            kv.extend(layer.encoder_attn.project_kv(hidden))
        return (hidden, padding, cross_pos_k, *kv)


class DecoderStepGraph(nn.Module):
    """``OFADecoder.forward`` for one new text token with the self-attention cache given as
    tensors (the past length P is their third axis) and the cross K/V precomputed.

    The position terms depend on the position only, so they are tabulated here for every
    decoder position once (the model projects each new position at its step and caches the
    keys): a step reads its query row and the keys so far instead of projecting them."""

    def __init__(self, model: OFAModel) -> None:
        super().__init__()
        dec = model.decoder
        self.decoder = dec
        self.embed_weight = model.embed_tokens.weight
        m, heads = dec.cfg.max_target_positions, dec.cfg.attention_heads
        with torch.no_grad():
            pos = dec.pos_ln(dec.embed_positions.weight[:m])
            self.register_buffer("self_pos_k", dec.self_pos_k_linear(pos).view(m, heads, -1)
                                 .transpose(0, 1).contiguous(), persistent=False)
            self.register_buffer("self_pos_q", dec.self_pos_q_linear(pos).view(m, heads, -1)
                                 * dec.pos_scaling, persistent=False)
            self.register_buffer("cross_pos_q", dec.cross_pos_q_linear(pos).view(m, heads, -1)
                                 * dec.pos_scaling, persistent=False)

    def forward(self, input_ids: torch.Tensor, encoder_padding_mask: torch.Tensor,
                cross_pos_k: torch.Tensor, cross_kv: list[torch.Tensor],
                past_kv: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        dec = self.decoder
        cfg = dec.cfg
        n = input_ids.shape[0]
        past = past_kv[0].shape[2]
        total = past + 1
        device = input_ids.device
        rows = torch.arange(past, total, device=device)
        cols = torch.arange(total, device=device)

        x = dec.embed(input_ids, rows)
        self_q = self.self_pos_q[past:total].transpose(0, 1)  # [H, 1, d]
        self_abs = self_q @ self.self_pos_k[:, :total].transpose(1, 2)  # [H, 1, T]
        cross_q = self.cross_pos_q[past:total].transpose(0, 1)
        cross_bias = cross_q @ cross_pos_k.transpose(1, 2)  # [H, 1, S]
        buckets = token_rel_buckets(rows, cols, cfg.token_bucket_size, cfg.max_target_positions)

        # key padding: the past tokens are never PAD; the new one masks itself if it is
        key_pad = torch.cat([torch.zeros(n, past, dtype=torch.bool, device=device),
                             input_ids.eq(cfg.pad_token_id)], dim=1)
        mask = torch.zeros(n, 1, 1, total, dtype=x.dtype, device=device)
        mask = mask.masked_fill(key_pad[:, None, None, :], float("-inf"))
        enc_pad = torch.zeros(encoder_padding_mask.shape, dtype=x.dtype, device=device)
        enc_pad = enc_pad.masked_fill(encoder_padding_mask.to(torch.bool), float("-inf"))
        cross_bias = cross_bias + enc_pad[:, None, None, :]

        present: list[torch.Tensor] = []
        for i, layer in enumerate(dec.layers):
            cache = LayerCache(self_k=past_kv[2 * i], self_v=past_kv[2 * i + 1],
                               cross_k=cross_kv[2 * i], cross_v=cross_kv[2 * i + 1])
            self_bias = self_abs + dec.token_rel_pos_table_list[i](buckets).permute(2, 0, 1)
            x = layer(x, None, self_bias + mask, cross_bias, cache)
            present.extend((cache.self_k, cache.self_v))
        logits = F.linear(dec.layer_norm(x), self.embed_weight)
        return (logits, *present)


def _names(num_layers: int) -> dict[str, list[str]]:
    cross = [f"cross_{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]
    past = [f"past_{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]
    present = [f"present_{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]
    return {
        "encoder_inputs": ["input_ids", "images", "image_mask"],
        "encoder_outputs": ["encoder_hidden", "encoder_padding_mask", "cross_pos_k", *cross],
        "decoder_inputs": ["input_ids", "encoder_padding_mask", "cross_pos_k", *cross, *past],
        "decoder_outputs": ["logits", *present],
    }


# ---------------------------------------------------------------------- export
def _example_source(cfg, image_size: int, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """A padded batch of 2 (one sample without an image) to trace with."""
    g = torch.Generator().manual_seed(0)
    lengths = [7, 5][:batch] + [6] * max(0, batch - 2)
    ids = torch.full((batch, max(lengths)), PAD_ID, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, 0], ids[i, n - 1] = BOS_ID, EOS_ID
        ids[i, 1:n - 1] = torch.randint(4, min(cfg.vocab_size, 1000), (n - 2,), generator=g)
    images = torch.randn(batch, 3, image_size, image_size, generator=g)
    mask = torch.ones(batch, dtype=torch.bool)
    mask[-1] = False
    return ids, images, mask


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


def _unwrap(model) -> tuple[OFAModel, OFATokenizer | None, int | None]:
    from .model.ofa import OFAModel

    if isinstance(model, OFAModel):
        return model, None, None
    if hasattr(model, "model") and isinstance(model.model, OFAModel):  # an ofa.api.OFA
        return model.model, model.tokenizer, model.image_size
    raise InputError(f"expected an OFAModel or an ofa.OFA, got {type(model).__name__}")


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
    _require("onnx", "onnxscript", "onnxruntime")
    import onnx

    model, own_tokenizer, own_size = _unwrap(model)
    tokenizer = tokenizer if tokenizer is not None else own_tokenizer
    cfg = model.config
    max_side = cfg.image_bucket_size * 16
    if image_size is None:
        image_size = own_size or min(TASK_IMAGE_SIZES["caption"], max_side)
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

    export_model = _fp32_cpu(model)
    was_training = export_model.training
    export_model.eval()
    names = _names(cfg.decoder_layers)
    params = sum(p.numel() for p in export_model.parameters()) * 4
    external = params > _EXTERNAL_DATA_BYTES
    started = time.perf_counter()
    try:
        with torch.no_grad():
            ids, images, mask = _example_source(cfg, image_size)
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


def _fp32_cpu(model: OFAModel) -> OFAModel:
    """The model itself when already fp32 on CPU, else an fp32 CPU copy."""
    p = model.embed_tokens.weight
    if p.dtype == torch.float32 and p.device.type == "cpu":
        return model
    from .model.ofa import OFAModel

    with torch.device("meta"):
        copy = OFAModel(model.config)
    copy = copy.to_empty(device="cpu")
    copy.rebuild_buffers()
    copy.load_state_dict({k: v.detach().to("cpu", torch.float32)
                          for k, v in model.state_dict().items()})
    return copy.eval()


# ---------------------------------------------------------------------- running an export
@dataclass
class Step:
    logits: np.ndarray  # [N, 1, V]
    present: list[np.ndarray]  # present_key_0, present_value_0, present_key_1, ...


class ONNXModel:
    """An export folder run with onnxruntime: :meth:`encode`, :meth:`step`, :meth:`greedy`."""

    def __init__(self, out_dir: str | Path, providers: list[str] | None = None,
                 threads: int | None = None) -> None:
        _require("onnxruntime")
        import onnxruntime as ort

        folder = Path(out_dir)
        try:
            self.manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InputError(f"not an OFA ONNX export folder: {folder} ({e})") from None
        if self.manifest.get("format") != MANIFEST_FORMAT:
            raise InputError(f"{folder / MANIFEST_FILE} is not an OFA ONNX manifest")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = providers or ["CPUExecutionProvider"]
        graphs = self.manifest["graphs"]
        self.encoder = ort.InferenceSession(str(folder / graphs["encoder"]["file"]), opts,
                                            providers=providers)
        self.decoder = ort.InferenceSession(str(folder / graphs["decoder_step"]["file"]), opts,
                                            providers=providers)
        cfg = self.manifest["model_config"]
        self.num_layers = cfg["decoder_layers"]
        self.heads = cfg["attention_heads"]
        self.head_dim = cfg["head_dim"]
        self.max_target_positions = cfg["max_target_positions"]
        self.image_size = self.manifest["image"]["size"]
        self.names = _names(self.num_layers)

    def encode(self, input_ids: np.ndarray, images: np.ndarray | None = None,
               image_mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Encoder outputs by name. ``images`` None: a text-only batch (zero images, masked)."""
        input_ids = np.asarray(input_ids, dtype=np.int64)
        b = input_ids.shape[0]
        if images is None:
            images = np.zeros((b, 3, self.image_size, self.image_size), dtype=np.float32)
            image_mask = np.zeros(b, dtype=bool)
        elif image_mask is None:
            image_mask = np.ones(b, dtype=bool)
        feeds = {"input_ids": input_ids, "images": np.asarray(images, dtype=np.float32),
                 "image_mask": np.asarray(image_mask, dtype=bool)}
        outs = self.encoder.run(None, feeds)
        return dict(zip(self.names["encoder_outputs"], outs, strict=True))

    def empty_past(self, rows: int) -> list[np.ndarray]:
        shape = (rows, self.heads, 0, self.head_dim)
        return [np.zeros(shape, dtype=np.float32) for _ in range(2 * self.num_layers)]

    def step(self, input_ids: np.ndarray, encoder: dict[str, np.ndarray],
             past: list[np.ndarray]) -> Step:
        """One decoder step; ``encoder`` holds N rows (index it to expand/reorder)."""
        feeds = {"input_ids": np.asarray(input_ids, dtype=np.int64).reshape(-1, 1),
                 "encoder_padding_mask": encoder["encoder_padding_mask"],
                 "cross_pos_k": encoder["cross_pos_k"]}
        for name in self.names["decoder_inputs"]:
            if name.startswith("cross_") and name != "cross_pos_k":
                feeds[name] = encoder[name]
        feeds.update(zip(self.names["decoder_inputs"][-2 * self.num_layers:], past, strict=True))
        outs = self.decoder.run(None, feeds)
        return Step(outs[0], outs[1:])

    @staticmethod
    def select_rows(encoder: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
        """Encoder outputs for new rows (beams, finished rows dropped); cross_pos_k is shared."""
        return {k: (v if k == "cross_pos_k" else v[index]) for k, v in encoder.items()}

    def greedy(self, input_ids: np.ndarray, images: np.ndarray | None = None,
               image_mask: np.ndarray | None = None, *, max_len_b: int = 16,
               max_len_a: float = 0.0, min_len: int = 1, return_logits: bool = False
               ) -> list[list[int]] | tuple[list[list[int]], list]:
        """Greedy decoding with the rules of ``ofa.generate`` at ``beam_size=1``: PAD never,
        EOS not before ``min_len`` tokens, only EOS at step ``max_len`` =
        ``int(max_len_a * source length + max_len_b)`` (per row, capped by the decoder's
        positions); a finished row leaves the batch. Returns per row the tokens after BOS,
        ending with EOS (``Hypothesis.tokens``); ``return_logits`` also gives each step's
        (original row indices, logits [rows, V])."""
        input_ids = np.asarray(input_ids, dtype=np.int64)
        src_len = (input_ids != PAD_ID).sum(axis=1).astype(np.float64)
        max_len = (float(max_len_a) * src_len + int(max_len_b)).astype(np.int64)
        max_len = np.minimum(max_len, self.max_target_positions - 1)
        if (max_len < min_len).any():
            raise InputError(f"min_len={min_len} exceeds max_len={int(max_len.min())}")
        enc = self.encode(input_ids, images, image_mask)
        b = enc["encoder_padding_mask"].shape[0]
        alive = np.arange(b)
        out: list[list[int]] = [[] for _ in range(b)]
        tokens = np.full(b, BOS_ID, dtype=np.int64)
        past = self.empty_past(b)
        trace = []
        for step in range(int(max_len.max()) + 1):
            res = self.step(tokens, enc, past)
            logits = res.logits[:, -1, :].astype(np.float32)
            if return_logits:
                trace.append((alive.copy(), logits.copy()))
            scores = logits.copy()
            scores[:, PAD_ID] = -np.inf
            if step < min_len:
                scores[:, EOS_ID] = -np.inf
            at_max = max_len[alive] <= step
            if at_max.any():
                scores[at_max, :] = -np.inf
                scores[at_max, EOS_ID] = 0.0
            tokens = scores.argmax(axis=1)
            for row, t in zip(alive.tolist(), tokens.tolist(), strict=True):
                out[row].append(int(t))
            keep = np.nonzero(tokens != EOS_ID)[0]
            if keep.size == 0:
                break
            if keep.size < alive.size:
                enc = self.select_rows(enc, keep)
                res.present = [p[keep] for p in res.present]
            alive, tokens, past = alive[keep], tokens[keep], res.present
        return (out, trace) if return_logits else out


# ---------------------------------------------------------------------- checking
def _max_diff(a: np.ndarray, b: torch.Tensor) -> float:
    b = b.detach().float().cpu().numpy()
    if a.shape != b.shape:
        raise OnnxCheckError(f"shape mismatch: onnx {a.shape} vs torch {b.shape}")
    finite = np.isfinite(b)
    if not np.array_equal(finite, np.isfinite(a)):
        raise OnnxCheckError("onnx and torch disagree on which values are finite")
    return float(np.abs(a[finite] - b[finite]).max()) if finite.any() else 0.0


def check_onnx(out_dir: str | Path, model: OFAModel | OFA, *,
               tokenizer: OFATokenizer | None = None, input_ids: torch.Tensor | None = None,
               images: torch.Tensor | None = None, image_mask: torch.Tensor | None = None,
               max_len_b: int = 16, max_len_a: float = 0.0, decode_steps: int = 5,
               atol: float = 1e-4,
               rtol: float = 1e-4, seed: int = 0, raise_on_failure: bool = True) -> dict:
    """Run the export in ``out_dir`` with onnxruntime against ``model`` (PyTorch, fp32 CPU).

    1. encoder on a source batch (default: 2 random samples with text padding, the second
       without an image): every output vs the model;
    2. ``decode_steps`` decoder steps on random tokens, feeding back the ONNX presents (past
       lengths 0, 1, ...) vs the model's cached ``decode``;
    3. an ONNX greedy decode vs ``ofa.generate.generate(model, ..., beam_size=1)``: identical
       tokens required; the logits of every step vs the model's on the same tokens.

    Returns max abs differences and the tokens; raises :class:`OnnxCheckError` when tokens
    differ or a difference exceeds ``atol + rtol * max|reference|``
    (unless ``raise_on_failure=False``; then see ``"ok"``).
    """
    from .generate import GenerationConfig, generate

    model, _, _ = _unwrap(model)
    model = _fp32_cpu(model)
    runner = ONNXModel(out_dir)
    cfg = model.config
    size = runner.image_size
    if input_ids is None:
        input_ids, rand_images, rand_mask = _example_source(cfg, size)
        if images is None:
            images, image_mask = rand_images, rand_mask
    input_ids = torch.as_tensor(input_ids, dtype=torch.long).cpu()
    b = input_ids.shape[0]
    if images is not None:
        images = torch.as_tensor(images, dtype=torch.float32).cpu()
        if tuple(images.shape[1:]) != (3, size, size):
            raise InputError(f"images must be [B, 3, {size}, {size}] for this export, got "
                             f"{list(images.shape)}")
    if image_mask is not None:
        image_mask = torch.as_tensor(image_mask, dtype=torch.bool).cpu()
    np_images = None if images is None else images.numpy()
    np_mask = None if image_mask is None else image_mask.numpy()
    report: dict[str, Any] = {"batch": b}
    worst = {}  # name -> (diff, reference scale)

    def note(name: str, onnx_value: np.ndarray, ref: torch.Tensor) -> None:
        diff = _max_diff(onnx_value, ref)
        scale = float(ref.detach().float().abs().nan_to_num(posinf=0, neginf=0).max())
        old = worst.get(name, (0.0, 0.0))
        worst[name] = (max(old[0], diff), max(old[1], scale))

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            # 1. encoder
            enc_np = runner.encode(input_ids.numpy(), np_images, np_mask)
            if images is None:  # what ONNXModel.encode feeds for a text-only batch
                ref_enc = model.encode(input_ids, torch.zeros(b, 3, size, size),
                                       torch.zeros(b, dtype=torch.bool))
            else:
                ref_enc = model.encode(input_ids, images, image_mask)
            if not np.array_equal(enc_np["encoder_padding_mask"],
                                  ref_enc.padding_mask.numpy()):
                raise OnnxCheckError("encoder_padding_mask differs from the model's")
            note("encoder_hidden", enc_np["encoder_hidden"], ref_enc.hidden)
            dec = model.decoder
            pos = ref_enc.position_embeddings
            ref_cpk = dec.cross_pos_k_linear(pos).view(pos.shape[0], cfg.attention_heads, -1)
            note("cross_kv", enc_np["cross_pos_k"], ref_cpk.transpose(0, 1))
            for i, layer in enumerate(dec.layers):
                ck, cv = layer.encoder_attn.project_kv(ref_enc.hidden)
                note("cross_kv", enc_np[f"cross_key_{i}"], ck)
                note("cross_kv", enc_np[f"cross_value_{i}"], cv)

            # 2. random decoder tokens, past lengths 0 .. decode_steps-1
            g = torch.Generator().manual_seed(seed)
            steps = torch.randint(4, cfg.vocab_size, (b, decode_steps), generator=g)
            steps[:, 0] = BOS_ID
            cache, past = DecoderCache(), runner.empty_past(b)
            for t in range(decode_steps):
                ref = model.decode(steps[:, t:t + 1], ref_enc, cache)
                res = runner.step(steps[:, t].numpy(), enc_np, past)
                note("decoder_logits", res.logits, ref)
                for li, c in enumerate(cache.layers):
                    note("decoder_present", res.present[2 * li], c.self_k)
                    note("decoder_present", res.present[2 * li + 1], c.self_v)
                past = res.present
            report["random_decode_steps"] = decode_steps

            # 3. greedy decode
            gen_cfg = GenerationConfig(beam_size=1, max_len_a=max_len_a, max_len_b=max_len_b,
                                       min_len=1)
            hyps = generate(model, input_ids, images, image_mask, gen_cfg, encoder_out=ref_enc)
            torch_tokens = [h[0].tokens.tolist() for h in hyps]
            onnx_tokens, trace = runner.greedy(input_ids.numpy(), np_images, np_mask,
                                               max_len_a=max_len_a, max_len_b=max_len_b,
                                               min_len=1, return_logits=True)
            # the model's logits along the ONNX path (same tokens fed, same rows kept)
            cache, enc_rows, prev_rows = DecoderCache(), ref_enc, None
            for step, (rows, logits) in enumerate(trace):
                if prev_rows is not None and len(rows) < len(prev_rows):
                    keep = torch.as_tensor(np.searchsorted(prev_rows, rows))
                    cache.reorder(keep, sources=keep)
                    enc_rows = enc_rows.index_select(keep)
                feed = [BOS_ID if step == 0 else onnx_tokens[r][step - 1] for r in rows]
                ref = model.decode(torch.tensor(feed).view(-1, 1), enc_rows, cache)[:, -1]
                note("greedy_logits", logits, ref)
                prev_rows = rows
            report["greedy_steps"] = len(trace)
            report["tokens_onnx"] = onnx_tokens
            report["tokens_torch"] = torch_tokens
            report["tokens_match"] = onnx_tokens == torch_tokens
            if tokenizer is not None:
                report["text_onnx"] = [tokenizer.decode(t) for t in onnx_tokens]
    finally:
        model.train(was_training)

    report["max_abs_diff"] = {k: v[0] for k, v in worst.items()}
    report["max_abs_diff_all"] = max(v[0] for v in worst.values())
    failed = [k for k, (diff, scale) in worst.items() if not diff <= atol + rtol * scale]
    report["ok"] = report["tokens_match"] and not failed
    report["tolerance"] = {"atol": atol, "rtol": rtol}
    if raise_on_failure and not report["ok"]:
        why = []
        if not report["tokens_match"]:
            why.append(f"greedy tokens differ: onnx {onnx_tokens} vs torch {torch_tokens}")
        why += [f"{k} max abs diff {worst[k][0]:.3g} exceeds {atol} + {rtol} x "
                f"{worst[k][1]:.3g}" for k in failed]
        raise OnnxCheckError("ONNX check failed: " + "; ".join(why))
    return report


# ---------------------------------------------------------------------- CLI
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
                        f"trained size when known, else {TASK_IMAGE_SIZES['caption']})")
    p.add_argument("--vocab", type=Path, default=None,
                   help="tokenizer folder for checkpoints that ship none")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the onnxruntime comparison with PyTorch")
    p.add_argument("--overwrite", action="store_true", help="allow a non-empty OUT_DIR")
    p.set_defaults(func=run_export_onnx)
    return p


def run_export_onnx(args: argparse.Namespace) -> int:
    from .api import load

    _require("onnx", "onnxscript", "onnxruntime")
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

