"""The VQGAN image tokenizer: parity with taming-transformers, and loading every layout.

Parity cases (``../shared/oracle/imagegen/cases/vq_*``) hold outputs of taming's own modules on
weights made by ``synth_vqgan.py`` next to them; the comparison rules are ``compare_ig.py``'s.
The loading tests use a tiny config and need nothing from ``../shared``.
"""

from __future__ import annotations

import json
import os
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ofa.errors import CheckpointError, InputError
from ofa.imagegen.vqgan import VQGAN, VQGANConfig
from ofa.imagegen.vqgan_io import (
    find_vqgan_files,
    infer_vqgan_config,
    load_vqgan,
    preprocess,
    read_vqgan_state_dict,
    to_pil,
    to_uint8,
    tokens_to_codes,
)

TINY = VQGANConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,),
                   resolution=16, z_channels=32, embed_dim=32, n_embed=64)


def taming_config(cfg: VQGANConfig, target: str = "taming.models.vqgan.GumbelVQ") -> dict:
    """A config file's content as taming's released model.yaml spells it."""
    params = {
        "kl_weight": 1.0e-08, "embed_dim": cfg.embed_dim, "n_embed": cfg.n_embed,
        "monitor": "val/rec_loss",
        "temperature_scheduler_config": {
            "target": "taming.lr_scheduler.LambdaWarmUpCosineScheduler",
            "params": {"warm_up_steps": 0, "max_decay_steps": 1000001, "lr_start": 0.9,
                       "lr_max": 0.9, "lr_min": 1.0e-06}},
        "ddconfig": {"double_z": False, "z_channels": cfg.z_channels,
                     "resolution": cfg.resolution, "in_channels": 3, "out_ch": 3, "ch": cfg.ch,
                     "ch_mult": list(cfg.ch_mult), "num_res_blocks": cfg.num_res_blocks,
                     "attn_resolutions": list(cfg.attn_resolutions), "dropout": 0.0},
        "lossconfig": {"target": "taming.modules.losses.vqperceptual.DummyLoss"},
    }
    if target.endswith("VQModel"):
        del params["temperature_scheduler_config"], params["kl_weight"]
    return {"model": {"base_learning_rate": 4.5e-06, "target": target, "params": params}}


def lightning_ckpt(state: dict[str, torch.Tensor]) -> dict:
    """What a taming training run saves: training-only tensors and state around the model."""
    sd = dict(state)
    sd["loss.logvar"] = torch.zeros(())
    sd["loss.discriminator.main.0.weight"] = torch.randn(8, 3, 4, 4)
    sd["loss.discriminator.main.3.num_batches_tracked"] = torch.zeros((), dtype=torch.int64)
    return {"epoch": 3, "global_step": 1200, "pytorch-lightning_version": "1.0.8",
            "state_dict": sd, "lr_schedulers": [],
            "optimizer_states": [{"state": {0: {"step": 5, "exp_avg": torch.zeros(4)}},
                                  "param_groups": [{"lr": 4.5e-06, "params": [0]}]}]}


@pytest.fixture(scope="module")
def tiny() -> VQGAN:
    torch.manual_seed(0)
    return VQGAN(TINY).eval()


@pytest.fixture(scope="module")
def tiny_codes() -> torch.Tensor:
    return torch.randint(0, TINY.n_embed, (2, 8, 8), generator=torch.Generator().manual_seed(1))


def write_layout(root: Path, layout: str, model: VQGAN) -> Path:
    """Write ``model`` in a published layout; returns what a user would pass to load_vqgan."""
    ckpt = lightning_ckpt(model.state_dict())
    cfg = taming_config(model.config)
    if layout == "taming":  # the release folder: configs/model.yaml, checkpoints/last.ckpt
        (root / "configs").mkdir(parents=True)
        (root / "checkpoints").mkdir()
        (root / "configs" / "model.yaml").write_text(yaml.safe_dump(cfg))
        torch.save(ckpt, root / "checkpoints" / "last.ckpt")
        return root
    if layout == "ofa":  # image_gen_*_best.zip: vqgan/{model.yaml,last.ckpt} beside clip/
        (root / "vqgan").mkdir(parents=True)
        (root / "clip").mkdir()
        cfg["model"]["target"] = "models.taming.models.vqgan.GumbelVQ"  # OFA's vendored path
        (root / "vqgan" / "model.yaml").write_text(yaml.safe_dump(cfg))
        torch.save(ckpt, root / "vqgan" / "last.ckpt")
        return root
    if layout == "modelscope":  # vqgan_config.json + vqgan_model.ckpt
        root.mkdir(parents=True)
        (root / "vqgan_config.json").write_text(json.dumps(cfg))
        torch.save(ckpt, root / "vqgan_model.ckpt")
        return root
    raise AssertionError(layout)


