"""ofa.locate.locate_model: the documented order from a name to a checkpoint path (the
downloads themselves: tests/test_download.py and tests/test_hub.py)."""

from __future__ import annotations

import socket

import pytest

from ofa import download as D
from ofa.demo import DEMO_DIR
from ofa.errors import InputError
from ofa.locate import locate_model


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """Every remote look-up recorded instead of made; a dead mirror catches any other."""
    calls = []
    monkeypatch.setenv("OFA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OFA_MIRROR", _dead_url())
    monkeypatch.setenv("HF_ENDPOINT", _dead_url())
    monkeypatch.setattr(D, "fetch_pretrained",
                        lambda name, progress=True: calls.append(("registry", name)) or
                        tmp_path / "registry" / name)
    monkeypatch.setattr(D, "fetch_hub_model",
                        lambda repo, progress=True: calls.append(("hub", repo)) or
                        tmp_path / "hub" / repo)
    return calls


def test_an_existing_path_wins(tmp_path, monkeypatch, offline):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"")
    assert locate_model(ckpt) == ckpt
    assert locate_model(str(tmp_path)) == tmp_path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ofa-base").mkdir()  # a folder named like a registry entry
    assert locate_model("ofa-base").resolve() == tmp_path / "ofa-base"
    (tmp_path / "Me").mkdir()
    (tmp_path / "Me" / "my-ofa").mkdir()  # a clone of a hub repo
    assert locate_model("Me/my-ofa").resolve() == tmp_path / "Me" / "my-ofa"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert locate_model("~/model.pt") == ckpt
    assert offline == []


def test_registry_names(offline):
    # bundled: the package folder, nothing fetched
    assert locate_model("shapes-demo") == DEMO_DIR
    assert locate_model("SHAPES_DEMO") == DEMO_DIR
    assert offline == []
    # others: downloaded and converted once, by canonical name, whatever alias was given
    locate_model("caption_base_best.pt", progress=False)
    locate_model("OFA-Sys/ofa-base", progress=False)  # a hub id the registry knows
    locate_model("https://ofa-beijing.oss-cn-beijing.aliyuncs.com/checkpoints/ofa_large.pt")
    assert offline == [("registry", "ofa-base-caption"), ("registry", "ofa-base-hf"),
                       ("registry", "ofa-large")]


def test_other_hub_ids(offline, tmp_path):
    assert locate_model("Me/my-ofa") == tmp_path / "hub" / "Me/my-ofa"
    assert offline == [("hub", "Me/my-ofa")]


@pytest.mark.parametrize("name", ["runs/shapes/best", "missing.pt", "best.safetensors",
                                  "./ofa-base", "/no/such/folder", "pytorch_model.bin"])
def test_missing_paths(name, offline):
    with pytest.raises(InputError) as e:
        locate_model(name)
    assert str(e.value) == f"no such checkpoint file or folder: {name}"
    assert offline == []


def test_unknown_and_unsupported_names(offline):
    with pytest.raises(InputError, match="unknown pretrained model 'ofa-bsae'; did you mean "
                                         "ofa-base"):
        locate_model("ofa-bsae")
    with pytest.raises(InputError, match="not supported: it is a text-only language-model"):
        locate_model("bart_base.pt")
    for empty in (" ", None, 3, b"bytes"):
        with pytest.raises(InputError, match="non-empty"):
            locate_model(empty)
    for odd in ("x" * 5000, "a\0b", "~no-such-user-here/x.pt"):  # no path, no traceback
        with pytest.raises(InputError):
            locate_model(odd)
    assert offline == []
