"""Text-to-image registry entries against a file server on 127.0.0.1: a zip bundle (OFA
checkpoint + VQGAN + CLIP) unpacked safely and placed as ``vqgan/`` and ``clip/`` in the native
folder, a model-only entry that downloads its CLIP and reuses the bundle's VQGAN, and hostile or
damaged archives refused with one line."""

from __future__ import annotations

import argparse
import hashlib
import io
import socket
import stat
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

import ofa
from ofa import download as D
from ofa.checkpoints import read_checkpoint
from ofa.cli import main
from ofa.errors import CheckpointError, InputError
from ofa.model import OFAModel
from ofa.pretrained import Component, PretrainedModel, RemoteFile, register, unregister

from conftest import tiny_config
from tiny_imagegen import clip_vocab, clip_weights, torch_bytes, vqgan_ckpt, vqgan_yaml

LARGE, BASE = "test-large-imagegen", "test-base-imagegen"
HOST = "https://ofa.example.invalid"
ZIP_URL = f"{HOST}/checkpoints/image_gen_tiny_best.zip"
BASE_URL = f"{HOST}/checkpoints/image_gen_tiny_base_best.pt"
VOCAB_URL = "https://clip.example.invalid/openai/CLIP/main/clip/bpe_simple_vocab_16e6.txt.gz"
CLIP_URL = "https://clip.example.invalid/models/ViT-tiny.pt"
BPE = "/OFA-Sys/OFA/main/utils/BPE/"
# the OFA model decodes 4 x 4 codes (code_image_size 32); the tiny VQGAN doubles them


# ---------------------------------------------------------------------------- the server
class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        srv = self.server.state  # type: ignore[attr-defined]
        srv.requests.append(self.path)
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)  # Range ignored: the downloader then restarts from zero
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Server:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.state = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- the files
@pytest.fixture(scope="module")
def parts() -> dict[str, bytes]:
    """The published files, as bytes: OFA fairseq checkpoints, a taming VQGAN, CLIP + vocab."""
    torch.manual_seed(0)
    ofa_pt = torch_bytes({"model": OFAModel(tiny_config(code_image_size=32)).eval().state_dict(),
                        "args": argparse.Namespace(code_image_size=32)})
    return {"ofa": ofa_pt, "yaml": vqgan_yaml().encode(), "vqgan": vqgan_ckpt(),
            "clip": clip_weights(), "vocab": clip_vocab()}


