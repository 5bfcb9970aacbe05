"""Checkpoint formats: detection, EMA choice, safe unpickling, clear errors, round trip."""

import argparse
import json
import os
import pickle
import subprocess
import sys
import types

import pytest
import torch
from safetensors.torch import save_file

from ofa import checkpoints as C
from ofa.cli import main as cli_main
from ofa.errors import CheckpointError, InputError
from ofa.model import OFAModel

from conftest import tiny_config


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(1)
    return OFAModel(tiny_config()).eval()


def official_state(model):
    """The state dict as fairseq saves it: tied keys under three names, derived buffers too."""
    sd = dict(model.state_dict())
    sd["decoder.output_projection.weight"] = sd["encoder.embed_tokens.weight"]
    sd["encoder.token_rp_bucket"] = torch.zeros(1024, 1024, dtype=torch.long)
    sd["decoder.image_position_idx"] = torch.arange(1025)  # the checkpoints' wrong length
    sd["encoder.version"] = torch.tensor([3.0])
    return sd


def logits_of(model):
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([[0, 5, 6, 7, 2]])
    images = torch.randn(1, 3, 32, 32, generator=g)
    with torch.no_grad():
        return model(ids, torch.tensor([[0, 9, 10]]), images)


def test_fairseq_pt_with_namespace_args(small, tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": official_state(small), "args": argparse.Namespace(arch="ofa_tiny",
                                                                           code_image_size=256)},
               path)
    ckpt = C.read_checkpoint(path)
    assert ckpt.format == "fairseq" and not ckpt.used_ema
    assert ckpt.config.code_image_size == 256 and ckpt.config.d_model == 64
    model = C.model_from_checkpoint(ckpt)
    torch.testing.assert_close(logits_of(model), logits_of(small), rtol=0, atol=0)
    assert len(model.decoder.image_position_idx) == 1794  # rebuilt for 256, never loaded


def _fake_omegaconf_module():
    """Classes living in 'omegaconf.*' modules, pickled like OmegaConf's DictConfig/AnyNode."""
    mod_dc, mod_nodes = types.ModuleType("omegaconf.dictconfig"), types.ModuleType(
        "omegaconf.nodes")

    class DictConfig:
        def __init__(self, content):
            self.__dict__["_content"] = content
            self.__dict__["_metadata"] = {"ref_type": "typing.Any"}

        def __getstate__(self):
            return dict(self.__dict__)

    class AnyNode:
        def __init__(self, val):
            self._val = val
            self._parent = None

    DictConfig.__module__, AnyNode.__module__ = mod_dc.__name__, mod_nodes.__name__
    DictConfig.__qualname__, AnyNode.__qualname__ = "DictConfig", "AnyNode"
    mod_dc.DictConfig, mod_nodes.AnyNode = DictConfig, AnyNode
    return {"omegaconf": types.ModuleType("omegaconf"), "omegaconf.dictconfig": mod_dc,
            "omegaconf.nodes": mod_nodes}, DictConfig, AnyNode


def test_fairseq_pt_with_omegaconf_cfg_and_ema(small, tmp_path, monkeypatch):
    modules, DictConfig, AnyNode = _fake_omegaconf_module()
    ema_model = OFAModel(tiny_config()).eval()
    path = tmp_path / "vqa.pt"
    with monkeypatch.context() as m:
        for name, module in modules.items():
            m.setitem(sys.modules, name, module)
        cfg = DictConfig({"model": DictConfig({"arch": AnyNode("ofa_tiny"),
                                               "code_image_size": AnyNode(128)})})
        torch.save({"model": official_state(small), "cfg": cfg,
                    "extra_state": {"ema": official_state(ema_model)}}, path)
    assert "omegaconf.dictconfig" not in sys.modules or sys.modules[
        "omegaconf.dictconfig"] is not modules["omegaconf.dictconfig"]
    with pytest.raises(pickle.UnpicklingError):  # the reason a fallback is needed at all
        torch.load(path, weights_only=True)
    default = C.load_model(path)
    torch.testing.assert_close(logits_of(default), logits_of(ema_model), rtol=0, atol=0)
    regular = C.load_model(path, ema=False)
    torch.testing.assert_close(logits_of(regular), logits_of(small), rtol=0, atol=0)