# ----------------------------------------------------------------------------- loading
@pytest.mark.parametrize("layout", ["taming", "ofa", "modelscope"])
def test_loads_each_layout(tmp_path: Path, layout: str, tiny: VQGAN,
                           tiny_codes: torch.Tensor) -> None:
    where = write_layout(tmp_path / layout, layout, tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a config is there: no inference note
        model = load_vqgan(where)
    assert model.config == TINY and not model.training
    with torch.no_grad():
        assert torch.equal(model.decode_codes(tiny_codes), tiny.decode_codes(tiny_codes))
    ckpt, _ = find_vqgan_files(where)
    model2 = load_vqgan(ckpt)  # the checkpoint file itself finds the config beside it
    assert model2.config == TINY


def test_checkpoint_without_config_is_inferred(tmp_path: Path, tiny: VQGAN,
                                               tiny_codes: torch.Tensor) -> None:
    torch.save(lightning_ckpt(tiny.state_dict()), tmp_path / "last.ckpt")
    with pytest.warns(UserWarning, match="inferred from the weights"):
        model = load_vqgan(tmp_path / "last.ckpt")
    # resolution is not in the weights: 256 with attention at 128 builds the same network
    assert model.config.ch_mult == TINY.ch_mult and model.config.attn_resolutions == (128,)
    with torch.no_grad():
        assert torch.equal(model.decode_codes(tiny_codes), tiny.decode_codes(tiny_codes))


def test_infers_the_gumbel_f8_architecture() -> None:
    with torch.device("meta"):
        state = VQGAN().state_dict()
    assert infer_vqgan_config(state) == VQGANConfig()
    assert len(state) == 301
    assert sum(v.numel() for v in state.values()) == 68_995_971  # taming's GumbelVQ count


def test_explicit_config(tmp_path: Path, tiny: VQGAN) -> None:
    torch.save({"state_dict": tiny.state_dict()}, tmp_path / "w.ckpt")
    (tmp_path / "elsewhere.yaml").write_text(yaml.safe_dump(taming_config(TINY)))
    assert load_vqgan(tmp_path / "w.ckpt", config=tmp_path / "elsewhere.yaml").config == TINY
    assert load_vqgan(tmp_path / "w.ckpt", config=TINY).config == TINY
    params = taming_config(TINY)["model"]["params"]
    assert load_vqgan(tmp_path / "w.ckpt", config=params).config == TINY
    with pytest.raises(CheckpointError, match="VQGAN config not found"):
        load_vqgan(tmp_path / "w.ckpt", config=tmp_path / "missing.yaml")


def test_bfloat16(tmp_path: Path, tiny: VQGAN, tiny_codes: torch.Tensor) -> None:
    torch.save({"state_dict": tiny.state_dict()}, tmp_path / "w.ckpt")
    model = load_vqgan(tmp_path / "w.ckpt", config=TINY, dtype=torch.bfloat16)
    assert model.quantize.codebook.dtype == torch.bfloat16
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    with torch.no_grad():
        out = model.decode_codes(tiny_codes)
        ref = tiny.decode_codes(tiny_codes)
        assert model.encode(preprocess(img, size=16)).shape == (1, 8, 8)  # float32 input cast
    assert out.dtype == torch.bfloat16 and float((out.float() - ref).abs().max()) < 0.1


def test_plain_vector_quantizer_variant(tmp_path: Path) -> None:
    cfg = VQGANConfig(**{**TINY.__dict__, "quantizer": "vq"})
    torch.manual_seed(2)
    model = VQGAN(cfg).eval()
    assert "quantize.embedding.weight" in model.state_dict()
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(
        taming_config(cfg, "taming.models.vqgan.VQModel")))
    torch.save(lightning_ckpt(model.state_dict()), tmp_path / "last.ckpt")
    loaded = load_vqgan(tmp_path)
    assert loaded.config.quantizer == "vq"
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        codes = loaded.encode(x)
        h = loaded.encode_to_prequant(x).permute(0, 2, 3, 1)
        nearest = torch.cdist(h.reshape(-1, 32), loaded.quantize.codebook).argmin(1)
    assert torch.equal(codes.flatten(), nearest)
    with pytest.raises(InputError, match="Gumbel"):
        loaded.encode(x, sample=True)


