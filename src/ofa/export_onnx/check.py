"""``check_onnx``: an export folder against the PyTorch model it came from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InputError
from ..model.config import BOS_ID
from ..model.decoder import DecoderCache
from .common import OnnxCheckError, example_source, fp32_cpu, unwrap
from .runtime import ONNXModel

if TYPE_CHECKING:
    from ..api import OFA
    from ..model.ofa import OFAModel
    from ..tokenizer import OFATokenizer


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
    from ..generate import GenerationConfig, generate

    model, _, _ = unwrap(model)
    model = fp32_cpu(model)
    runner = ONNXModel(out_dir)
    cfg = model.config
    size = runner.image_size
    if input_ids is None:
        input_ids, rand_images, rand_mask = example_source(cfg, size)
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
