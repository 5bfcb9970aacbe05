"""ONNX export: encoder + decoder step graphs vs the PyTorch model, and an ONNX greedy decode
vs ofa.generate (tiny random model and the embedded demo model), plus the CLI command."""

import contextlib
import copy
import io
import json
import re
import sys

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from ofa.api import load
from ofa.cli import build_parser
from ofa.demo import DEMO_IMAGE
from ofa.errors import InputError
from ofa.export_onnx import (
    DECODER_FILE,
    ENCODER_FILE,
    MANIFEST_FILE,
    OnnxCheckError,
    ONNXModel,
    check_onnx,
    export_onnx,
    fp32_cpu,
)
from ofa.generate import GenerationConfig, generate
from ofa.model import DecoderCache, OFAConfig, OFAModel
from ofa.preprocess import ImageTransform
from ofa.tasks.caption import PROMPT
from ofa.tokenizer import OFATokenizer

from conftest import text_batch, tiny_config

PAD = 1
IMAGE = 64
TOL = 1e-4



def sharpen(model: OFAModel) -> OFAModel:
    """Random weights large enough that every term matters and greedy decoding wanders
    through many tokens (the N(0, 0.02) init gives near-uniform, self-repeating outputs)."""
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=m.in_features ** -0.5)
                nn.init.normal_(m.bias, std=0.1)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.5 if "rel_pos" in name else 1.0)
            elif isinstance(m, nn.LayerNorm | nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.2)
                nn.init.normal_(m.bias, std=0.1)
        for name, p in model.named_parameters():
            if "c_attn" in name:
                p.add_(torch.randn_like(p) * 0.2)
        # the decoder's own token embedding weak, so outputs do not just echo the input
        model.decoder.layernorm_embedding.weight.mul_(0.05)
    return model


def close(onnx_value, ref, tol=TOL):
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else ref
    assert onnx_value.shape == ref.shape
    diff = float(np.abs(onnx_value - ref).max())
    assert diff < tol, diff
    return diff


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return sharpen(OFAModel(tiny_config()).eval())