# ----------------------------------------------------------------------------- refusals
def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_vqgan(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match="no VQGAN checkpoint in it"):
        load_vqgan(tmp_path)


def test_strict_keys(tmp_path: Path, tiny: VQGAN) -> None:
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(taming_config(TINY)))
    sd = dict(tiny.state_dict())
    sd["quantize.extra.weight"] = torch.zeros(3)
    torch.save({"state_dict": sd}, tmp_path / "last.ckpt")
    with pytest.raises(CheckpointError, match=r"1 unexpected \(first: quantize.extra.weight\)"):
        load_vqgan(tmp_path)
    del sd["quantize.extra.weight"], sd["decoder.conv_out.bias"]
    torch.save({"state_dict": sd}, tmp_path / "last.ckpt")
    with pytest.raises(CheckpointError, match=r"1 missing \(first: decoder.conv_out.bias\)"):
        load_vqgan(tmp_path)


def test_wrong_shape_names_key_and_shapes(tmp_path: Path, tiny: VQGAN) -> None:
    big = VQGANConfig(**{**TINY.__dict__, "n_embed": 128})
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(taming_config(big)))
    torch.save({"state_dict": tiny.state_dict()}, tmp_path / "last.ckpt")
    with pytest.raises(CheckpointError) as e:
        load_vqgan(tmp_path)
    msg = str(e.value)
    assert "quantize.proj.weight has shape (64, 32, 1, 1)" in msg and "(128, 32, 1, 1)" in msg
    assert "\n" not in msg


def test_refuses_malicious_pickle(tmp_path: Path, tiny: VQGAN) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # unpickling would run `touch marker`
            return (os.system, (f"touch {marker}",))

    (tmp_path / "model.yaml").write_text(yaml.safe_dump(taming_config(TINY)))
    torch.save({"state_dict": tiny.state_dict(), "callbacks": Payload()}, tmp_path / "last.ckpt")
    with pytest.raises(CheckpointError, match="refusing") as e:
        load_vqgan(tmp_path)
    assert "\n" not in str(e.value)
    assert not marker.exists()


def test_bad_configs(tmp_path: Path, tiny: VQGAN) -> None:
    torch.save({"state_dict": tiny.state_dict()}, tmp_path / "last.ckpt")
    cfg_file = tmp_path / "model.yaml"
    cfg_file.write_text("model: [unclosed")
    with pytest.raises(CheckpointError, match="not valid YAML"):
        load_vqgan(tmp_path)
    cfg = taming_config(TINY)
    del cfg["model"]["params"]["ddconfig"]["ch"]
    cfg_file.write_text(yaml.safe_dump(cfg))
    with pytest.raises(CheckpointError, match="missing ch"):
        load_vqgan(tmp_path)
    cfg = taming_config(TINY, target="taming.models.vqgan.EMAVQ")
    cfg_file.write_text(yaml.safe_dump(cfg))
    with pytest.raises(CheckpointError, match="EMAVQ is not supported"):
        load_vqgan(tmp_path)
    cfg = taming_config(TINY)
    cfg["model"]["params"]["ddconfig"]["double_z"] = True
    cfg_file.write_text(yaml.safe_dump(cfg))
    with pytest.raises(CheckpointError, match="double_z"):
        load_vqgan(tmp_path)


def test_lightning_callbacks_keyed_by_class(tmp_path: Path, tiny: VQGAN,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """PyTorch-Lightning 1.x keys ``callbacks`` by the callback class (a pickled global
    ``pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint``); that is data, not code."""
    names = ("pytorch_lightning", "pytorch_lightning.callbacks",
             "pytorch_lightning.callbacks.model_checkpoint")
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    cls = type("ModelCheckpoint", (), {"__module__": names[-1]})
    sys.modules[names[-1]].ModelCheckpoint = cls  # type: ignore[attr-defined]
    ckpt = lightning_ckpt(tiny.state_dict())
    ckpt["callbacks"] = {cls: {"best_model_score": torch.tensor(0.5), "best_model_path": "x"}}
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(taming_config(TINY)))
    torch.save(ckpt, tmp_path / "last.ckpt")
    for name in names:
        monkeypatch.delitem(sys.modules, name)
    state = read_vqgan_state_dict(tmp_path / "last.ckpt")
    assert set(state) == set(tiny.state_dict())


