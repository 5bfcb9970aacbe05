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


def fairseq_config(settings: dict):
    """Our GenerationConfig for modelscope ``SequenceGenerator(**settings)``."""
    from ofa.generate import GenerationConfig

    beam = settings.get("beam_size", 1)
    return GenerationConfig(
        beam_size=beam, nbest=beam, max_len_a=settings.get("max_len_a", 0.0),
        max_len_b=settings.get("max_len_b", 200), min_len=settings.get("min_len", 1),
        no_repeat_ngram_size=settings.get("no_repeat_ngram_size", 0),
        lenpen=settings.get("len_penalty", 1.0),
        normalize_scores=settings.get("normalize_scores", True),
        zero_shot=settings.get("zero_shot", False),
        constraint_range=_range(settings.get("constraint_range")))


def _range(value) -> tuple[int, int] | None:
    """A stored constraint range ("29325,30325" or a pair) as a pair of ints."""
    if isinstance(value, str):
        start, end = value.split(",")
        return int(start), int(end)
    return None if value is None else tuple(value)


def compare_generation(model, tokenizer, oracle_dir: Path, name: str, encoder_out=None,
                       case_data: tuple[dict, dict] | None = None) -> dict:
    """Run every stored generation of a case with our generator.

    Returns ``{run: {"ids_equal", "nbest_equal", "max_abs_diff"}}`` for the fairseq-style
    (modelscope) runs, ``allcand`` for VQA candidate scores, and ``mmpretrain_greedy`` (ids
    equal to mmpretrain's greedy run, whose ids start with 0 and are padded with 1).
    """
    from ofa.generate import Trie, encode_answers, generate, score_candidates

    spec, tensors = load_case(oracle_dir, name) if case_data is None else case_data
    input_ids, images = tensors["prompt_ids"], tensors["image_input"]
    if encoder_out is None:
        with torch.no_grad():
            encoder_out = model.encode(input_ids, images)
    answers = spec["inputs"].get("answers")
    trie = Trie.from_answers(tokenizer, answers) if answers else None
    # VQA prev_output prompt: the question tokens, without BOS and EOS, as a forced prefix
    lengths = input_ids.ne(1).sum(1).tolist()
    prefix = torch.full((len(lengths), max(lengths) - 2), 1, dtype=torch.long)
    for i, n in enumerate(lengths):
        prefix[i, :n - 2] = input_ids[i, 1:n - 1]

    out: dict = {}
    greedy = None
    for run, ref in spec["generation"]["modelscope"].items():
        if run == "allcand":
            prompts = [input_ids[i, :n - 1].tolist() for i, n in enumerate(lengths)]
            scores = score_candidates(model, encoder_out, prompts,
                                      encode_answers(tokenizer, answers), trie=trie)
            expected = tensors["allcand_scores"]
            out[run] = {"ids_equal": scores.argmax(1).tolist() == expected.argmax(1).tolist(),
                        "nbest_equal": True,
                        "max_abs_diff": float((scores - expected).abs().max())}
            continue
        settings = ref["settings"]
        hyps = generate(model, input_ids, config=fairseq_config(settings),
                        encoder_out=encoder_out,
                        prefix_tokens=prefix if settings.get("prefix_tokens") else None,
                        trie=trie if settings.get("constraint_trie") else None)
        diff, nbest_equal = 0.0, True
        for ours, nbest in zip(hyps, ref["nbest"], strict=True):
            nbest_equal &= [h.tokens.tolist() for h in ours] == [x["ids"] for x in nbest]
            for h, x in zip(ours, nbest, strict=False):
                diff = max(diff, abs(h.score - x["score"]))
                if h.positional_scores.shape[0] == len(x["positional_scores"]):
                    diff = max(diff, float((h.positional_scores - torch.tensor(
                        x["positional_scores"])).abs().max()))
        out[run] = {"ids_equal": [h[0].tokens.tolist() for h in hyps] == ref["ids"],
                    "nbest_equal": nbest_equal, "max_abs_diff": diff}
        if run == "greedy":
            greedy = hyps
    if "greedy" not in spec["generation"].get("mmpretrain", {}):
        return out
    expected = spec["generation"]["mmpretrain"]["greedy"]["ids"]
    rows = [[0, *h[0].tokens.tolist()] for h in greedy]
    out["mmpretrain_greedy"] = {
        "ids_equal": all(r + [1] * (len(e) - len(r)) == e for r, e in zip(rows, expected,
                                                                           strict=True)),
        "nbest_equal": True, "max_abs_diff": None}  # ids only: HF scores are not stored
    return out
