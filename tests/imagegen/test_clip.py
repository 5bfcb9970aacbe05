"""CLIP reranker (ofa.imagegen.clip) against OpenAI's CLIP on synthesized ViT-B/16 weights.

Reference: ``shared/oracle/imagegen/cases/clip_vitb16.*`` (OpenAI's clip package, fp32 CPU) and the
weight recipe ``synth_clip.py`` beside it; tolerances from that folder's README. The full-size
model (600 MB) is synthesized once per module; the loader tests use a tiny CLIP.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ofa.errors import CheckpointError, InputError
from ofa.imagegen.clip import CLIP, CLIPConfig, CLIPReranker, CLIPTokenizer, preprocess
from ofa.imagegen.clip_io import find_vocab, is_torchscript_archive, read_clip_state_dict

TINY_MERGES = ["t h", "th e</w>", "c a", "ca t</w>"]
TINY = dict(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64,
            vision_patch_size=8, context_length=16, vocab_size=512 + len(TINY_MERGES) + 2,
            transformer_width=64, transformer_heads=1, transformer_layers=2)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def oracle(shared_dir: Path) -> Path:
    folder = shared_dir / "oracle" / "imagegen"
    if not (folder / "cases" / "clip_vitb16.safetensors").is_file():
        pytest.skip(f"CLIP oracle case not found in {folder}")
    return folder


@pytest.fixture(scope="module")
def synth_clip(oracle: Path):
    spec = importlib.util.spec_from_file_location("oracle_synth_clip", oracle / "synth_clip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def case(oracle: Path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    base = oracle / "cases" / "clip_vitb16"
    return load_file(f"{base}.safetensors"), json.loads(Path(f"{base}.json").read_text())


@pytest.fixture(scope="module")
def weights(synth_clip, case, tmp_path_factory):
    """The oracle's ViT-B/16 weights (digest checked) as a plain state-dict file (600 MB,
    removed after the module: pytest keeps its last temporary folders)."""
    meta = case[1]["weights"]
    state = synth_clip.synth_state_dict(meta["salt"])
    assert synth_clip.state_dict_digest(state) == meta["state_dict_sha256"]
    path = tmp_path_factory.mktemp("clip") / "clip_vitb16_sd.pt"
    torch.save(state, path)
    del state
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def reranker(weights: Path) -> CLIPReranker:
    torch.manual_seed(0)
    return CLIPReranker.from_file(weights, vocab=False)


@pytest.fixture(scope="module")
def images(case) -> list[torch.Tensor]:
    return [case[0][f"image_uint8_{i}"] for i in range(4)]


@pytest.fixture(scope="module")
def tiny_vocab(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vocab") / "bpe_tiny.txt.gz"
    path.write_bytes(gzip.compress("\n".join(["#version: 0.2", *TINY_MERGES, ""]).encode()))
    return path


@pytest.fixture(scope="module")
def tiny_state(synth_clip) -> dict[str, torch.Tensor]:
    return synth_clip.synth_state_dict("tiny", TINY)


def _save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


# ----------------------------------------------------------------------------- parity
def test_preprocess_matches_openai(case, images) -> None:
    tensors = case[0]
    pixels = preprocess(images)  # uint8 HWC tensors, one of them 400x600 (resize + crop)
    assert (pixels - tensors["pixel_values"]).abs().max() <= 1e-5
    as_pil = preprocess([Image.fromarray(im.numpy()) for im in images])
    assert torch.equal(as_pil, pixels)
    assert torch.equal(preprocess(torch.stack(images[:2])), pixels[:2])  # a [N, H, W, 3] batch


def test_features_match_openai(case, reranker, images) -> None:
    tensors = case[0]
    img = reranker.image_features(images)
    txt = reranker.text_features(tensors["tokens"])
    assert (img - tensors["image_features.openai"]).abs().max() <= 1e-4
    assert (txt - tensors["text_features.openai"]).abs().max() <= 1e-4
    img_n, txt_n = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    assert (img_n - tensors["image_features_normed.openai"]).abs().max() <= 1e-5
    assert (txt_n - tensors["text_features_normed.openai"]).abs().max() <= 1e-5
    cosine = img_n @ txt_n.T
    assert (cosine - tensors["cosine.openai"]).abs().max() <= 1e-5
    ranks = torch.argsort(-cosine.double(), dim=0, stable=True).T
    assert torch.equal(ranks, tensors["rank_images_per_caption.openai"])


def test_rerank_matches_openai(case, reranker, images) -> None:
    tensors = case[0]
    # caption 0 ranks the images 3, 1, 0, 2: drop image 2, give each kind of input once
    assert tensors["rank_images_per_caption.openai"][0].tolist() == [3, 1, 0, 2]
    mixed = [images[0], Image.fromarray(images[1].numpy()), images[3].numpy()]
    best = reranker.rerank(mixed, tensors["tokens"][0], top=2)
    assert [i for i, _ in best] == [2, 1]
    for i, score in best:
        assert abs(score - float(tensors["cosine.openai"][[0, 1, 3][i], 0])) <= 1e-5


def test_rerank_keeps_input_order_on_ties(monkeypatch) -> None:
    r = CLIPReranker(CLIP(CLIPConfig(**_tiny_cfg())))
    monkeypatch.setattr(r, "scores", lambda images, text: torch.tensor([0.1, 0.3, 0.1, 0.3]))
    assert [i for i, _ in r.rerank([None] * 4, "x")] == [1, 3, 0, 2]
    assert r.rerank([None] * 4, "x", top=1) == [(1, pytest.approx(0.3))]
    with pytest.raises(InputError):
        r.rerank([None] * 4, "x", top=0)


def test_tokens_match_openai_with_real_vocab(case) -> None:
    vocab = find_vocab()
    if vocab is None:
        pytest.skip("CLIP's bpe_simple_vocab_16e6.txt.gz not found: `make install` installs "
                    "open_clip_torch (no deps) for it, or set OFA_CLIP_VOCAB")
    tensors, meta = case
    tok = CLIPTokenizer(vocab)
    assert [tok.encode(c) for c in meta["inputs"]["captions"]] == meta["inputs"]["bpe_ids"]
    assert torch.equal(tok(meta["inputs"]["captions"]), tensors["tokens"])


@pytest.mark.slow
def test_fp16_is_close_to_openai_fp16(case, weights, images) -> None:
    tensors = case[0]
    r16 = CLIPReranker.from_file(weights, vocab=False, dtype=torch.float16)
    img, txt = r16.image_features(images), r16.text_features(tensors["tokens"])
    assert (img - tensors["image_features.openai_fp16_cpu"]).abs().max() <= 1e-2
    assert (txt - tensors["text_features.openai_fp16_cpu"]).abs().max() <= 1e-2
    cosine = F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    assert (cosine - tensors["cosine.openai"]).abs().max() <= 1e-3
    ranks = torch.argsort(-cosine.double(), dim=0, stable=True).T
    assert torch.equal(ranks, tensors["rank_images_per_caption.openai"])


# ----------------------------------------------------------------------------- tokenizer
def test_tiny_vocab_tokenizer(tiny_vocab: Path) -> None:
    tok = CLIPTokenizer(tiny_vocab, context_length=16)
    # vocab: 256 byte symbols in bytes_to_unicode order ('!' = 0 ... 'c' = 66, 't' = 83), the
    # same with '</w>' (+256), the merges (512...), then SOT, EOT
    assert (tok.sot, tok.eot, tok.vocab_size) == (516, 517, 518)
    assert tok.encode("The  CAT") == [513, 515]
    assert tok.encode("cats") == [514, 83, 256 + 82]  # 'ca', 't', 's</w>' ('s' = 82)
    assert tok.encode("it’s") == tok.encode("it's")  # curly quote straightened, as ftfy does
    row = tok("the cat")[0]
    assert row[:4].tolist() == [516, 513, 515, 517] and not row[4:].any()
    with pytest.raises(InputError, match="more than CLIP's 16"):
        tok("the " * 15)


def test_vocab_errors(tmp_path: Path, tiny_state) -> None:
    weights = _save(tiny_state, tmp_path / "tiny.pt")
    with pytest.raises(CheckpointError, match="open_clip"):
        CLIPReranker.from_file(weights, vocab=tmp_path / "missing.txt.gz")
    bad = tmp_path / "bad.txt.gz"
    bad.write_bytes(gzip.compress(b"#version\nnot-a-pair-line with three\n"))
    with pytest.raises(CheckpointError, match="not a CLIP BPE merges file"):
        CLIPReranker.from_file(weights, vocab=bad)
    other = tmp_path / "other.txt.gz"
    other.write_bytes(gzip.compress(b"#version\na b\n"))
    with pytest.raises(CheckpointError, match="not this model's vocabulary"):
        CLIPReranker.from_file(weights, vocab=other)


# ----------------------------------------------------------------------------- loading
def _tiny_cfg() -> dict:
    return dict(embed_dim=TINY["embed_dim"], image_resolution=TINY["image_resolution"],
                vision_layers=TINY["vision_layers"], vision_width=TINY["vision_width"],
                vision_patch_size=TINY["vision_patch_size"],
                context_length=TINY["context_length"], vocab_size=TINY["vocab_size"],
                text_width=TINY["transformer_width"], text_layers=TINY["transformer_layers"])


def _openai_release_layout(state: dict[str, torch.Tensor]) -> CLIP:
    """A CLIP as OpenAI traced it: convert_weights' fp16 tensors + the three int buffers."""
    model = CLIP(CLIPConfig(**_tiny_cfg()))
    model.load_state_dict(state)
    for name, p in model.named_parameters():
        if (name in ("text_projection", "visual.proj", "visual.conv1.weight")
                or ".attn." in name or ".mlp." in name):
            p.data = p.data.half()
    for name, value in (("input_resolution", 32), ("context_length", 16), ("vocab_size", 518)):
        model.register_buffer(name, torch.tensor(value))
    return model.eval()