# ----------------------------------------------------------------------------- behaviour
def test_codes_validation(tiny: VQGAN, tiny_codes: torch.Tensor) -> None:
    with torch.no_grad():
        flat = tiny.decode_codes(tiny_codes.view(2, 64))
        assert torch.equal(flat, tiny.decode_codes(tiny_codes))
        assert flat.shape == (2, 3, 16, 16)  # TINY downsamples by 2
        # a non-square grid is fine: the decoder is convolutional
        assert tiny.decode_codes(tiny_codes.view(2, 2, 32)).shape == (2, 3, 4, 64)
    for bad, match in [(tiny_codes.float(), "integers"), (tiny_codes + 64, r"\[0, 64\)"),
                       (tiny_codes - 1000, r"\[0, 64\)"),
                       (torch.zeros(2, 48, dtype=torch.long), "square"),
                       (tiny_codes[0, 0], r"\[B, H, W\]")]:
        with pytest.raises(InputError, match=match):
            tiny.decode_codes(bad)


def test_tokens_to_codes() -> None:
    codes = torch.randint(0, 8192, (2, 32, 32))
    tokens = torch.cat([codes.view(2, -1) + 50265, torch.full((2, 1), 2)], 1)
    assert torch.equal(tokens_to_codes(tokens), codes)
    assert torch.equal(tokens_to_codes(tokens[:, :-1]), codes)
    with pytest.raises(InputError):
        tokens_to_codes(tokens[:, :-1] - 50265)


def test_uint8_truncates_like_ofa() -> None:
    x = torch.tensor([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0, 2 * 127.9 / 255 - 1]).view(1, 1, 1, 7)
    x = x.expand(1, 3, 1, 7)
    u8 = to_uint8(x)
    assert u8.shape == (1, 1, 7, 3) and u8.dtype == torch.uint8
    ref = ((255 * ((x.numpy().clip(-1, 1) + 1.0) / 2.0)).astype(np.uint8)).transpose(0, 2, 3, 1)
    assert np.array_equal(u8.numpy(), ref)
    assert u8[0, 0, :, 0].tolist() == [0, 0, 127, 191, 255, 255, 127]
    img = to_pil(x[0])[0]
    assert img.mode == "RGB" and img.size == (7, 1)


