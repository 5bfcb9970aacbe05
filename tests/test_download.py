"""ofa.download against a real HTTP server on 127.0.0.1 (Range, cut transfers, 404, ...)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

import ofa
from ofa import download as D
from ofa.checkpoints import read_checkpoint
from ofa.errors import OFAError
from ofa.model import OFAModel
from ofa.pretrained import PretrainedModel, RemoteFile, register, resolve, unregister

from conftest import tiny_config

PAYLOAD = bytes(range(256)) * 4000 + b"tail"  # ~1 MB, not a multiple of the chunk size
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
P_BPE = "https://raw.githubusercontent.com/OFA-Sys/OFA/main/utils/BPE/"


# ---------------------------------------------------------------------------- the server
class FileServer:
    """State shared with the handler: files to serve and how to misbehave."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.status: dict[str, int] = {}  # path -> forced HTTP error
        self.cut_after: int | None = None  # send only this many body bytes, then close ...
        self.cuts_left = 0  # ... for this many more requests
        self.ignore_range = False
        self.wrong_range = False  # answer a Range request with 206 for the whole file
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.state = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def range_headers(self) -> list[str | None]:
        return [h.get("Range") for _, h in self.requests]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802
        srv: FileServer = self.server.state  # type: ignore[attr-defined]
        with srv.lock:
            srv.requests.append((self.path, dict(self.headers)))
            cut = None
            if srv.cuts_left > 0:
                srv.cuts_left -= 1
                cut = srv.cut_after
        if self.path in srv.status:
            self.send_error(srv.status[self.path])
            return
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if m and srv.wrong_range:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes 0-{len(data) - 1}/{len(data)}")
        elif m and not srv.ignore_range:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = FileServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture(autouse=True)