def test_ema_requested_but_absent(small, tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"model": official_state(small)}, path)
    with pytest.raises(CheckpointError, match="no EMA weights"):
        C.read_checkpoint(path, ema=True)


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"model": {"encoder.x": torch.zeros(1)}, "args": Payload()}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        C.read_checkpoint(path)
    assert not marker.exists()


def test_mmpretrain_and_hf_layouts(small, tmp_path):
    sd = official_state(small)
    mm = {"model." + _to_mm(k): v for k, v in sd.items()}
    torch.save({"state_dict": mm, "meta": {"note": "openmmlab"}}, tmp_path / "mm.pth")
    ck = C.read_checkpoint(tmp_path / "mm.pth")
    assert (ck.format, ck.meta["layout"]) == ("mmpretrain", "mmpretrain")
    torch.testing.assert_close(logits_of(C.model_from_checkpoint(ck)), logits_of(small))

    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    hf = {_to_hf(k): v.clone() for k, v in sd.items()}
    save_file({k: v.contiguous() for k, v in hf.items()
               if k not in ("decoder.embed_tokens.weight", "decoder.output_projection.weight")},
              hf_dir / "model.safetensors")
    (hf_dir / "config.json").write_text(json.dumps({"model_type": "ofa"}))
    ck = C.read_checkpoint(hf_dir)
    assert (ck.format, ck.meta["layout"]) == ("hf", "hf")
    torch.testing.assert_close(logits_of(C.model_from_checkpoint(ck)), logits_of(small))


def _to_mm(key):
    # official -> mmpretrain names, written out independently of ofa.checkpoints
    # (test_parity also uses the oracle's own mapping)
    table = {"encoder": {"self_attn": "attn", "self_attn_layer_norm": "attn_ln",
                         "attn_ln": "attn_mid_ln", "ffn_layernorm": "ffn_mid_ln",
                         "final_layer_norm": "ffn_ln"},
             "decoder": {"self_attn_layer_norm": "self_attn_ln", "self_attn_ln": "self_attn_mid_ln",
                         "encoder_attn": "cross_attn", "encoder_attn_layer_norm": "cross_attn_ln",
                         "cross_attn_ln": "cross_attn_mid_ln", "ffn_layernorm": "ffn_mid_ln",
                         "final_layer_norm": "ffn_ln"}}
    parts = key.split(".")
    if len(parts) > 3 and parts[1] == "layers":
        parts[3] = table[parts[0]].get(parts[3], parts[3])
        return ".".join(parts)
    top = {"encoder.type_embedding": "encoder.embed_type",
           "encoder.layernorm_embedding": "encoder.embedding_ln",
           "encoder.patch_layernorm_embedding": "encoder.image_embedding_ln",
           "encoder.layer_norm": "encoder.final_ln", "decoder.layer_norm": "decoder.final_ln",
           "decoder.layernorm_embedding": "decoder.embedding_ln",
           "decoder.code_layernorm_embedding": "decoder.code_embedding_ln"}
    head = ".".join(parts[:2])
    return top[head] + "." + ".".join(parts[2:]) if head in top else key


def _to_hf(key):
    table = {"encoder": {"attn_ln": "self_attn_mid_layer_norm", "ffn_layernorm": "ffn_layer_norm"},
             "decoder": {"self_attn_ln": "self_attn_mid_layer_norm", "encoder_attn": "cross_attn",
                         "encoder_attn_layer_norm": "cross_attn_layer_norm",
                         "cross_attn_ln": "cross_attn_mid_layer_norm",
                         "ffn_layernorm": "ffn_layer_norm"}}
    parts = key.split(".")
    if len(parts) > 3 and parts[1] == "layers":
        parts[3] = table[parts[0]].get(parts[3], parts[3])
    return ".".join(parts)


