"""ofa.convert.convert_checkpoint, the one read -> build -> save path, and the answer list a
native folder may carry."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open

from ofa.checkpoints import ANSWERS_FILE, describe, model_answers, read_checkpoint, save_native
from ofa.convert import NO_TOKENIZER, convert_checkpoint
from ofa.demo import DEMO_DIR
from ofa.errors import CheckpointError, InputError
from ofa.model import OFAModel
from ofa.tokenizer import OFATokenizer

from conftest import tiny_config

KEY = "encoder.layers.0.fc1.weight"


@pytest.fixture(scope="module")
def state():
    torch.manual_seed(0)
    return OFAModel(tiny_config()).eval().state_dict()


@pytest.fixture
def fairseq(tmp_path, state):
    """An official-layout .pt with EMA weights, and tokenizer files next to it."""
    folder = tmp_path / "src"
    folder.mkdir()
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    path = folder / "tiny_best.pt"
    torch.save({"model": state, "extra_state": {"ema": ema}}, path)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(DEMO_DIR / f, folder / f)
    return path


def test_fairseq_to_native(fairseq, tmp_path, state):
    out = tmp_path / "native"
    r = convert_checkpoint(fairseq, out, ema=False, source={"task": "caption"})
    ckpt = read_checkpoint(out)
    assert (r.out, r.src, r.format, r.used_ema) == (out, fairseq, "fairseq", False)
    assert r.description == describe(ckpt.config)
    assert r.num_parameters == OFAModel(ckpt.config).num_parameters()
    assert r.summary() == (f"{fairseq} (fairseq, {r.description}, regular weights, "
                           f"{r.num_parameters:,} parameters) -> {out}")
    assert torch.equal(ckpt.state_dict[KEY], state[KEY])
    source = json.loads((out / "config.json").read_text())["source"]
    assert source == {"format": "fairseq", "layout": "fairseq", "file": "tiny_best.pt",
                      "ema": False, "task": "caption"}
    assert not (out / ANSWERS_FILE).exists()
    # EMA when present, by default
    r = convert_checkpoint(fairseq, tmp_path / "ema")
    assert r.used_ema and "EMA weights" in r.summary()
    assert torch.equal(read_checkpoint(tmp_path / "ema").state_dict[KEY], state[KEY] + 1)


def test_tokenizer_lookup(fairseq, tmp_path):
    lone = tmp_path / "lone"  # a checkpoint without tokenizer files next to it
    lone.mkdir()
    shutil.copy(fairseq, lone / "x.pt")
    with pytest.raises(InputError) as e:
        convert_checkpoint(lone / "x.pt", tmp_path / "out")
    assert str(e.value) == NO_TOKENIZER and not (tmp_path / "out").exists()
    # an explicit folder wins, and its own error is shown
    with pytest.raises(InputError, match="no tokenizer files in"):
        convert_checkpoint(fairseq, tmp_path / "out", vocab=lone)
    r = convert_checkpoint(lone / "x.pt", tmp_path / "out", vocab=DEMO_DIR)
    assert OFATokenizer.from_dir(r.out).encode(" a red circle") == \
        OFATokenizer.from_dir(DEMO_DIR).encode(" a red circle")


def test_dtype_tokenizer_meta_and_answers(fairseq, tmp_path, state):
    seen = []

    def shrink(tok: OFATokenizer) -> OFATokenizer:
        seen.append(tok)
        return tok.restricted_to([" a red circle"])

    out = tmp_path / "demo-like"
    convert_checkpoint(fairseq, out, ema=False, dtype=torch.float16, tokenizer=shrink,
                       meta_keys=("file",), source={"registry_name": "x"},
                       answers=["red", "two"])
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    assert torch.equal(read_checkpoint(out).state_dict[KEY], state[KEY].half())
    assert len(seen) == 1
    vocab = json.loads((out / "vocab.json").read_text())  # only what " a red circle" needs
    assert "Ġred" in vocab and "Ġthe" not in vocab
    source = json.loads((out / "config.json").read_text())["source"]
    assert source == {"file": "tiny_best.pt", "registry_name": "x"}
    assert (out / ANSWERS_FILE).read_text() == "red\ntwo\n"
    assert model_answers(out) == ["red", "two"]
    # a native folder's list travels with it
    r = convert_checkpoint(out, tmp_path / "again", dtype=torch.float32)
    assert r.format == "native" and model_answers(r.out) == ["red", "two"]


def test_destination_must_be_new(fairseq, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "x").write_text("mine")
    with pytest.raises(CheckpointError, match="not empty"):
        convert_checkpoint(fairseq, out)
    assert [p.name for p in out.iterdir()] == ["x"]


def test_model_answers(tmp_path, fairseq):
    assert model_answers(DEMO_DIR) is not None
    assert model_answers(fairseq) is None  # a file
    assert model_answers(tmp_path) is None  # a folder without the list
    (tmp_path / ANSWERS_FILE).write_text("\n yes \n\nno\n")
    assert model_answers(tmp_path) == ["yes", "no"]
    (tmp_path / ANSWERS_FILE).write_text("\n \n")
    with pytest.raises(CheckpointError, match="empty"):
        model_answers(tmp_path)
    (tmp_path / ANSWERS_FILE).write_bytes(b"\xff\xfe")
    with pytest.raises(CheckpointError, match="cannot read"):
        model_answers(tmp_path)


@pytest.mark.parametrize("answers", [["a\nb"], [" a"], [""], [], [3]])
def test_save_native_refuses_answers_that_do_not_read_back(tmp_path, answers):
    model = OFAModel(tiny_config())
    with pytest.raises(InputError, match="answers"):
        save_native(model, tmp_path / "m", answers=answers)
    assert not (tmp_path / "m").exists()