def ofa_home(tmp_path, monkeypatch):
    home = tmp_path / "ofa-home"
    monkeypatch.setenv("OFA_HOME", str(home))
    monkeypatch.delenv("OFA_MIRROR", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.setattr(D, "BASE_URL_OVERRIDES", {})
    return home


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- download_file
def test_full_download_with_checksum(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "sub" / "f.bin"
    out = D.download_file(server.url + "/f.bin", dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD),
                          progress=False)
    assert out == dest and dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "sub" / "f.bin.part").exists()
    assert server.range_headers() == [None]
    # complete file: no second request
    D.download_file(server.url + "/f.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    assert len(server.requests) == 1


def test_interrupted_transfer_resumes_on_next_call(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.cut_after, server.cuts_left = 300_000, 1
    dest = tmp_path / "f.bin"
    with pytest.raises(D.DownloadError, match="interrupted after 300,000") as e:
        D.download_file(server.url + "/f.bin", dest, sha256=PAYLOAD_SHA, progress=False,
                        retries=0)
    assert "resume" in str(e.value) and str(dest) in str(e.value)
    part = tmp_path / "f.bin.part"
    assert part.stat().st_size == 300_000 and not dest.exists()
    D.download_file(server.url + "/f.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    assert server.range_headers() == [None, "bytes=300000-"]
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_interrupted_transfer_resumes_automatically(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.cut_after, server.cuts_left = 123_457, 2
    dest = tmp_path / "f.bin"
    D.download_file(server.url + "/f.bin", dest, sha256=PAYLOAD_SHA, progress=False, retries=2)
    assert server.range_headers() == [None, "bytes=123457-", "bytes=246914-"]
    assert dest.read_bytes() == PAYLOAD


def test_gives_up_after_retries(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.cut_after, server.cuts_left = 1000, 10
    with pytest.raises(D.DownloadError, match="interrupted"):
        D.download_file(server.url + "/f.bin", tmp_path / "f.bin", progress=False, retries=1)
    assert len(server.requests) == 2
    assert (tmp_path / "f.bin.part").stat().st_size == 2000


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.ignore_range = True
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(b"garbage" * 1000)  # a stale partial download
    D.download_file(server.url + "/f.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    assert server.range_headers() == ["bytes=7000-"]
    assert dest.read_bytes() == PAYLOAD


def test_server_answering_another_range_restarts_from_zero(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.wrong_range = True
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:5000])
    D.download_file(server.url + "/f.bin", tmp_path / "f.bin", sha256=PAYLOAD_SHA,
                    progress=False)
    assert server.range_headers() == ["bytes=5000-", None]
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_complete_part_file_is_finalised_via_416(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
    D.download_file(server.url + "/f.bin", tmp_path / "f.bin", sha256=PAYLOAD_SHA,
                    progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert server.range_headers() == [f"bytes={len(PAYLOAD)}-"]


def test_complete_part_file_with_known_size_needs_no_request(server, tmp_path):
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
    D.download_file(server.url + "/f.bin", tmp_path / "f.bin", sha256=PAYLOAD_SHA,
                    size=len(PAYLOAD), progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD and server.requests == []


def test_bad_checksum_leaves_nothing(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "f.bin"
    wrong = "0" * 64
    with pytest.raises(D.DownloadError) as e:
        D.download_file(server.url + "/f.bin", dest, sha256=wrong, progress=False)
    msg = str(e.value)
    assert wrong in msg and PAYLOAD_SHA in msg and "again" in msg
    assert not dest.exists() and not (tmp_path / "f.bin.part").exists()
    assert isinstance(e.value, OFAError)


def test_bad_checksum_after_resume_is_caught(server, tmp_path):
    """The hash covers the resumed prefix too: a corrupt prefix is detected."""
    server.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(b"\xff" * 5000)
    with pytest.raises(D.DownloadError, match="sha256"):
        D.download_file(server.url + "/f.bin", tmp_path / "f.bin", sha256=PAYLOAD_SHA,
                        progress=False)
    assert server.range_headers() == ["bytes=5000-"]
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()


def test_wrong_size(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    with pytest.raises(D.DownloadError, match="size"):
        D.download_file(server.url + "/f.bin", tmp_path / "f.bin", size=len(PAYLOAD) + 1,
                        progress=False)
    assert not (tmp_path / "f.bin").exists()


def test_sha256_prefix(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    D.download_file(server.url + "/f.bin", tmp_path / "ok.bin", sha256_prefix=PAYLOAD_SHA[:8],
                    progress=False)
    assert (tmp_path / "ok.bin").read_bytes() == PAYLOAD
    bad = "deadbeef" if not PAYLOAD_SHA.startswith("deadbeef") else "cafebabe"
    with pytest.raises(D.DownloadError, match=f"starting with {bad}"):
        D.download_file(server.url + "/f.bin", tmp_path / "bad.bin", sha256_prefix=bad,
                        progress=False)
    assert not (tmp_path / "bad.bin").exists()


def test_404_names_url_and_destination(server, tmp_path):
    dest = tmp_path / "downloads" / "x" / "missing.pt"
    url = server.url + "/checkpoints/missing.pt"
    with pytest.raises(D.DownloadError) as e:
        D.download_file(url, dest, progress=False)
    msg = str(e.value)
    assert url in msg and str(dest) in msg and "404" in msg
    assert "\n" not in msg and e.value.__cause__ is None
    assert not dest.exists()


def test_server_error(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.status["/f.bin"] = 503
    with pytest.raises(D.DownloadError, match="HTTP 503"):
        D.download_file(server.url + "/f.bin", tmp_path / "f.bin", progress=False)


def test_unreachable_host(tmp_path):
    url = f"http://127.0.0.1:{_free_port()}/f.bin"
    dest = tmp_path / "f.bin"
    with pytest.raises(D.DownloadError) as e:
        D.download_file(url, dest, progress=False, timeout=5)
    assert url in str(e.value) and str(dest) in str(e.value)
    assert not dest.exists()


def test_existing_file_is_checked_not_downloaded(server, tmp_path):
    dest = tmp_path / "f.bin"
    dest.write_bytes(PAYLOAD)
    D.download_file(server.url + "/f.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    dest.write_bytes(b"not it")
    with pytest.raises(D.DownloadError, match="delete it"):
        D.download_file(server.url + "/f.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    assert server.requests == [] and dest.read_bytes() == b"not it"


# ---------------------------------------------------------------------------- paths, mirrors
def test_cache_dir(monkeypatch, tmp_path):
    assert D.cache_dir() == tmp_path / "ofa-home"
    assert D.model_dir("ofa-base") == tmp_path / "ofa-home" / "models" / "ofa-base"
    assert D.download_dir("ofa-base") == tmp_path / "ofa-home" / "downloads" / "ofa-base"
    assert D.vocab_dir() == tmp_path / "ofa-home" / "vocab"
    monkeypatch.delenv("OFA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert D.cache_dir() == tmp_path / "home" / ".cache" / "ofa"


def test_mirror_url(monkeypatch):
    url = "https://ofa-beijing.oss-cn-beijing.aliyuncs.com/checkpoints/ofa_base.pt"
    hf = "https://huggingface.co/OFA-Sys/ofa-base/resolve/main/config.json"
    assert D.mirror_url(url) == url
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example/")
    assert D.mirror_url(hf) == "https://hf-mirror.example/OFA-Sys/ofa-base/resolve/main/config.json"
    assert D.mirror_url(url) == url
    monkeypatch.setenv("OFA_MIRROR", "http://127.0.0.1:9/ofa/")
    assert D.mirror_url(url) == "http://127.0.0.1:9/ofa/checkpoints/ofa_base.pt"
    assert D.mirror_url(hf) == "http://127.0.0.1:9/ofa/OFA-Sys/ofa-base/resolve/main/config.json"
    monkeypatch.setattr(D, "BASE_URL_OVERRIDES", {
        "https://ofa-beijing.oss-cn-beijing.aliyuncs.com/": "http://a/",
        "https://ofa-beijing.oss-cn-beijing.aliyuncs.com/checkpoints/": "http://b/ck/"})
    assert D.mirror_url(url) == "http://b/ck/ofa_base.pt"  # longest prefix wins


# ---------------------------------------------------------------------------- fetch_pretrained
def _tiny_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return OFAModel(tiny_config()).eval().state_dict()


@pytest.fixture
def tiny_entry(tmp_path):
    """A registered fake 'official' entry whose checkpoint exists as bytes (served or placed)."""
    path = tmp_path / "test_tiny_best.pt"
    torch.save({"model": _tiny_state()}, path)
    data = path.read_bytes()
    entry = PretrainedModel(
        name="test-tiny-caption", size="tiny", task="caption", format="fairseq",
        files=(RemoteFile("https://ofa.example.invalid/checkpoints/test_tiny_best.pt",
                          "test_tiny_best.pt", sha256=hashlib.sha256(data).hexdigest(),
                          size=len(data)),),
        vocab="bpe", aliases=("test_tiny_best.pt", "test_tiny_best"), ema=False,
        description="unit-test model")
    register(entry)
    yield entry, data
    unregister(entry.name)


def _serve_bpe(server: FileServer, bpe_dir: Path) -> None:
    for f in ("encoder.json", "vocab.bpe", "dict.txt"):
        server.files[f"/OFA-Sys/OFA/main/utils/BPE/{f}"] = (bpe_dir / f).read_bytes()


def _assert_native(folder: Path, state: dict[str, torch.Tensor]) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["source"]["registry_name"] == "test-tiny-caption"
    for f in ("model.safetensors", "vocab.json", "merges.txt"):
        assert (folder / f).is_file()
    ckpt = read_checkpoint(folder)
    assert ckpt.format == "native"
    key = "encoder.layers.0.fc1.weight"
    assert torch.equal(ckpt.state_dict[key], state[key])


def test_fetch_pretrained_end_to_end(server, bpe_dir, tiny_entry, monkeypatch, ofa_home):
    entry, data = tiny_entry
    server.files["/checkpoints/test_tiny_best.pt"] = data
    _serve_bpe(server, bpe_dir)
    monkeypatch.setenv("OFA_MIRROR", server.url)
    out = D.fetch_pretrained("test_tiny_best.pt", progress=False)
    assert out == ofa_home / "models" / "test-tiny-caption"
    _assert_native(out, _tiny_state())
    assert (ofa_home / "vocab" / "encoder.json").is_file()
    assert (ofa_home / "downloads" / "test-tiny-caption" / "test_tiny_best.pt").is_file()
    n = len(server.requests)
    assert sorted(p for p, _ in server.requests) == [
        "/OFA-Sys/OFA/main/utils/BPE/dict.txt", "/OFA-Sys/OFA/main/utils/BPE/encoder.json",
        "/OFA-Sys/OFA/main/utils/BPE/vocab.bpe", "/checkpoints/test_tiny_best.pt"]
    # second call: no network at all (even with a dead mirror)
    monkeypatch.setenv("OFA_MIRROR", f"http://127.0.0.1:{_free_port()}")
    assert D.fetch_pretrained("TEST-TINY-CAPTION", progress=False) == out
    assert len(server.requests) == n


def test_fetch_pretrained_uses_manually_placed_files(bpe_dir, tiny_entry, monkeypatch,
                                                     ofa_home):
    entry, data = tiny_entry
    monkeypatch.setenv("OFA_MIRROR", f"http://127.0.0.1:{_free_port()}")  # offline
    with pytest.raises(D.DownloadError) as e:
        D.fetch_pretrained(entry.name, progress=False)
    msg = str(e.value)  # one error that lists every missing file and where it goes
    weights = ofa_home / "downloads" / entry.name / "test_tiny_best.pt"
    assert msg.startswith("4 files could not be downloaded (Connection refused")
    for f in ("encoder.json", "vocab.bpe", "dict.txt"):
        assert f"{P_BPE}{f} -> {ofa_home / 'vocab' / f}" in msg
    assert f"{entry.files[0].url} -> {weights}" in msg
    # the user follows the message: copy the files where it said
    for f in ("encoder.json", "vocab.bpe", "dict.txt"):
        shutil.copy(bpe_dir / f, ofa_home / "vocab" / f)
    with pytest.raises(D.DownloadError) as e:
        D.fetch_pretrained(entry.name, progress=False)
    msg = str(e.value)
    assert f"save it as {weights}" in msg and f"(mirror of {entry.files[0].url})" in msg
    assert e.value.url == entry.files[0].url and e.value.dest == weights
    weights.write_bytes(data)
    out = D.fetch_pretrained(entry.name, progress=False, keep_download=False)
    _assert_native(out, _tiny_state())
    assert not weights.exists()


def test_fetch_pretrained_rejects_a_damaged_manual_file(bpe_dir, tiny_entry, monkeypatch,
                                                        ofa_home):
    entry, data = tiny_entry
    monkeypatch.setenv("OFA_MIRROR", f"http://127.0.0.1:{_free_port()}")
    (ofa_home / "vocab").mkdir(parents=True)
    for f in ("encoder.json", "vocab.bpe", "dict.txt"):
        shutil.copy(bpe_dir / f, ofa_home / "vocab" / f)
    weights = ofa_home / "downloads" / entry.name / "test_tiny_best.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(data[:-10])
    with pytest.raises(D.DownloadError, match="size"):
        D.fetch_pretrained(entry.name, progress=False)
    assert not (ofa_home / "models" / entry.name).exists()


# HF-hub entries download through huggingface_hub: tests/test_hub.py


def test_fetch_pretrained_bundled_entry_needs_no_network(monkeypatch):
    from ofa.demo import DEMO_DIR

    monkeypatch.setenv("OFA_MIRROR", f"http://127.0.0.1:{_free_port()}")  # offline
    assert D.fetch_pretrained("shapes-demo") == DEMO_DIR
    assert D.download_pretrained("shapes-demo") == DEMO_DIR


def test_fetch_pretrained_unknown_name():
    with pytest.raises(OFAError, match="did you mean ofa-base-caption"):
        D.fetch_pretrained("caption_base_bets")
    assert resolve("caption_base_best").name == "ofa-base-caption"


def test_load_and_cli_by_registry_name(server, bpe_dir, tiny_entry, monkeypatch, ofa_home,
                                       tmp_path, capsys):
    """``ofa.load(name)`` and ``ofa caption --model name`` download, convert once, and know
    the checkpoint's task from the registry."""
    import numpy as np
    from PIL import Image

    import ofa
    from ofa.cli import main

    entry, data = tiny_entry
    server.files["/checkpoints/test_tiny_best.pt"] = data
    _serve_bpe(server, bpe_dir)
    monkeypatch.setenv("OFA_MIRROR", server.url)
    m = ofa.load("test_tiny_best", device="cpu", progress=False)
    assert (m.name, m.task) == ("test-tiny-caption", "caption")
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(image)
    assert main(["caption", str(image), "--model", "test-tiny-caption", "--device", "cpu",
                 "--json", "--max-len", "3"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["tokens"] == m.caption(str(image), max_len_b=3)["tokens"]
    # downloaded once: the CLI run made no request
    assert [p for p, _ in server.requests].count("/checkpoints/test_tiny_best.pt") == 1


def test_fetch_pretrained_chinese_entry(server, shared_dir, monkeypatch, ofa_home, tmp_path):
    """A Chinese checkpoint comes with the BERT-Chinese vocab.txt (its own vocabulary folder)
    and loads with the Chinese tokenizer; the English BPE files are never asked for."""
    torch.manual_seed(0)
    path = tmp_path / "test_cn_tiny.pt"
    torch.save({"model": OFAModel(tiny_config(vocab_size=30325)).eval().state_dict()}, path)
    data = path.read_bytes()
    entry = PretrainedModel(
        name="test-cn-tiny-ocr", size="tiny", task="ocr", format="fairseq",
        files=(RemoteFile("https://ofa.example.invalid/checkpoints/test_cn_tiny.pt",
                          "test_cn_tiny.pt", sha256=hashlib.sha256(data).hexdigest()),),
        vocab="bert_cn", ema=False, description="unit-test Chinese model")
    register(entry)
    try:
        vocab = (shared_dir / "oracle" / "cn" / "vocab.txt").read_bytes()
        server.files["/checkpoints/test_cn_tiny.pt"] = data
        server.files["/OFA-Sys/OFA/main/utils/BERT_CN_dict/vocab.txt"] = vocab
        monkeypatch.setenv("OFA_MIRROR", server.url)
        out = D.fetch_pretrained("test-cn-tiny-ocr", progress=False)
        assert sorted(p for p, _ in server.requests) == [
            "/OFA-Sys/OFA/main/utils/BERT_CN_dict/vocab.txt", "/checkpoints/test_cn_tiny.pt"]
        assert (ofa_home / "vocab-bert_cn" / "vocab.txt").read_bytes() == vocab
        assert (out / "vocab.txt").read_bytes() == vocab  # the native folder keeps its own
        m = ofa.load("test-cn-tiny-ocr", device="cpu", progress=False)
        assert m.tokenizer.language == "zh" and m.task == "ocr"
        assert m.tokenizer.encode("图片") == [0, 1749, 4279, 2]
    finally:
        unregister(entry.name)