def test_torchscript_archive_loads_without_running_it(tmp_path: Path, tiny_state, tiny_vocab,
                                                      monkeypatch) -> None:
    if not hasattr(torch.jit, "trace_module"):
        pytest.skip("this torch cannot write TorchScript archives")
    model = _openai_release_layout(tiny_state)
    pixels = torch.rand(1, 3, 32, 32)
    tokens = torch.tensor([[516, 513, 515, 517] + [0] * 12])
    with warnings.catch_warnings(), torch.no_grad():  # tracing warns: not under test
        warnings.simplefilter("ignore")
        traced = torch.jit.trace_module(model, {"encode_image": (pixels,),
                                                "encode_text": (tokens,)}, check_trace=False)
    path = tmp_path / "ViT-tiny.pt"
    traced.save(str(path))
    assert is_torchscript_archive(path)
    with zipfile.ZipFile(path) as z:  # what a TorchScript archive holds
        assert any("/code/__torch__/" in n for n in z.namelist())
    monkeypatch.setattr(torch.jit, "load", _forbidden)  # nothing may compile its code
    state = read_clip_state_dict(path)
    assert state.keys() == tiny_state.keys()
    assert all(torch.equal(state[k], tiny_state[k]) for k in state)  # fp16-exact values
    r = CLIPReranker.from_file(path, vocab=tiny_vocab)
    with torch.no_grad():
        fp32 = CLIP(CLIPConfig(**_tiny_cfg()))
        fp32.load_state_dict(tiny_state)
        expected = fp32.encode_text(r.tokenizer("the cat"))
    assert torch.allclose(r.text_features("the cat"), expected, atol=1e-6, rtol=0)
    assert r.image_features([np.zeros((40, 60, 3), np.uint8)]).shape == (1, 32)


