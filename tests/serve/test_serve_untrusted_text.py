"""Text that is not valid UTF-8 reaches the server as a lone surrogate (JSON allows the
escape "\\udcff"): it must be a one-line 422 naming the field (the request schema refuses it
before the model's own check, which the CLI and the Python API share), and the server must
decode images with the same loader as they do."""

from __future__ import annotations

import json

import httpx


def test_lone_surrogate_in_a_question_is_422(shared_server, png_b64):
    url = f"{shared_server.url}/v1/vqa"
    # json.dumps writes the lone surrogate as the escape a client would send
    body = json.dumps({"image": png_b64, "question": "what \udcff is it"})
    assert "\\udcff" in body
    r = httpx.post(url, content=body.encode("ascii"),
                   headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("question:") and "unicode" in detail and "\n" not in detail
    r = httpx.post(url, json={"image": png_b64, "question": "what is it"})
    assert r.status_code == 200


def test_server_uses_the_shared_image_loader():
    from ofa import preprocess
    from ofa.serve import images

    assert images.ImageError is preprocess.ImageError
    assert issubclass(images.ImageError, preprocess.InputError)
