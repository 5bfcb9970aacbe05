"""Shared pytest fixtures.

Reference data (official BPE files, oracle cases) lives in a ``shared`` folder next to the repo
(``<repo>/../shared``); tests that need it skip when it is absent.
"""

from pathlib import Path

import pytest

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
BPE_FILES = ("encoder.json", "vocab.bpe", "dict.txt")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``<repo>/../shared``; skips the test when the folder is missing."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"reference data folder not found: {SHARED_DIR}")
    return SHARED_DIR


@pytest.fixture(scope="session")
def bpe_dir(shared_dir: Path) -> Path:
    """Folder with the official OFA BPE files (encoder.json, vocab.bpe, dict.txt)."""
    folder = shared_dir / "bpe"
    missing = [f for f in BPE_FILES if not (folder / f).is_file()]
    if missing:
        pytest.skip(f"official BPE files missing in {folder}: {', '.join(missing)}")
    return folder


@pytest.fixture(scope="session")
def oracle_dir(shared_dir: Path) -> Path:
    """The reference-output folder (synthesized-weight recipe, key maps, stored cases)."""
    folder = shared_dir / "oracle"
    if not (folder / "cases" / "index.json").is_file():
        pytest.skip(f"oracle cases not found in {folder}")
    return folder


@pytest.fixture(scope="session")
def synth(oracle_dir: Path):
    """The oracle's ``synth_weights`` module (weight recipe + its own key-layout mapping)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("oracle_synth_weights",
                                                  oracle_dir / "synth_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def synth_state(oracle_dir: Path, synth):
    """``synth_state(config)``: mmpretrain-named synthesized weights (salt v2), cached."""
    cache: dict = {}

    def make(config: str) -> dict:
        if config not in cache:
            cache.clear()  # keep at most one size in memory (base is 730 MB)
            rows = synth.read_keys(oracle_dir / "keys" / f"{config}.mmpretrain.tsv")
            cache[config] = synth.synth_state_dict(rows, "v2")
        return cache[config]

    return make


def tiny_config(**overrides):
    """A few-MB OFA for fast unit tests (2+2 layers, 8-wide ResNet with one block per stage)."""
    from ofa.model import OFAConfig

    base = dict(d_model=64, encoder_layers=2, decoder_layers=2, attention_heads=4, ffn_dim=128,
                resnet_layers=(1, 1, 1), resnet_width=8)
    base.update(overrides)
    return OFAConfig(**base)


def text_batch(lengths, vocab=500, seed=0):
    """Right-padded random token rows [BOS, ids in 4..vocab, EOS] of the given lengths."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), max(lengths)), 1)  # PAD
    for i, n in enumerate(lengths):
        ids[i, 0], ids[i, n - 1] = 0, 2
        ids[i, 1:n - 1] = torch.randint(4, vocab, (n - 2,), generator=g)
    return ids


@pytest.fixture(scope="module")
def tokenizer(bpe_dir: Path):
    """The official OFA tokenizer (for the featurization and batching tests)."""
    from ofa.tokenizer import OFATokenizer

    return OFATokenizer.from_dir(bpe_dir)


@pytest.fixture()
def image(tmp_path: Path) -> str:
    """A 64 x 48 red PNG file."""
    from PIL import Image

    path = tmp_path / "img.png"
    Image.new("RGB", (64, 48), (200, 10, 10)).save(path)
    return str(path)