def _zip(entries: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        zf.writestr(zipfile.ZipInfo("checkpoints/"), b"")
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _bundle_entries(parts) -> dict[str, bytes]:
    # under a top folder, as OFA's checkpoints/ layout: found by name wherever they are
    return {"checkpoints/image_gen_tiny_best.pt": parts["ofa"],
            "checkpoints/vqgan/last.ckpt": parts["vqgan"],
            "checkpoints/vqgan/model.yaml": parts["yaml"],
            "checkpoints/clip/ViT-tiny.pt": parts["clip"]}


@pytest.fixture(scope="module")
def bundle(parts) -> bytes:
    return _zip(_bundle_entries(parts))


def _remote(url: str, data: bytes) -> RemoteFile:
    return RemoteFile(url, url.rsplit("/", 1)[-1], sha256=hashlib.sha256(data).hexdigest(),
                      size=len(data))


@pytest.fixture
def entries(parts, tmp_path, monkeypatch):
    """Two registered entries shaped like ofa-large-image-gen and ofa-base-image-gen."""
    home = tmp_path / "ofa-home"
    monkeypatch.setenv("OFA_HOME", str(home))
    monkeypatch.delenv("OFA_MIRROR", raising=False)
    monkeypatch.delenv("OFA_CLIP_VOCAB", raising=False)
    monkeypatch.setattr(D, "BASE_URL_OVERRIDES", {})
    vocab = _remote(VOCAB_URL, parts["vocab"])
    large = PretrainedModel(
        name=LARGE, size="tiny", task="imagine", format="fairseq",
        files=(RemoteFile(ZIP_URL, "image_gen_tiny_best.zip"),), vocab="bpe",
        aliases=("image_gen_tiny_best.zip", "image_gen_tiny_best.pt"), ema=False,
        description="unit-test bundle", archive="image_gen_tiny_best.pt",
        components=(Component("vqgan", members=("vqgan/last.ckpt", "vqgan/model.yaml")),
                    Component("clip", members=("clip/ViT-tiny.pt",), files=(vocab,))))
    base = PretrainedModel(
        name=BASE, size="tiny", task="imagine", format="fairseq",
        files=(_remote(BASE_URL, parts["ofa"]),), vocab="bpe", ema=False,
        description="unit-test model only",
        components=(Component("vqgan", reuse=LARGE, hint=f"no VQGAN: fetch {LARGE} once"),
                    Component("clip", files=(_remote(CLIP_URL, parts["clip"]), vocab),
                              reuse=LARGE)))
    register(large, replace=True)
    register(base, replace=True)
    yield home
    unregister(LARGE)
    unregister(BASE)


@pytest.fixture
def server(entries, bpe_dir, bundle, parts, monkeypatch):
    srv = Server()
    srv.thread.start()
    for f in ("encoder.json", "vocab.bpe", "dict.txt"):
        srv.files[BPE + f] = (bpe_dir / f).read_bytes()
    srv.files["/checkpoints/image_gen_tiny_best.zip"] = bundle
    srv.files["/checkpoints/image_gen_tiny_base_best.pt"] = parts["ofa"]
    srv.files["/openai/CLIP/main/clip/bpe_simple_vocab_16e6.txt.gz"] = parts["vocab"]
    srv.files["/models/ViT-tiny.pt"] = parts["clip"]
    monkeypatch.setenv("OFA_MIRROR", srv.url)
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _offline(monkeypatch) -> None:
    monkeypatch.setenv("OFA_MIRROR", f"http://127.0.0.1:{_free_port()}")


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------- the bundle
def test_bundle_end_to_end(server, entries, monkeypatch, tmp_path, capsys):
    m = ofa.load("image_gen_tiny_best.zip", device="cpu", progress=False)
    out = entries / "models" / LARGE
    assert m.path == out and (m.name, m.task) == (LARGE, "imagine")
    assert _files(out / "vqgan") == ["last.ckpt", "model.yaml"]
    assert _files(out / "clip") == ["ViT-tiny.pt", "bpe_simple_vocab_16e6.txt.gz"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no leftovers
    # the zip stays downloaded; the checkpoint unpacked from it only for the conversion
    assert [f for f in _files(entries / "downloads" / LARGE) if not f.startswith(".")] == [
        "image_gen_tiny_best.zip"]
    assert sorted(server.requests) == sorted(
        [BPE + f for f in ("dict.txt", "encoder.json", "vocab.bpe")] +
        ["/checkpoints/image_gen_tiny_best.zip",
         "/openai/CLIP/main/clip/bpe_simple_vocab_16e6.txt.gz"])
    r = m.imagine("a dog", samples=2, top=1)  # vqgan/ and clip/ found in the model folder
    assert r.ranked_by == "clip" and len(r.images) == 1 and r.images[0].size == (8, 8)
    # later loads: no network at all
    n = len(server.requests)
    _offline(monkeypatch)
    again = ofa.load(LARGE, device="cpu", progress=False)
    assert again.path == out
    code = main(["imagine", "a dog", "--model", "image_gen_tiny_best.pt", "--samples", "2",
                 "--top", "1", "--out", str(tmp_path / "png"), "--device", "cpu",
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "png" / "0.png").is_file()
    assert len(server.requests) == n


def test_a_missing_component_is_placed_again(server, entries):
    out = D.fetch_pretrained(LARGE, progress=False)
    import shutil

    shutil.rmtree(out / "clip")
    n = len(server.requests)
    assert D.fetch_pretrained(LARGE, progress=False) == out
    # the kept zip gives the weights again; only the vocabulary (moved into clip/) is fetched
    assert server.requests[n:] == ["/openai/CLIP/main/clip/bpe_simple_vocab_16e6.txt.gz"]
    assert _files(out / "clip") == ["ViT-tiny.pt", "bpe_simple_vocab_16e6.txt.gz"]


def test_keep_download_false_and_download_pretrained(server, entries):
    pt = D.download_pretrained(LARGE, progress=False)
    assert pt == entries / "downloads" / LARGE / "image_gen_tiny_best.pt"
    assert read_checkpoint(pt).config.code_image_size == 32
    out = D.fetch_pretrained(LARGE, progress=False, keep_download=False)
    assert (out / "vqgan" / "last.ckpt").is_file() and (out / "clip" / "ViT-tiny.pt").is_file()
    assert not (entries / "downloads" / LARGE).exists()


def test_offline_first_load_lists_every_file(entries, monkeypatch):
    _offline(monkeypatch)
    with pytest.raises(D.DownloadError) as e:
        D.fetch_pretrained(LARGE, progress=False)
    msg = str(e.value)
    assert msg.startswith("5 files could not be downloaded") and "\n" not in msg
    assert f"{ZIP_URL} -> {entries / 'downloads' / LARGE / 'image_gen_tiny_best.zip'}" in msg
    assert VOCAB_URL in msg
    assert not (entries / "models" / LARGE).exists()


# ---------------------------------------------------------------------------- model only
def test_model_only_entry_reuses_the_bundle_vqgan(server, entries, capsys):
    m = ofa.load(BASE, device="cpu", progress=True)
    out = entries / "models" / BASE
    assert not (out / "vqgan").exists()  # nothing to download it from: a note says how
    assert f"ofa: note: no VQGAN: fetch {LARGE} once" in capsys.readouterr().err
    assert _files(out / "clip") == ["ViT-tiny.pt", "bpe_simple_vocab_16e6.txt.gz"]
    with pytest.raises(InputError, match="VQGAN"):
        m.imagine("a dog", samples=2, top=1)
    assert "/checkpoints/image_gen_tiny_best.zip" not in server.requests
    ofa.load(LARGE, device="cpu", progress=False)
    n = len(server.requests)
    m = ofa.load(BASE, device="cpu", progress=False)
    assert server.requests[n:] == []  # taken from the bundle's folder on disk
    assert _files(out / "vqgan") == ["last.ckpt", "model.yaml"]
    large_ckpt = entries / "models" / LARGE / "vqgan" / "last.ckpt"
    assert (out / "vqgan" / "last.ckpt").read_bytes() == large_ckpt.read_bytes()
    r = m.imagine("a dog", samples=2, top=1)
    assert r.ranked_by == "clip" and len(r.images) == 1


def test_model_only_entry_takes_clip_from_the_bundle(server, entries):
    D.fetch_pretrained(LARGE, progress=False)
    n = len(server.requests)
    out = D.fetch_pretrained(BASE, progress=False)
    # its own checkpoint only: VQGAN and CLIP come from the bundle's folder
    assert server.requests[n:] == ["/checkpoints/image_gen_tiny_base_best.pt"]
    assert _files(out / "clip") == ["ViT-tiny.pt", "bpe_simple_vocab_16e6.txt.gz"]
    assert _files(out / "vqgan") == ["last.ckpt", "model.yaml"]


def test_model_only_entry_unpacks_vqgan_from_a_downloaded_bundle(server, entries, bundle):
    zip_path = entries / "downloads" / LARGE / "image_gen_tiny_best.zip"
    zip_path.parent.mkdir(parents=True)
    zip_path.write_bytes(bundle)  # downloaded (by hand), never loaded
    out = D.fetch_pretrained(BASE, progress=False)
    assert _files(out / "vqgan") == ["last.ckpt", "model.yaml"]
    assert "/checkpoints/image_gen_tiny_best.zip" not in server.requests


# ---------------------------------------------------------------------------- unsafe zips
def _symlink_zip(parts) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in _bundle_entries(parts).items():
            zf.writestr(name, data)
        link = zipfile.ZipInfo("checkpoints/clip/evil")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    return buf.getvalue()


def _crc_broken(parts) -> bytes:
    data = bytearray(_zip(_bundle_entries(parts), method=zipfile.ZIP_STORED))
    at = data.index(b"PK\x03\x04", 10)  # the bytes of the first file (the OFA checkpoint)
    data[at + 500] ^= 0xFF
    return bytes(data)


def _hostile(kind: str, parts, bundle) -> bytes:
    files = _bundle_entries(parts)
    if kind == "zip slip":
        return _zip({**files, "checkpoints/../../evil.txt": b"x"})
    if kind == "absolute":
        return _zip({**files, "/tmp/evil.txt": b"x"})
    if kind == "symlink":
        return _symlink_zip(parts)
    if kind == "bomb":
        return _zip({**files, "checkpoints/zeros.bin": bytes(8 << 20)})
    if kind == "many small":  # each under the floor, together a thousandfold
        return _zip({f"checkpoints/z{i}.bin": bytes(1 << 20) for i in range(24)})
    if kind == "truncated":
        return bundle[: len(bundle) // 2]
    if kind == "crc":
        return _crc_broken(parts)
    if kind == "no vqgan":
        return _zip({k: v for k, v in files.items() if "vqgan" not in k})
    if kind == "not a zip":
        return b"<html>sorry</html>" * 100
    raise AssertionError(kind)


@pytest.mark.parametrize("kind,message", [
    ("zip slip", "points outside the folder"), ("absolute", "points outside the folder"),
    ("symlink", "is a symbolic link"), ("bomb", "zip bomb"), ("many small", "zip bomb"),
    ("truncated", "not a complete zip archive"), ("crc", "not a complete zip archive"),
    ("no vqgan", "no vqgan/last.ckpt in it"), ("not a zip", "not a complete zip archive")])
def test_unsafe_or_damaged_bundles_are_refused(kind, message, server, entries, parts, bundle):
    server.files["/checkpoints/image_gen_tiny_best.zip"] = _hostile(kind, parts, bundle)
    with pytest.raises(CheckpointError) as e:
        D.fetch_pretrained(LARGE, progress=False)
    msg = str(e.value)
    assert message in msg and "\n" not in msg and e.value.__cause__ is None
    assert "image_gen_tiny_best.zip" in msg and "delete it" in msg
    assert not list(entries.rglob("evil*")) and not list(entries.rglob("*.part"))
    out = entries / "models" / LARGE
    if kind == "no vqgan":  # the checkpoint was fine: the model is there, its VQGAN is not
        assert not (out / "vqgan").exists() and not list(out.glob(".vqgan*"))
    else:
        assert not out.exists()


def test_cli_prints_one_line_for_a_hostile_bundle(server, entries, parts, bundle, tmp_path,
                                                  capsys):
    server.files["/checkpoints/image_gen_tiny_best.zip"] = _hostile("zip slip", parts, bundle)
    code = main(["imagine", "a dog", "--model", LARGE, "--out", str(tmp_path / "o"),
                 "--device", "cpu", "--no-progress"])
    lines = capsys.readouterr().err.splitlines()  # progress lines, then the error
    assert code == 1 and "zip slip" in lines[-1] and lines[-1].startswith("ofa: error")
    assert not any("Traceback" in line for line in lines)