def test_plain_state_dict_forms_load(tmp_path: Path, tiny_state) -> None:
    wrapped = {"state_dict": {f"module.{k}": v for k, v in tiny_state.items()}, "epoch": 3}
    for path in (_save(tiny_state, tmp_path / "sd.pt"), _save(wrapped, tmp_path / "w.pt")):
        assert read_clip_state_dict(path).keys() == tiny_state.keys()
    from safetensors.torch import save_file

    save_file(tiny_state, tmp_path / "sd.safetensors")
    r = CLIPReranker.from_file(tmp_path / "sd.safetensors", vocab=False)
    assert r.model.config == CLIPConfig(**_tiny_cfg())


@pytest.mark.parametrize("change, message", [
    (lambda s: s.__setitem__("transformer.resblocks.1.mlp.c_fc.weight", torch.zeros(256, 32)),
     r"transformer\.resblocks\.1\.mlp\.c_fc\.weight has shape \(256, 32\), expected \(256, 64\)"),
    (lambda s: s.pop("visual.ln_post.bias"), r"visual\.ln_post\.bias is missing"),
    (lambda s: s.__setitem__("visual.extra", torch.zeros(1)), r"unexpected tensor visual\.extra"),
    (lambda s: s.pop("visual.conv1.weight"), r"no visual\.conv1\.weight"),
    (lambda s: s.__setitem__("visual.positional_embedding", torch.zeros(18, 64)),
     r"not a square grid"),
])
def test_misfit_weights_give_one_line(tmp_path: Path, tiny_state, change, message) -> None:
    state = dict(tiny_state)
    change(state)
    with pytest.raises(CheckpointError, match=message) as err:
        CLIPReranker.from_file(_save(state, tmp_path / "bad.pt"), vocab=False)
    assert "\n" not in str(err.value)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickles_are_refused(tmp_path: Path, tiny_state) -> None:
    marker = tmp_path / "pwned"
    archive = tmp_path / "evil_archive.pt"
    with zipfile.ZipFile(archive, "w") as z:  # TorchScript layout, code-running data.pkl
        z.writestr("evil/data.pkl", pickle.dumps(_Evil(marker), protocol=2))
        z.writestr("evil/constants.pkl", pickle.dumps((), protocol=2))
        z.writestr("evil/version", "3\n")
    assert is_torchscript_archive(archive)
    plain = _save({"w": _Evil(marker)}, tmp_path / "evil_sd.pt")
    for path in (archive, plain):
        with pytest.raises(CheckpointError, match="refusing") as err:
            CLIPReranker.from_file(path, vocab=False)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_archive_with_bad_tensor_data_is_refused(tmp_path: Path) -> None:
    # a module record with one fp16 tensor whose data entry is compressed (torch never does)
    src = tmp_path / "src.pt"
    torch.save({"w": torch.zeros(4, dtype=torch.float16)}, src)
    with zipfile.ZipFile(src) as z:
        prefix = z.namelist()[0].split("/")[0]
        entries = {n.split("/", 1)[1]: z.read(n) for n in z.namelist()}
    path = tmp_path / "bad_archive.pt"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            kind = zipfile.ZIP_DEFLATED if name.startswith("data/") else zipfile.ZIP_STORED
            z.writestr(f"{prefix}/{name}", data, compress_type=kind)
        z.writestr(f"{prefix}/constants.pkl", pickle.dumps((), protocol=2))
    with pytest.raises(CheckpointError, match="is not 8 stored bytes"):
        read_clip_state_dict(path)


def _forbidden(*args, **kwargs):
    raise AssertionError("torch.jit.load was called")
