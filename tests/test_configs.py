"""The configs shipped in configs/ parse, and name only files their data commands write."""

from pathlib import Path

import pytest

from ofa.data.shapes import EXHAUSTIVE_SETS
from ofa.imagegen.train_vqgan import load_vqgan_train_config
from ofa.train.config import load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
VQGAN_CONFIGS = ("shapes-vqgan.yaml",)  # `ofa train-vqgan` configs; the others `ofa train`'s


@pytest.mark.parametrize("path", sorted(p for p in CONFIGS.glob("*.yaml")
                                        if p.name not in VQGAN_CONFIGS), ids=lambda p: p.name)
def test_config_parses(path: Path):
    cfg = load_config(path)
    assert cfg.data.train and cfg.max_updates > 0


@pytest.mark.parametrize("name", VQGAN_CONFIGS)
def test_vqgan_config_parses(name: str):
    cfg = load_vqgan_train_config(CONFIGS / name)
    assert cfg.steps > 0 and cfg.vqgan_config.grid_size > 0


def test_demo_config_reads_what_ofa_data_shapes_writes():
    cfg = load_config(CONFIGS / "shapes-demo.yaml")
    written = {f"{split}.jsonl" for split in ("train", "val", "test")} | {
        f"{split}_{name}.jsonl" for split in ("train", "val", "test")
        for name in (*EXHAUSTIVE_SETS, "imagine")}  # imagine: written with --vqgan
    for spec in [*cfg.data.train, *cfg.data.valid]:
        assert Path(spec.path).parent == Path("data/shapes") and Path(spec.path).name in written