def test_damaged_files_give_one_clear_error(small, tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"model": official_state(small)}, good)
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all" * 10)
    for name in ("trunc.pt", "junk.pt"):
        with pytest.raises(CheckpointError, match="cannot read"):
            C.read_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="not found"):
        C.read_checkpoint(tmp_path / "missing.pt")
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an OFA state dict"):
        C.read_checkpoint(tmp_path / "other.pt")


def test_missing_and_mismatched_keys_are_named(small, tmp_path):
    sd = official_state(small)
    del sd["decoder.layers.1.fc1.weight"]
    sd["encoder.unexpected.weight"] = torch.zeros(3)
    model = OFAModel(tiny_config())
    with pytest.raises(CheckpointError) as e:
        C.load_weights(model, C.to_official_keys(sd)[0])
    msg = str(e.value)
    assert "1 missing keys: decoder.layers.1.fc1.weight" in msg
    assert "1 unexpected keys: encoder.unexpected.weight" in msg
    bigger = OFAModel(tiny_config(ffn_dim=256))
    with pytest.raises(CheckpointError, match=r"shape mismatches: .*fc1.weight: checkpoint "
                                              r"\(128, 64\) vs model \(256, 64\)"):
        C.load_weights(bigger, C.to_official_keys(official_state(small))[0])


def test_untied_embeddings_are_rejected(small, tmp_path):
    sd = official_state(small)
    sd["decoder.embed_tokens.weight"] = sd["encoder.embed_tokens.weight"] + 1
    with pytest.raises(CheckpointError, match="differs"):
        C.to_official_keys(sd)


def test_convert_cli_round_trip(small, tmp_path, bpe_dir, capsys):
    src = tmp_path / "ckpt.pt"
    torch.save({"model": official_state(small)}, src)
    dst = tmp_path / "native"
    assert cli_main(["convert", str(src), str(dst), "--vocab", str(bpe_dir)]) == 0
    assert "fairseq" in capsys.readouterr().out
    assert sorted(p.name for p in dst.iterdir()) == ["config.json", "merges.txt",
                                                      "model.safetensors", "vocab.json"]
    assert C.detect_format(dst) == "native"
    torch.testing.assert_close(logits_of(C.load_model(dst)), logits_of(small), rtol=0, atol=0)
    # refuses to overwrite, and without tokenizer files says how to get them
    assert cli_main(["convert", str(src), str(dst), "--vocab", str(bpe_dir)]) == 1
    assert "not empty" in capsys.readouterr().err
    assert cli_main(["convert", str(src), str(tmp_path / "n2")]) == 1
    assert "--vocab" in capsys.readouterr().err
    assert cli_main(["convert", str(tmp_path / "nope.pt"), str(tmp_path / "n3")]) == 1
    assert capsys.readouterr().err.count("\n") == 1  # one line, no traceback


def test_dtype_and_device_on_load(small, tmp_path):
    C.save_native(small, tmp_path / "n")
    m = C.load_model(tmp_path / "n", dtype=torch.bfloat16)
    assert m.embed_tokens.weight.dtype == torch.bfloat16 and not m.training
    # cast while copied in: the same values as loading in fp32 and converting afterwards
    converted = C.load_model(tmp_path / "n").to(torch.bfloat16).state_dict()
    for k, v in m.state_dict().items():
        assert v.dtype == converted[k].dtype and torch.equal(v, converted[k]), k


@pytest.mark.parametrize("layout", ["mmpretrain", "hf"])
def test_convert_cli_other_layouts(small, tmp_path, bpe_dir, layout, capsys):
    sd = official_state(small)
    if layout == "mmpretrain":
        src = tmp_path / "weights.pth"
        torch.save({"model." + _to_mm(k): v for k, v in sd.items()}, src)
        extra = ["--vocab", str(bpe_dir)]
    else:  # an HF folder ships its own vocab.json + merges.txt: no --vocab needed
        src = tmp_path / "hf"
        src.mkdir()
        torch.save({_to_hf(k): v for k, v in sd.items()}, src / "pytorch_model.bin")
        (src / "config.json").write_text(json.dumps({"model_type": "ofa"}))
        from ofa.tokenizer import OFATokenizer

        OFATokenizer.from_dir(bpe_dir).save(src)
        extra = []
    dst = tmp_path / "native"
    assert cli_main(["convert", str(src), str(dst), *extra]) == 0
    assert f"({layout}," in capsys.readouterr().out
    torch.testing.assert_close(logits_of(C.load_model(dst)), logits_of(small), rtol=0, atol=0)


