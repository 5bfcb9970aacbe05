"""Parity with ModelScope's Chinese OFA (``<shared>/oracle/cn``), fp32.

The oracle's synthesized weights (salt v-cn1, the 30,325-id Chinese vocabulary) are saved as an
official fairseq checkpoint next to the BERT-Chinese ``vocab.txt`` and loaded with
``ofa.load``, the path a user takes; then for every case:

* the prompt ids the task builds (caption, grounding, OCR) equal the stored ones, and the
  images our preprocessing makes (squash, OCR resize and padding) equal the stored inputs;
* teacher-forced logits (full first/last rows, the first 64 ids, the first 64 bins) and
  encoder rows within 1e-4 of ModelScope (and of mmpretrain where it ran);
* every stored generation of ModelScope's port of the official generator: the same ids for
  the winner and the whole n-best list, scores within 1e-4; mmpretrain's greedy ids.

The measured differences are printed (``pytest -s``) and recorded as junit properties.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ofa
from ofa.preprocess import ImageTransform

from oracle_cases import compare_generation

TOL = 1e-4
SALT = "v-cn1"
CASES = {  # case -> (oracle config, task)
    "caption_cn_tiny": ("ofa-cn-tiny", "caption"),
    "ocr_cn_interp_tiny": ("ofa-cn-tiny-interp", "ocr"),
    "caption_cn_astronaut": ("ofa-cn-base", "caption"),
    "refcoco_cn_chelsea": ("ofa-cn-base", "ground"),
    "refcoco_cn_batch2": ("ofa-cn-base", "ground"),
    "ocr_cn_line": ("ofa-cn-base", "ocr"),
    "ocr_cn_vertical": ("ofa-cn-base", "ocr"),
}


@pytest.fixture(scope="module")
def cn_dir(oracle_dir: Path) -> Path:
    return oracle_dir / "cn"


def read_case(cn_dir: Path, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    spec = json.loads((cn_dir / "cases" / f"{name}.json").read_text())
    tensors = load_file(str(cn_dir / "cases" / f"{name}.safetensors"))
    # the oracle stores the pixels; both references read them normalised by mean = std = 0.5
    tensors["image_input"] = tensors["image_uint8"].float().div(255).sub(0.5).div(0.5)
    return spec, tensors


@pytest.fixture(scope="module")
def cn_model(cn_dir: Path, synth, tmp_path_factory):
    """``cn_model(config)``: ``ofa.load`` of the oracle's weights as an official .pt, once."""
    torch.set_num_threads(max(torch.get_num_threads(), 2))
    loaded: dict = {}

    def get(config: str):
        if config not in loaded:
            loaded.clear()  # base is 640 MB: one at a time
            arch = config.removesuffix("-interp")
            rows = synth.read_keys(cn_dir / "keys" / f"{arch}.mmpretrain.tsv")
            state = synth.synth_state_dict(rows, SALT)
            folder = tmp_path_factory.mktemp(config)
            model_cfg = ({"interpolate_position": True} if config.endswith("-interp") else {})
            torch.save({"model": {synth.mmpretrain_to_fairseq(k): v for k, v in state.items()},
                        "cfg": {"model": model_cfg, "task": {"orig_patch_image_size": 256}}},
                       folder / "checkpoint.pt")
            (folder / "vocab.txt").write_bytes((cn_dir / "vocab.txt").read_bytes())
            del state
            loaded[config] = ofa.load(folder / "checkpoint.pt", device="cpu", progress=False)
        return loaded[config]

    return get


def teacher_forced(model, tensors: dict[str, torch.Tensor], refs: list[str]) -> dict:
    with torch.no_grad():
        enc = model.encode(tensors["prompt_ids"], tensors["image_input"])
        logits = model.decode(tensors["decoder_input_ids"], enc)
    valid = ~enc.padding_mask[:, -16:, None]
    out = {"logits_last": (logits[:, -1] - tensors["logits_last.modelscope"]).abs().max(),
           "logits_first": (logits[:, 0] - tensors["logits_first.modelscope"]).abs().max()}
    for ref in refs:
        out[f"head64.{ref}"] = (logits[..., :64] - tensors[f"logits_head64.{ref}"]).abs().max()
        bins = logits[..., 29325:29389]
        out[f"bins64.{ref}"] = (bins - tensors[f"logits_bins64.{ref}"]).abs().max()
        out[f"enc_first16.{ref}"] = (enc.hidden[:, :16] - tensors[f"enc_first16.{ref}"]).abs(
        ).max()
        last = (enc.hidden[:, -16:] - tensors[f"enc_last16.{ref}"]).abs() * valid
        out[f"enc_last16.{ref}"] = last.max()
    return {k: float(v) for k, v in out.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_chinese_checkpoint_matches_modelscope(case, cn_dir, cn_model, record_property):
    config, task_name = CASES[case]
    spec, tensors = read_case(cn_dir, case)
    m = cn_model(config)
    assert m.tokenizer.language == "zh" and m.model.config.vocab_size == 30325

    # the task builds the stored prompt ids from the stored texts
    task = ofa.tasks.get_task(task_name)
    for row, text in enumerate(spec["inputs"]["prompt_texts"]):
        # the grounding prompt quotes the expression: 这段文字" {expr} "描述的是哪个区域？
        expr = text.split('" ', 1)[-1].rsplit(' "', 1)[0]
        fields = {"text": expr} if task_name == "ground" else {}
        expected = [i for i in tensors["prompt_ids"][row].tolist() if i != 1]
        assert task.prepare(m.tokenizer, "", **fields).source == expected, text

    # and the stored input pixels from the stored original images
    transform = ImageTransform.from_cfg(task.preprocess.with_size(
        tensors["image_uint8"].shape[-1]))
    for i in range(tensors["image_uint8"].shape[0]):
        if f"image_orig_uint8_{i}" not in tensors:  # a random image fed as it is
            continue
        ours = transform(tensors[f"image_orig_uint8_{i}"].numpy())
        assert torch.equal(ours, tensors["image_input"][i]), f"{case}: image {i} differs"

    refs = ["modelscope"] + (["mmpretrain"] if "logits_head64.mmpretrain" in tensors else [])
    diffs = teacher_forced(m.model, tensors, refs)
    runs = compare_generation(m.model, m.tokenizer, cn_dir, case, case_data=(spec, tensors))
    print(f"\n{case}: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()) + "; " +
          ", ".join(f"{k} {v['max_abs_diff']}" for k, v in runs.items()))
    for key, value in diffs.items():
        record_property(f"{case}.{key}", value)
        assert value <= TOL, f"{case}: {key} max abs diff {value:.2e} > {TOL:.0e}"
    for run, r in runs.items():
        assert r["ids_equal"], f"{case}/{run}: ids differ from the reference"
        assert r["nbest_equal"], f"{case}/{run}: n-best list differs from the reference"
        if r["max_abs_diff"] is not None:
            record_property(f"{case}.{run}.max_abs_diff", r["max_abs_diff"])
            assert r["max_abs_diff"] <= TOL