def test_gumbel_sampling_is_seeded(tiny: VQGAN) -> None:
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        a = tiny.encode(x, sample=True, generator=torch.Generator().manual_seed(3))
        b = tiny.encode(x, sample=True, generator=torch.Generator().manual_seed(3))
        c = tiny.encode(x, sample=True, generator=torch.Generator().manual_seed(4))
        argmax = tiny.encode(x)
        h = tiny.encode_to_prequant(x)
        many = tiny.quantize.indices(h.expand(400, -1, -1, -1), sample=True,
                                     generator=torch.Generator().manual_seed(5))
        probs = tiny.quantize.proj(h).softmax(1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert argmax.shape == a.shape == (1, 8, 8)
    # the draws follow softmax(logits): how often the top code comes out, against its odds
    top_p = float(probs.max(1).values.mean())
    hit = float((many == argmax).float().mean())
    assert abs(hit - top_p) < 0.02, (hit, top_p)


def test_preprocess_modes() -> None:
    img = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    assert preprocess(img, size=32).shape == (1, 3, 32, 32)
    assert preprocess([img, img], size=32, resize="center_crop").shape == (2, 3, 32, 32)
    x = preprocess(img, size=32, resize="shorter_side")  # torchvision Resize(32): 48 x 32
    assert x.shape == (1, 3, 32, 48) and -1 <= float(x.min()) and float(x.max()) <= 1
    with pytest.raises(InputError, match="aspect"):
        preprocess([img, img.transpose(1, 0, 2)], size=32, resize="shorter_side")
    with pytest.raises(InputError, match="resize"):
        preprocess(img, resize="stretch")  # type: ignore[arg-type]


def test_config_validation() -> None:
    with pytest.raises(InputError, match="multiple of the 32"):
        VQGANConfig(ch=48)
    with pytest.raises(InputError, match="embed_dim == z_channels"):
        VQGANConfig(embed_dim=128)
    assert VQGANConfig().grid_size == 32 and VQGANConfig().downsample_factor == 8


# ----------------------------------------------------------------------------- parity
@pytest.fixture(scope="module")
def oracle(shared_dir: Path) -> tuple[Path, types.ModuleType]:
    folder = shared_dir / "oracle" / "imagegen"
    if not (folder / "cases" / "vq_decode.safetensors").is_file():
        pytest.skip(f"imagegen oracle cases not found in {folder}")
    sys.path.insert(0, str(folder))  # synth_vqgan.py (weights) and compare_ig.py (rules)
    try:
        import compare_ig
        import synth_vqgan
    finally:
        sys.path.remove(str(folder))
    return folder / "cases", types.SimpleNamespace(CI=compare_ig, SV=synth_vqgan)


@pytest.fixture(scope="module")
def full(oracle, tmp_path_factory: pytest.TempPathFactory) -> VQGAN:
    """vqgan_gumbel_f8 with the oracle's weights, loaded from a taming-layout release folder."""
    cases, mods = oracle
    root = tmp_path_factory.mktemp("vqgan_gumbel_f8")
    (root / "configs").mkdir()
    (root / "checkpoints").mkdir()
    (root / "configs" / "model.yaml").write_text(yaml.safe_dump(taming_config(VQGANConfig())))
    mods.SV.write_ckpt("v-ig1", root / "checkpoints" / "last.ckpt")  # with fake loss.* tensors
    model = load_vqgan(root)
    (root / "checkpoints" / "last.ckpt").unlink()  # 276 MB; the model holds a copy
    meta = json.loads((cases / "vq_decode.json").read_text())
    assert mods.SV.state_dict_digest(model.state_dict()) == meta["weights"]["state_dict_sha256"]
    return model


def _load_case(cases: Path, name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(cases / f"{name}.safetensors")


class Recorder:
    """Outputs of the named submodules (taming's names are ours, so the oracle's apply)."""

    def __init__(self, model: VQGAN, case_json: Path) -> None:
        names = json.loads(case_json.read_text())["activations"]["stats"]
        modules = dict(model.named_modules())
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = [modules[n].register_forward_hook(self._keep(n)) for n in names]

    def _keep(self, name: str):
        def hook(module, inputs, output):
            self.outputs[name] = output.detach()
        return hook

    def check(self, case: Path, compare_ig: types.ModuleType) -> list[str]:
        for h in self.handles:
            h.remove()
        failures = []
        for name, act in self.outputs.items():
            failures += compare_ig.check_activation(str(case), name, act)["failures"]
        return failures


def test_decode_parity(oracle, full: VQGAN) -> None:
    cases, mods = oracle
    t = _load_case(cases, "vq_decode")
    codes = tokens_to_codes(t["ofa_hyp_tokens"])  # OFA's generator output -> codes
    assert torch.equal(codes, t["codes"])
    rec = Recorder(full, cases / "vq_decode.json")
    with torch.no_grad():
        out = full.decode_codes(codes)
    assert len(rec.outputs) == 13 and not rec.check(cases / "vq_decode", mods.CI)
    r = mods.CI.check_vq_decode(str(cases / "vq_decode"), out, to_uint8(out))
    print("vq_decode", r)
    assert r["ok"], r["failures"]


def test_encode_parity(oracle, full: VQGAN) -> None:
    cases, mods = oracle
    t = _load_case(cases, "vq_encode")
    x = preprocess([t["image_orig_uint8_0"].numpy(), t["image_orig_uint8_1"].numpy()])
    assert torch.equal(x, t["x"])  # PIL LANCZOS to 256x256, ToTensor, 2x - 1: bit-identical
    rec = Recorder(full, cases / "vq_encode.json")
    with torch.no_grad():
        encoder_out = full.encoder(x)
        h = full.quant_conv(encoder_out)  # encode_to_prequant(x), keeping encoder_out
        logits = full.quantize.proj(h)
        codes = full.quantize.indices(h)  # what full.encode(x) returns, without a second pass
        sampled = full.quantize.indices(h, sample=True, generator=torch.Generator().manual_seed(0))
    assert len(rec.outputs) == 12 and not rec.check(cases / "vq_encode", mods.CI)
    r = mods.CI.check_vq_encode(str(cases / "vq_encode"), encoder_out=encoder_out,
                                h_prequant=h, codes=codes, logits=logits)
    print("vq_encode", r, "codes equal", int((codes == t["codes_argmax"]).sum()), "/",
          codes.numel())
    assert r["ok"], r["failures"]
    # OFA's stochastic encode, same seed: the same draws as taming's torch.manual_seed(0) run
    assert float((sampled == t["codes_gumbel"]).float().mean()) > 0.99


def test_roundtrip_parity(oracle, full: VQGAN) -> None:
    cases, mods = oracle
    t = _load_case(cases, "vq_roundtrip")
    with torch.no_grad():
        out = full.decode_codes(t["codes_argmax"])
    r = mods.CI.check_vq_decode(str(cases / "vq_roundtrip"), out, to_uint8(out))
    print("vq_roundtrip", r)
    assert r["ok"], r["failures"]