def test_a_loaded_model_does_not_depend_on_its_mapped_file(small, tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": official_state(small)}, path)
    ckpt = C.read_checkpoint(path)
    model = C.model_from_checkpoint(ckpt)
    assert model.decoder.embed_tokens.weight is model.encoder.embed_tokens.weight
    mapped = ckpt.state_dict["encoder.embed_tokens.weight"]
    assert model.encoder.embed_tokens.weight.data_ptr() != mapped.data_ptr()  # copied
    del ckpt, mapped
    path.write_bytes(b"overwritten")  # the user saves over the file: the model is unaffected
    torch.testing.assert_close(logits_of(model), logits_of(small), rtol=0, atol=0)
    legacy = tmp_path / "legacy.pt"  # the pre-1.6 format cannot be mapped: read as before
    torch.save({"model": official_state(small)}, legacy, _use_new_zipfile_serialization=False)
    torch.testing.assert_close(logits_of(C.load_model(legacy)), logits_of(small), rtol=0, atol=0)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's VmHWM")
def test_unused_tensors_of_a_checkpoint_are_never_read(small, tmp_path):
    unused_mb = 128  # an optimizer state: its pages must never be read into memory
    plain, extra = tmp_path / "plain.pt", tmp_path / "with-optimizer.pt"
    torch.save({"model": official_state(small)}, plain)
    torch.save({"model": official_state(small),
                "last_optimizer_state": {"exp_avg": torch.ones(unused_mb << 18)}}, extra)
    # VmHWM: this process's peak resident memory (ru_maxrss would carry pytest's over exec)
    code = ("import re, sys\nfrom ofa.checkpoints import load_model\n"
            "def peak_kb():\n"
            "    return int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])\n"
            "before = peak_kb()\nload_model(sys.argv[1])\nprint((peak_kb() - before) // 1024)")

    def grown_mb(path):
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                             text=True, check=True)
        return int(out.stdout.strip())

    base, with_unused = grown_mb(plain), grown_mb(extra)
    assert with_unused - base < unused_mb // 8, f"{with_unused} MB vs {base} MB without it"


# ---------------------------------------------------------------- hostile and damaged files
def nested_shared_lists(depth):
    a = []
    for _ in range(depth):
        a = [a, a]
    return a


def test_shared_nesting_in_the_training_config_is_converted_once(small, tmp_path, monkeypatch):
    from ofa.safe_unpickle import _ConfigConverter

    # the Namespace (not weights_only-loadable) holds lists shared 45 deep: ~2 kB pickled,
    # 2**46 lists if every reference were walked again
    path = tmp_path / "laughs.pt"
    torch.save({"model": official_state(small),
                "args": argparse.Namespace(arch="ofa_tiny", code_image_size=256,
                                           laughs=nested_shared_lists(45))}, path)
    monkeypatch.setattr(_ConfigConverter, "max_values", 500)
    ckpt = C.read_checkpoint(path)
    assert ckpt.config.code_image_size == 256
    deep = tmp_path / "deep.pt"
    nested = []
    for _ in range(150):
        nested = [nested]
    torch.save({"model": official_state(small), "args": argparse.Namespace(x=nested)}, deep)
    with pytest.raises(CheckpointError, match="deep.pt: .*nests deeper than 100 levels"):
        C.read_checkpoint(deep)


def test_views_larger_than_their_data_are_refused(small, tmp_path):
    sd = official_state(small)
    # a stride-0 view: one stored float shown as 10**6 rows (comparing it would take ages)
    sd["encoder.embed_tokens.weight"] = torch.zeros(1).expand(10**6, 64)
    torch.save({"model": sd}, tmp_path / "view.pt")
    with pytest.raises(CheckpointError, match="more elements than its data holds"):
        C.read_checkpoint(tmp_path / "view.pt")


