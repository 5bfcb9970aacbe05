"""``POST /v1/imagine``: the drawings come back as base64 PNGs, the same the API draws with the
same seed; the options are bounded; a server without a VQGAN says so."""

from __future__ import annotations

import base64
import io
import shutil

import httpx
from PIL import Image

import ofa
from ofa.demo import DEMO_DIR


def test_imagine_answers_pngs_the_api_would_draw(shared_server, demo_model):
    body = {"text": "a small red circle", "samples": 3, "top": 2, "seed": 5}
    r = httpx.post(f"{shared_server.url}/v1/imagine", json=body, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["ranked_by"] == "caption" and len(out["images"]) == len(out["scores"]) == 2
    assert out["scores"][0] >= out["scores"][1] and len(set(out["samples"])) == 2
    drawn = demo_model.run("imagine", None, text="a small red circle", samples=3, top=2,
                           seed=5)
    for png, image in zip(out["images"], drawn["images"], strict=True):
        got = Image.open(io.BytesIO(base64.b64decode(png)))
        assert got.format == "PNG" and got.tobytes() == image.tobytes()
    # multipart, as the page sends it: the same request, the same images
    form = {k: (None, str(v)) for k, v in body.items()}
    r = httpx.post(f"{shared_server.url}/v1/imagine", files=form, timeout=60)
    assert r.status_code == 200 and r.json()["images"] == out["images"]


def test_imagine_options_are_bounded(shared_server):
    url = f"{shared_server.url}/v1/imagine"
    for body, field in (({"text": "a dog", "samples": 65}, "samples"),
                        ({"text": "a dog", "top": 0}, "top"),
                        ({"text": "a dog", "seed": -1}, "seed"),
                        ({"text": ""}, "text"), ({"samples": 2}, "text"),
                        ({"text": "a dog", "beam_size": 2}, "beam_size")):
        r = httpx.post(url, json=body, timeout=30)
        assert r.status_code == 422 and field in r.json()["detail"], (body, r.text)


def test_imagine_samples_are_capped_by_the_server(serve):
    with serve(max_samples=2) as live:
        r = httpx.post(f"{live.url}/v1/imagine", json={"text": "a dog", "samples": 3},
                       timeout=30)
        assert r.status_code == 422 and "--max-samples" in r.json()["detail"]
        r = httpx.post(f"{live.url}/v1/imagine", json={"text": "a dog"}, timeout=30)
        assert r.status_code == 422  # the default 24 is above this server's limit too
        r = httpx.post(f"{live.url}/v1/imagine", json={"text": "a dog", "samples": 2},
                       timeout=30)
        assert r.status_code == 200 and len(r.json()["images"]) == 2


def test_imagine_without_a_vqgan_says_what_to_pass(serve, tmp_path):
    # the demo model's files without the VQGAN that ships beside them
    bare = tmp_path / "bare"
    shutil.copytree(DEMO_DIR, bare, ignore=shutil.ignore_patterns("vqgan"))
    with serve(model=ofa.load(bare, device="cpu")) as live:
        r = httpx.post(f"{live.url}/v1/imagine", json={"text": "a dog", "samples": 1},
                       timeout=30)
    assert r.status_code == 422 and "vqgan" in r.json()["detail"].lower()
