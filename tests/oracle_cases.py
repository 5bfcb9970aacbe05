"""Reading the oracle's stored cases and measuring how far a model is from them.

Used by test_parity.py and benchmarks/parity.py (which writes the figures to BENCHMARKS.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

REFERENCES = ("mmpretrain", "modelscope")


def case_names(oracle_dir: Path, config: str | None = None) -> list[str]:
    index = json.loads((oracle_dir / "cases" / "index.json").read_text())
    return sorted(n for n, c in index.items() if config is None or c["config"] == config)


def load_case(oracle_dir: Path, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    folder = oracle_dir / "cases"
    return json.loads((folder / f"{name}.json").read_text()), load_file(
        str(folder / f"{name}.safetensors"))


def write_checkpoint(synth, state_mm: dict, layout: str, out: Path) -> Path:
    """Save mmpretrain-named weights as a user would have them, renamed with the oracle's own
    key mapping: 'mmpretrain' .pth, official 'fairseq' .pt ({'model': ...}) or an 'hf' folder."""
    if layout == "mmpretrain":
        path = out / "weights.pth"
        torch.save(state_mm, path)
    elif layout == "fairseq":
        path = out / "checkpoint.pt"
        torch.save({"model": {synth.mmpretrain_to_fairseq(k): v for k, v in state_mm.items()}},
                   path)
    elif layout == "hf":
        path = out / "hf"
        path.mkdir()
        torch.save({synth.mmpretrain_to_hf(k): v for k, v in state_mm.items()},
                   path / "pytorch_model.bin")
        (path / "config.json").write_text(json.dumps({"model_type": "ofa"}))
    else:
        raise ValueError(layout)
    return path


def measure(model, oracle_dir: Path, name: str) -> dict[str, float]:
    """Max |diff| of encoder rows and logits against every stored reference tensor."""
    meta, t = load_case(oracle_dir, name)
    prompt, dec = t["prompt_ids"], t["decoder_input_ids"]
    with torch.no_grad():
        enc = model.encode(prompt, t["image_input"])
        logits = model.decode(dec, enc)
    hidden = enc.hidden
    valid = ~enc.padding_mask
    out: dict[str, float] = {}
    for ref in REFERENCES:
        first = (hidden[:, :16] - t[f"enc_first16.{ref}"]).abs()
        last = (hidden[:, -16:] - t[f"enc_last16.{ref}"]).abs()
        last = last * valid[:, -16:, None]  # pad rows are not compared (as in the oracle)
        out[f"encoder.{ref}"] = max(first.max().item(), last.max().item())
        out[f"logits_head64.{ref}"] = (logits[..., :64] - t[f"logits_head64.{ref}"]).abs().max(
        ).item()
    full = max((logits[:, -1] - t["logits_last.mmpretrain"]).abs().max().item(),
               (logits[:, 0] - t["logits_first.mmpretrain"]).abs().max().item())
    out["logits_full_rows.mmpretrain"] = full
    out["argmax_equal"] = float(torch.equal(
        logits.argmax(-1),
        torch.tensor(meta["teacher_forced"]["per_reference"]["mmpretrain"][
            "argmax_per_position"])))
    return out
