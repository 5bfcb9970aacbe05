"""Damaged or hostile model files: one clear CheckpointError line, before any big allocation.

Each case goes through the public entry point (``ofa.load``) and the ``ofa convert`` command;
both must name the file and what is wrong with it, never show a traceback, and never build
a model the weights do not fit.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import ofa
from ofa.checkpoints import save_native
from ofa.cli import main
from ofa.errors import CheckpointError
from ofa.model import OFAModel

from conftest import tiny_config


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hostile") / "good"
    save_native(OFAModel(tiny_config()).eval(), folder)
    return folder


def _config(**fields) -> Callable[[dict], None]:
    def edit(cfg: dict) -> None:
        cfg["model"].update(fields)
    return edit


def _without(name: str) -> Callable[[dict], None]:
    def edit(cfg: dict) -> None:
        del cfg["model"][name]
    return edit


def _damaged(layer: int) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        state = load_file(folder / "model.safetensors")
        state[f"encoder.layers.{layer}.fc2.weight"] = torch.zeros(64, 127)
        save_file(state, folder / "model.safetensors")
    return damage


# name -> (what to change in a good native folder, what the error says)
CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "config not JSON": (lambda d: (d / "config.json").write_text("{not json"),
                        "config.json: not valid JSON"),
    "config empty": (lambda d: (d / "config.json").write_text(""), "not valid JSON"),
    "config a JSON list": (lambda d: (d / "config.json").write_text("[1, 2]"),
                           "config.json: expected a JSON object, found a list"),
    "negative size": (_config(d_model=-64), "config.json: invalid model config: d_model must "
                                            "be between 1 and 16384, got -64"),
    "enormous size": (_config(vocab_size=10**9), "vocab_size must be between 4 and 1000000"),
    "string size": (_config(ffn_dim="128"), "ffn_dim must be an integer, got '128'"),
    "unknown key": (_config(bogus=1), "unknown OFAConfig fields: ['bogus']"),
    "missing key": (_without("ffn_dim"), "missing OFAConfig fields: ['ffn_dim']"),
    "another size": (_config(encoder_layers=3), "another size (encoder_layers 2) than the "
                                                "config says (encoder_layers 3)"),
    # width 16384 with ffn 65536: about 30 GB, refused from the safetensors header alone
    "huge but in bounds": (_config(d_model=16384, ffn_dim=65536, head_dim=None),
                           "another size (head_dim 16, d_model 64, ffn_dim 128) than the "
                           "config says (head_dim 4096, d_model 16384, ffn_dim 65536)"),
    "zero-byte weights": (lambda d: (d / "model.safetensors").write_bytes(b""),
                          "model.safetensors: damaged safetensors file"),
    "truncated weights": (lambda d: (d / "model.safetensors").write_bytes(
        (d / "model.safetensors").read_bytes()[:5000]), "damaged safetensors file"),
    "missing weights": (lambda d: (d / "model.safetensors").unlink(),
                        "model.safetensors is missing"),
    # the wrong tensor is named, not the right ones (layer 0's also shows the ffn width)
    "damaged tensor": (_damaged(1), "1 shape mismatches: encoder.layers.1.fc2.weight: "
                                    "checkpoint (64, 127) vs model (64, 128)"),
    "damaged size tensor": (_damaged(0), "damaged weights: encoder.layers.0.fc2.weight "
                                         "(64, 127): the 2 other tensors that show the "
                                         "ffn_dim give 128"),
}


def _edit_json(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        cfg = json.loads((folder / "config.json").read_text())
        edit(cfg)
        (folder / "config.json").write_text(json.dumps(cfg))
    return apply


@pytest.fixture(params=sorted(CASES))
def hostile(request, native, tmp_path) -> tuple[Path, str]:
    change, message = CASES[request.param]
    folder = tmp_path / "model"
    shutil.copytree(native, folder)
    if change.__name__ == "edit":  # made by _config / _without: an edit of the JSON
        change = _edit_json(change)
    change(folder)
    return folder, message


def test_ofa_load_gives_one_checkpoint_error(hostile):
    folder, message = hostile
    with pytest.raises(CheckpointError) as e:
        ofa.load(folder, device="cpu")
    assert message in str(e.value) and str(folder) in str(e.value)
    assert "\n" not in str(e.value)


def test_ofa_convert_prints_one_line(hostile, tmp_path, capsys):
    folder, message = hostile
    assert main(["convert", str(folder), str(tmp_path / "out")]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("ofa: error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, message", [
    (b"", "damaged or not a PyTorch checkpoint (EOFError)"),
    (b"PK\x03\x04" + b"\x00" * 40, "damaged or not a PyTorch checkpoint"),
    (b"\x80\x02}q\x00.", "damaged or not a PyTorch checkpoint"),  # no legacy header
])
def test_empty_and_junk_pt_files(tmp_path, capsys, content, message):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        ofa.load(path, device="cpu")
    assert message in str(e.value) and str(path) in str(e.value)
    assert main(["convert", str(path), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err


def test_source_fields_that_steer_loading_are_checked(native, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(native, folder)
    cfg = json.loads((folder / "config.json").read_text())
    for source, message in (({"image_size": 10**7}, "source.image_size must be an integer"),
                            ([], '"source" must be an object'),
                            ({"task": 3}, "source.task must be a string")):
        (folder / "config.json").write_text(json.dumps({**cfg, "source": source}))
        with pytest.raises(CheckpointError, match=message):
            ofa.load(folder, device="cpu")
    for version in (99, "1", None):
        (folder / "config.json").write_text(json.dumps({**cfg, "ofa_format": version}))
        with pytest.raises(CheckpointError, match=f"ofa_format {version!r} is not"):
            ofa.load(folder, device="cpu")
