"""HF-hub models through huggingface_hub, against a loopback server that imitates the hub's file
endpoints (``HEAD``/``GET {endpoint}/{repo}/resolve/{revision}/{file}`` with the ETag,
X-Repo-Commit and Content-Length headers hf_hub_download reads, and its X-Error-Code errors)."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub.constants  # noqa: F401  (it reads its settings at import: before the
import pytest  # tests change them, as in a user's process; ofa.hub reads them at each call)
import torch
from safetensors.torch import save as save_safetensors

import ofa
from ofa import download as D
from ofa.checkpoints import _HF_LAYER, read_checkpoint
from ofa.demo import DEMO_DIR
from ofa.errors import InputError, OFAError
from ofa.hub import is_repo_id
from ofa.locate import locate_model
from ofa.model import OFAModel
from ofa.pretrained import PretrainedModel, RemoteFile, register, unregister

from conftest import tiny_config

COMMIT = "0123456789abcdef0123456789abcdef01234567"
KEY = "decoder.layers.1.cross_attn_ln.weight"  # renamed in the HF layout


# ---------------------------------------------------------------------------- the fake hub
class Hub:
    """Repos to serve and every request seen (method, path, headers)."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.tokens: dict[str, str] = {}  # private repo -> the token that may read it
        self.gated: set[str] = set()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.hub = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(body=True)

    def _error(self, status: int, code: str, commit: bool = False) -> None:
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        if commit:
            self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, body: bool) -> None:
        hub: Hub = self.server.hub  # type: ignore[attr-defined]
        with hub.lock:
            hub.requests.append((self.command, self.path,
                                 {k.lower(): v for k, v in self.headers.items()}))
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/([^/?]+)", self.path)
        repo = m and hub.repos.get(m.group(1))
        auth = self.headers.get("Authorization")
        if repo is None or (m.group(1) in hub.tokens
                            and auth != f"Bearer {hub.tokens[m.group(1)]}"):
            return self._error(401, "RepoNotFound")  # what the hub says to a stranger
        if m.group(1) in hub.gated:
            return self._error(403, "GatedRepo")
        if m.group(2) not in ("main", COMMIT):
            return self._error(404, "RevisionNotFound")
        data = repo.get(m.group(3))
        if data is None:
            return self._error(404, "EntryNotFound", commit=True)
        self.send_response(200)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    srv = Hub()
    srv.thread.start()
    monkeypatch.setenv("HF_ENDPOINT", srv.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("OFA_HOME", str(tmp_path / "ofa-home"))
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "OFA_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    # huggingface_hub >= 1.x fetches {its import-time endpoint}/api/agent-harnesses once per
    # process for its user agent: an empty registry keeps the tests off the network
    if importlib.util.find_spec("huggingface_hub.utils._detect_agent") is not None:
        from huggingface_hub.utils import _detect_agent

        monkeypatch.setattr(_detect_agent, "_registry", _detect_agent._EMPTY_REGISTRY)
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


# ---------------------------------------------------------------------------- a tiny repo
@pytest.fixture(scope="module")
def tiny():
    """(official-named state, the files of an HF-layout repo holding it as pytorch_model.bin)."""
    torch.manual_seed(0)
    state = OFAModel(tiny_config()).eval().state_dict()
    inverse = {side: {v: k for k, v in table.items()} for side, table in _HF_LAYER.items()}
    hf_state = {}
    for k, v in state.items():
        m = re.match(r"^(encoder|decoder)\.layers\.(\d+)\.([^.]+)\.(.+)$", k)
        if m:
            side, i, sub, rest = m.groups()
            k = f"{side}.layers.{i}.{inverse[side].get(sub, sub)}.{rest}"
        hf_state[k] = v.half()  # half the bytes to serve; converted back to fp32
    buf = io.BytesIO()
    torch.save(hf_state, buf)
    files = {"config.json": json.dumps({"model_type": "ofa"}).encode(),
             "vocab.json": (DEMO_DIR / "vocab.json").read_bytes(),
             "merges.txt": (DEMO_DIR / "merges.txt").read_bytes(),
             "pytorch_model.bin": buf.getvalue()}
    return state, files, hf_state


def _same_weights(folder: Path, state: dict) -> None:
    ckpt = read_checkpoint(folder)
    assert ckpt.format == "native"
    assert torch.equal(ckpt.state_dict[KEY], state[KEY].half().float())


@pytest.fixture
def tiny_entry():
    files = tuple(RemoteFile(f"https://huggingface.co/Test/ofa-tiny/resolve/main/{f}", f)
                  for f in ("config.json", "vocab.json", "merges.txt", "pytorch_model.bin"))
    entry = register(PretrainedModel(
        name="test-tiny-hf", size="tiny", task="caption", format="hf", files=files,
        vocab="bundled", aliases=("Test/ofa-tiny",), description="unit-test model"))
    yield entry
    unregister(entry.name)


def _paths(hub: Hub) -> list[tuple[str, str]]:
    return [(method, path.rsplit("/", 1)[-1]) for method, path, _ in hub.requests]


# ---------------------------------------------------------------------------- the tests
def test_registry_entry_downloads_through_the_hub_once(hub, tiny, tiny_entry, tmp_path):
    state, files, _ = tiny
    hub.repos["Test/ofa-tiny"] = files
    m = ofa.load("test-tiny-hf", device="cpu", progress=False)
    assert (m.name, m.task) == ("test-tiny-hf", "caption")
    out = tmp_path / "ofa-home" / "models" / "test-tiny-hf"
    _same_weights(out, state)
    source = json.loads((out / "config.json").read_text())["source"]
    assert source["hub_repo"] == "Test/ofa-tiny" and source["hub_commit"] == COMMIT
    # the files are in huggingface_hub's cache (shared with transformers), not in $OFA_HOME
    snapshot = tmp_path / "hf-cache" / "models--Test--ofa-tiny" / "snapshots" / COMMIT
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(files)
    assert not (tmp_path / "ofa-home" / "downloads").exists()
    # HEAD + GET per file; no safetensors in this repo, so the .bin; all but the first
    # pinned to the commit the first one named
    assert _paths(hub) == [
        ("HEAD", "config.json"), ("GET", "config.json"), ("HEAD", "vocab.json"),
        ("GET", "vocab.json"), ("HEAD", "merges.txt"), ("GET", "merges.txt"),
        ("HEAD", "model.safetensors"), ("HEAD", "pytorch_model.bin"),
        ("GET", "pytorch_model.bin")]
    assert f"/resolve/{COMMIT}/vocab.json" in hub.requests[2][1]
    # later calls, by any of its names: no request at all
    n = len(hub.requests)
    assert locate_model("test/OFA-tiny", progress=False) == out
    ofa.load("test-tiny-hf", device="cpu", progress=False)
    assert len(hub.requests) == n


def test_any_hub_repo_outside_the_registry(hub, tiny, tmp_path):
    state, files, hf_state = tiny
    safetensors_repo = {k: v for k, v in files.items() if k != "pytorch_model.bin"}
    safetensors_repo["model.safetensors"] = save_safetensors(
        {k: v.contiguous() for k, v in hf_state.items()})
    hub.repos["Me/my-ofa"] = safetensors_repo
    out = locate_model("Me/my-ofa", progress=False)
    assert out == tmp_path / "ofa-home" / "models" / "hf--Me--my-ofa"
    _same_weights(out, state)
    assert ("HEAD", "pytorch_model.bin") not in _paths(hub)  # safetensors first
    m = ofa.load(out, device="cpu")
    assert m.caption(str(DEMO_DIR.parent / "demo.png"), max_len_b=2)["tokens"]
    n = len(hub.requests)
    assert locate_model("Me/my-ofa", progress=False) == out
    assert len(hub.requests) == n


def test_offline_uses_the_warm_cache(hub, tiny, tiny_entry, tmp_path, monkeypatch):
    state, files, _ = tiny
    hub.repos["Test/ofa-tiny"] = files
    out = D.fetch_pretrained("test-tiny-hf", progress=False)
    # only the HF cache is left: the native folder is converted again, from it, offline
    import shutil

    shutil.rmtree(out)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = len(hub.requests)
    assert locate_model("test-tiny-hf", progress=False) == out
    _same_weights(out, state)
    assert len(hub.requests) == n


def test_offline_with_a_cold_cache_is_one_line(hub, tiny, tiny_entry, monkeypatch):
    hub.repos["Test/ofa-tiny"] = tiny[1]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("test-tiny-hf", "Me/my-ofa"):
        with pytest.raises(D.DownloadError, match="HF_HUB_OFFLINE") as e:
            locate_model(name, progress=False)
        assert "\n" not in str(e.value) and "not in the HF cache" in str(e.value)
    assert hub.requests == []


def test_unknown_repo_is_one_line(hub, tiny_entry):
    with pytest.raises(InputError) as e:  # maybe a mistyped path: all three are named
        locate_model("Nobody/nothing", progress=False)
    msg = str(e.value)
    assert msg.startswith("no such checkpoint file or folder: Nobody/nothing")
    assert "registry name" in msg and hub.url in msg and "\n" not in msg
    with pytest.raises(InputError, match="no model 'Test/ofa-tiny' on the HF hub") as e:
        D.fetch_pretrained("test-tiny-hf", progress=False)  # a registry entry gone missing
    assert "\n" not in str(e.value) and e.value.__cause__ is None


def test_token_is_sent_for_a_private_repo(hub, tiny, monkeypatch):
    hub.repos["Me/private-ofa"] = tiny[1]
    hub.tokens["Me/private-ofa"] = "hf_secret"
    with pytest.raises(InputError, match="HF_TOKEN"):
        D.fetch_hub_model("Me/private-ofa", progress=False)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    hub.requests.clear()
    D.fetch_hub_model("Me/private-ofa", progress=False)
    assert hub.requests and all(h.get("authorization") == "Bearer hf_secret"
                                for _, _, h in hub.requests)


def test_gated_repo_and_bad_layouts_are_one_line(hub, tiny):
    files = tiny[1]
    hub.repos["Org/gated"] = files
    hub.gated.add("Org/gated")
    with pytest.raises(InputError, match="gated repo") as e:
        D.fetch_hub_model("Org/gated", progress=False)
    assert "\n" not in str(e.value)
    hub.repos["Me/no-vocab"] = {k: v for k, v in files.items() if k != "vocab.json"}
    with pytest.raises(InputError, match="has no vocab.json: not an OFA checkpoint"):
        D.fetch_hub_model("Me/no-vocab", progress=False)
    hub.repos["Me/no-weights"] = {k: v for k, v in files.items() if k != "pytorch_model.bin"}
    with pytest.raises(InputError, match="neither model.safetensors nor pytorch_model.bin"):
        D.fetch_hub_model("Me/no-weights", progress=False)


@pytest.mark.parametrize("name,ok", [
    ("OFA-Sys/ofa-base", True), ("me/my_ofa.v2", True), ("a/b", True),
    ("runs/best.pt", False), ("a/b/c", False), ("./x", False), ("/abs", False),
    ("a--b/c", False), ("a/b..c", False), ("-a/b", False), ("name", False),
    ("a/" + "b" * 100, False)])
def test_is_repo_id(name, ok):
    assert is_repo_id(name) is ok


def test_the_project_downloader_still_serves_other_files(hub):
    """$HF_ENDPOINT rewrites the URL of a plain registered file there, as before."""
    assert D.mirror_url("https://huggingface.co/x/y/resolve/main/f") == \
        f"{hub.url}/x/y/resolve/main/f"
    assert isinstance(D.DownloadError("x"), OFAError)