def test_sizes_from_keys_and_shapes_are_bounded(small, tmp_path):
    sd = official_state(small)
    sd["encoder.layers.100000.fc1.weight"] = torch.zeros(1)
    torch.save({"model": sd}, tmp_path / "layers.pt")
    with pytest.raises(CheckpointError, match="encoder_layers must be between 1 and 256"):
        C.read_checkpoint(tmp_path / "layers.pt")


def test_a_damaged_tensor_is_named_not_used_to_size_the_model(small, tmp_path):
    sd = official_state(small)
    bad = torch.zeros(sd["encoder.embed_tokens.weight"].shape[0], 63)
    sd["encoder.embed_tokens.weight"] = sd["decoder.embed_tokens.weight"] = bad
    sd["decoder.output_projection.weight"] = bad
    torch.save({"model": sd}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as e:
        C.read_checkpoint(tmp_path / "bad.pt")
    msg = str(e.value)
    assert "encoder.embed_tokens.weight (59457, 63)" in msg and "give 64" in msg
    assert "layer_norm" not in msg.split("give")[0]  # the right tensors are not blamed


def test_a_config_of_another_size_is_reported_before_allocating(small, tmp_path):
    C.save_native(small, tmp_path / "n")
    cfg_file = tmp_path / "n" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["model"].update(d_model=16384, ffn_dim=65536, head_dim=None)  # about 1.6 TB of fp32
    cfg_file.write_text(json.dumps(cfg))
    sizes = (r"another size \(head_dim 16, d_model 64, ffn_dim 128\) than the config says "
             r"\(head_dim 4096, d_model 16384, ffn_dim 65536\)")
    with pytest.raises(CheckpointError, match=sizes):
        C.load_model(tmp_path / "n")
    bigger = OFAModel(tiny_config(ffn_dim=256))  # load_weights itself says the same
    with pytest.raises(CheckpointError, match=r"ffn_dim 128\) than the config says \(ffn_dim 256"):
        C.load_weights(bigger, C.to_official_keys(official_state(small))[0])


def test_a_native_folder_may_store_only_some_embedding_rows(small, tmp_path):
    """Format 2: the rows named are stored, the others load as zeros; the rest of the model and
    its outputs over the kept ids are unchanged. A damaged row list is one clear error."""
    keep = [0, 1, 2, 3, 5, 6, 7, 9, 10, 300]
    out = C.save_native(small, tmp_path / "rows", embedding_rows=keep + [7])
    assert json.loads((out / "config.json").read_text())["ofa_format"] == 2
    whole = C.save_native(small, tmp_path / "whole")
    assert json.loads((whole / "config.json").read_text())["ofa_format"] == 1
    assert (out / "model.safetensors").stat().st_size < (whole / "model.safetensors").stat().st_size
    loaded = C.load_model(out)
    table, original = loaded.embed_tokens.weight, small.embed_tokens.weight
    assert torch.equal(table[keep], original[keep])
    others = torch.ones(table.shape[0], dtype=torch.bool)
    others[keep] = False
    assert not table[others].any()
    # logits_of reads ids 0, 2, 5-7, 9, 10 only: the same over the kept columns
    assert torch.allclose(logits_of(loaded)[..., keep], logits_of(small)[..., keep], atol=1e-6)

    from safetensors.torch import load_file
    state = load_file(str(out / "model.safetensors"))
    for rows, message in ((torch.tensor([0, 1]), "does not name one id per row"),
                          (torch.tensor(keep[:-1] + [10**6]), "distinct int64 ids below"),
                          (torch.tensor(keep[:-1] + [9]), "distinct int64 ids below")):
        save_file({**state, C.EMBEDDING_ROWS: rows}, str(out / "model.safetensors"))
        with pytest.raises(CheckpointError, match=message):
            C.load_model(out)
    with pytest.raises(InputError, match="embedding_rows must name ids"):
        C.save_native(small, tmp_path / "bad", embedding_rows=[10**6])