@pytest.fixture(scope="module")
def tiny_export(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny"
    return out, export_onnx(tiny, out, image_size=IMAGE, check=False)


@pytest.fixture(scope="module")
def runner(tiny_export):
    return ONNXModel(tiny_export[0])


def test_manifest_describes_the_export(tiny, tiny_export):
    out, manifest = tiny_export
    assert sorted(p.name for p in out.iterdir()) == sorted([ENCODER_FILE, DECODER_FILE,
                                                            MANIFEST_FILE])
    assert json.loads((out / MANIFEST_FILE).read_text()) == manifest
    assert manifest["tokenizer"] is None and "check" not in manifest
    assert OFAConfig.from_dict(manifest["model_config"]) == tiny.config
    assert manifest["image"]["size"] == IMAGE and manifest["opset"] == 18
    cfg = tiny.config
    enc, dec = manifest["graphs"]["encoder"], manifest["graphs"]["decoder_step"]
    shapes = {v["name"]: (v["dtype"], v["shape"]) for v in enc["inputs"] + enc["outputs"]}
    assert [v["name"] for v in enc["inputs"]] == ["input_ids", "images", "image_mask"]
    assert shapes["input_ids"] == ("int64", ["batch", "src_len"])
    assert shapes["images"] == ("float32", ["batch", 3, IMAGE, IMAGE])
    assert shapes["image_mask"] == ("bool", ["batch"])
    patches = (IMAGE // 16) ** 2
    assert shapes["encoder_padding_mask"] == ("bool", ["batch", f"src_len + {patches}"])
    assert shapes[f"cross_key_{cfg.decoder_layers - 1}"][1] == [
        "batch", cfg.attention_heads, f"src_len + {patches}", cfg.head_dim]
    shapes = {v["name"]: (v["dtype"], v["shape"]) for v in dec["inputs"] + dec["outputs"]}
    assert len(dec["inputs"]) == 3 + 4 * cfg.decoder_layers
    assert shapes["input_ids"] == ("int64", ["rows", 1])
    assert shapes["past_key_0"] == ("float32", ["rows", cfg.attention_heads, "past_len",
                                                cfg.head_dim])
    assert shapes["present_value_1"][1] == ["rows", cfg.attention_heads, "past_len + 1",
                                           cfg.head_dim]
    assert shapes["logits"] == ("float32", ["rows", 1, cfg.vocab_size])
    for name in (ENCODER_FILE, DECODER_FILE):
        proto = onnx.load(str(out / name))
        onnx.checker.check_model(proto)
        assert {o.domain: o.version for o in proto.opset_import}[""] == 18


def test_encoder_matches_pytorch(tiny, runner):
    ids = text_batch([9, 4, 12], vocab=2000)  # other batch size and lengths than the traced example
    images = torch.randn(3, 3, IMAGE, IMAGE)
    mask = torch.tensor([True, False, True])
    got = runner.encode(ids.numpy(), images.numpy(), mask.numpy())
    with torch.no_grad():
        ref = tiny.encode(ids, images, mask)
        np.testing.assert_array_equal(got["encoder_padding_mask"], ref.padding_mask.numpy())
        close(got["encoder_hidden"], ref.hidden)
        pos = ref.position_embeddings
        cpk = tiny.decoder.cross_pos_k_linear(pos).view(pos.shape[0], 4, -1).transpose(0, 1)
        close(got["cross_pos_k"], cpk)
        for i, layer in enumerate(tiny.decoder.layers):
            k, v = layer.encoder_attn.project_kv(ref.hidden)
            close(got[f"cross_key_{i}"], k)
            close(got[f"cross_value_{i}"], v)
        # a single text-only sample: zero image, masked
        alone = runner.encode(ids[1:2, :4].numpy())
        ref1 = tiny.encode(ids[1:2, :4], torch.zeros(1, 3, IMAGE, IMAGE),
                           torch.tensor([False]))
        close(alone["encoder_hidden"], ref1.hidden)
        assert alone["encoder_padding_mask"][0, :(IMAGE // 16) ** 2].all()
    # the image matters: another image changes the first sample's states
    other = runner.encode(ids.numpy(), -images.numpy(), mask.numpy())
    assert np.abs(other["encoder_hidden"][0] - got["encoder_hidden"][0]).max() > 1e-2
    np.testing.assert_allclose(other["encoder_hidden"][1], got["encoder_hidden"][1], atol=1e-5)


@pytest.mark.parametrize("rows", [[0, 1], [1, 1, 0, 0, 0]])
def test_decoder_step_matches_pytorch(tiny, runner, rows):
    """Past lengths 0..4 from the model's own cache, N = batch x beams rows."""
    ids = text_batch([7, 5], vocab=2000, seed=1)
    images = torch.randn(2, 3, IMAGE, IMAGE)
    index = torch.tensor(rows)
    enc = runner.select_rows(runner.encode(ids.numpy(), images.numpy()), index.numpy())
    dec = torch.randint(4, 2000, (len(rows), 5), generator=torch.Generator().manual_seed(2))
    dec[:, 0] = 0
    with torch.no_grad():
        ref_enc = tiny.encode(ids, images).index_select(index)
        cache = DecoderCache()
        own_past = runner.empty_past(len(rows))
        for t in range(dec.shape[1]):
            torch_past = [x.numpy().copy() for c in cache.layers for x in (c.self_k, c.self_v)]
            torch_past = torch_past or runner.empty_past(len(rows))
            assert torch_past[0].shape[2] == t
            step = runner.step(dec[:, t].numpy(), enc, torch_past)
            ref = tiny.decode(dec[:, t:t + 1], ref_enc, cache)
            close(step.logits, ref)
            for i, c in enumerate(cache.layers):
                close(step.present[2 * i], c.self_k)
                close(step.present[2 * i + 1], c.self_v)
            # feeding back the graph's own presents gives the same
            own = runner.step(dec[:, t].numpy(), enc, own_past)
            close(own.logits, ref)
            own_past = own.present
            if t:  # the past really is read: without it the logits change
                fresh = runner.step(dec[:, t].numpy(), enc, runner.empty_past(len(rows)))
                assert np.abs(fresh.logits - step.logits).max() > 1e-2


def test_greedy_loop_matches_generate(tiny, runner):
    ids = text_batch([9, 4, 6], vocab=2000, seed=3)
    images = torch.randn(3, 3, IMAGE, IMAGE)
    mask = torch.tensor([True, True, False])
    # max_len = source length + 2 per row: rows finish at different steps
    cfg = GenerationConfig(beam_size=1, max_len_a=1.0, max_len_b=2, min_len=1)
    with torch.no_grad():
        want = [h[0].tokens.tolist() for h in generate(tiny, ids, images, mask, cfg)]
    got = runner.greedy(ids.numpy(), images.numpy(), mask.numpy(), max_len_a=1.0, max_len_b=2)
    assert got == want
    assert [len(t) for t in got] == [12, 7, 9]  # src_len + 2 tokens + EOS
    assert all(len(set(t)) >= 3 for t in got)  # not a constant run
    assert len({tuple(t) for t in got}) == 3
    # batch of one (the graphs were traced with 2 rows)
    one = runner.greedy(ids[:1].numpy(), images[:1].numpy(), max_len_b=8)
    with torch.no_grad():
        ref = generate(tiny, ids[:1], images[:1], None, cfg.replace(max_len_a=0.0, max_len_b=8))
    assert one == [ref[0][0].tokens.tolist()]


def test_check_onnx_reports_and_catches_a_wrong_model(tiny, tiny_export):
    out, _ = tiny_export
    report = check_onnx(out, tiny)
    assert report["ok"] and report["tokens_match"]
    assert report["greedy_steps"] == 17 and report["random_decode_steps"] == 5
    assert set(report["max_abs_diff"]) == {"encoder_hidden", "cross_kv", "decoder_logits",
                                           "decoder_present", "greedy_logits"}
    assert report["max_abs_diff_all"] < TOL
    wrong = copy.deepcopy(tiny)
    with torch.no_grad():
        w = wrong.decoder.layers[-1].fc2.weight
        w.add_(torch.randn(w.shape, generator=torch.Generator().manual_seed(0)) * 0.05)
    with pytest.raises(OnnxCheckError, match="decoder_logits"):
        check_onnx(out, wrong)
    bad = check_onnx(out, wrong, raise_on_failure=False)
    assert not bad["ok"] and bad["max_abs_diff"]["decoder_logits"] > 1e-2
    assert bad["max_abs_diff"]["encoder_hidden"] < TOL  # only the decoder was changed


def test_entangled_positions_export(tmp_path):
    torch.manual_seed(1)
    model = sharpen(OFAModel(tiny_config(entangle_position_embedding=True)).eval())
    manifest = export_onnx(model, tmp_path / "entangled", image_size=IMAGE, check=True)
    assert manifest["model_config"]["entangle_position_embedding"] is True
    report = manifest["check"]
    assert report["ok"] and report["tokens_match"], report
    assert report["max_abs_diff_all"] < TOL


def test_fp16_model_is_exported_from_an_fp32_copy(tiny):
    half = copy.deepcopy(tiny).half()
    full = fp32_cpu(half)
    assert full is not half and half.embed_tokens.weight.dtype == torch.float16
    assert full.embed_tokens.weight.dtype == torch.float32
    for (k, a), (_, b) in zip(full.state_dict().items(), half.state_dict().items(), strict=True):
        assert torch.equal(a, b.float()), k
    torch.testing.assert_close(full.decoder.image_position_idx, tiny.decoder.image_position_idx)
    assert fp32_cpu(tiny) is tiny


def test_export_input_errors(tiny, tiny_export, tmp_path, monkeypatch):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        export_onnx(tiny, tmp_path / "full", image_size=IMAGE)
    with pytest.raises(InputError, match="opset"):
        export_onnx(tiny, tmp_path / "a", image_size=IMAGE, opset=11)
    with pytest.raises(InputError, match="image_size"):
        export_onnx(tiny, tmp_path / "b", image_size=16 * 43)
    with pytest.raises(InputError, match="expected an OFAModel"):
        export_onnx("tiny", tmp_path / "c")
    with pytest.raises(InputError, match="not an OFA ONNX export"):
        ONNXModel(tmp_path)
    with pytest.raises(InputError, match="min_len"):
        ONNXModel(tiny_export[0]).greedy(text_batch([5], vocab=2000).numpy(), max_len_b=0)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(InputError, match=re.escape('pip install "ofa-vl[onnx]"')):
        export_onnx(tiny, tmp_path / "d", image_size=IMAGE)


# ---------------------------------------------------------------------- demo model + CLI
def parse(argv):
    return build_parser().parse_args(argv)


@pytest.fixture(scope="module")
def demo_cli(tmp_path_factory):
    """``ofa export onnx --model shapes-demo OUT`` (export + check), run once."""
    out = tmp_path_factory.mktemp("demo") / "shapes-onnx"
    args = parse(["export", "onnx", "--model", "shapes-demo", str(out)])
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = args.func(args)
    return out, rc, buf.getvalue()


def test_cli_exports_and_checks_the_demo_model(demo_cli):
    out, rc, text = demo_cli
    assert rc == 0
    for name in (ENCODER_FILE, DECODER_FILE, MANIFEST_FILE, "vocab.json", "merges.txt"):
        assert (out / name).is_file()
        assert f"wrote {out / name}" in text
    diff = float(re.search(r"check ok: max abs diff (\S+)", text).group(1))
    assert diff < TOL
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["check"]["ok"] and manifest["check"]["max_abs_diff_all"] == pytest.approx(
        diff, rel=0.01)
    assert manifest["image"]["size"] == 96  # the demo model's trained resolution
    assert manifest["tokenizer"] == ["vocab.json", "merges.txt"]
    assert manifest["model_config"]["d_model"] == 128


def test_demo_caption_greedy_identical(demo_cli):
    out = demo_cli[0]
    ofa = load("shapes-demo", device="cpu")
    tokenizer = OFATokenizer.from_dir(out)  # the export folder is self-contained
    ids = tokenizer.encode(PROMPT)
    assert ids == ofa.tokenizer.encode(PROMPT)
    image, _ = ImageTransform(96).batch([DEMO_IMAGE])
    report = check_onnx(out, ofa, tokenizer=tokenizer, input_ids=torch.tensor([ids]),
                        images=image)
    assert report["tokens_match"] and report["max_abs_diff_all"] < TOL
    tokens = report["tokens_onnx"][0]
    assert tokens == ofa.caption(DEMO_IMAGE, beam_size=1, no_repeat_ngram_size=0)["tokens"]
    caption = report["text_onnx"][0]
    assert len(tokens) > 5 and re.search(r"triangle|square|diamond|circle", caption), caption


def test_cli_errors(demo_cli, tmp_path):
    out = demo_cli[0]  # not empty
    args = parse(["export", "onnx", "--model", "shapes-demo", str(out), "--no-check"])
    assert args.check is False and args.opset == 18 and args.image_size is None
    with pytest.raises(InputError, match="not empty"):
        args.func(args)
    args = parse(["export", "onnx", "-m", "shapes-demo", str(tmp_path / "x"), "--opset", "9"])
    with pytest.raises(InputError, match="opset"):
        args.func(args)
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        parse(["export", "onnx", str(tmp_path / "y")])  # --model is required
