"""Bad input and overload: 400, 401, 413, 415, 422, 503 + Retry-After, 504, no URL fetching,
and never a 500."""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
import zlib

import httpx
import pytest
from PIL import Image

TASKS = ("caption", "vqa", "ground", "entail", "classify", "summarize", "generate")


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims a huge canvas: the classic decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b""))


def _detail(r: httpx.Response) -> str:
    return r.json()["detail"]


def test_wrong_content_type_is_415(shared_server, png_b64):
    for headers, content in (({"content-type": "text/plain"}, b"hello"),
                             ({"content-type": "application/xml"}, b"<a/>"),
                             ({"content-type": "application/x-www-form-urlencoded"}, b"a=b"),
                             ({}, b"")):
        r = httpx.post(f"{shared_server.url}/v1/caption", content=content, headers=headers)
        assert r.status_code == 415, r.text
        assert "multipart/form-data" in _detail(r)


def test_body_over_the_limit_is_413(serve, png_b64):
    with serve(max_body_mb=0.05) as live:  # 52 KB
        big = {"image": "A" * 100_000}
        r = httpx.post(f"{live.url}/v1/caption", json=big)
        assert r.status_code == 413 and "0.05 MB" in _detail(r)

        def chunks():  # no Content-Length: the limit must still hold
            for _ in range(10):
                yield b"x" * 10_000

        r = httpx.post(f"{live.url}/v1/caption", content=chunks(),
                       headers={"content-type": "application/json"})
        assert r.status_code == 413
        r = httpx.post(f"{live.url}/v1/caption", json={"image": png_b64})
        assert r.status_code == 200  # under the limit: served


def test_corrupt_and_non_images_are_422_with_reason(shared_server, png_bytes):
    cases = {
        "truncated": (png_bytes[: len(png_bytes) // 2], "corrupt or truncated"),
        "random bytes": (bytes(range(256)) * 4, "not a readable image"),
        "empty": (b"", "empty"),
        "text": (b"GIF89a this is no gif", "image"),
    }
    for name, (data, reason) in cases.items():
        r = httpx.post(f"{shared_server.url}/v1/caption",
                       files={"image": ("x.png", data, "image/png")})
        assert r.status_code == 422, (name, r.text)
        assert reason in _detail(r), (name, _detail(r))


def test_decompression_bombs_are_422(shared_server, serve, png_bytes):
    bomb = _png_header_only(100_000, 100_000)
    assert len(bomb) < 200
    r = httpx.post(f"{shared_server.url}/v1/caption", files={"image": ("b.png", bomb)})
    assert r.status_code == 422 and "decompression bomb" in _detail(r)
    with serve(max_pixels=10_000) as live:  # the demo image has 128 x 128 = 16,384 pixels
        r = httpx.post(f"{live.url}/v1/caption", files={"image": ("d.png", png_bytes)})
        assert r.status_code == 422
        assert "128 x 128" in _detail(r) and "10,000" in _detail(r)


def test_missing_and_wrong_fields_are_422(shared_server, png_b64, png_bytes):
    url = shared_server.url
    cases = [
        ("vqa", {"image": png_b64}, "question: Field required"),
        ("ground", {"image": png_b64}, "text: Field required"),
        ("entail", {"image": png_b64, "hypothesis": ""}, "hypothesis"),
        ("caption", {}, "image: Field required"),
        ("vqa", {"question": "what?"}, "image: Field required"),
        ("classify", {"image": png_b64, "classes": []}, "classes"),
        ("caption", {"image": png_b64, "beam_size": 0}, "beam_size"),
        ("caption", {"image": png_b64, "beam_size": "3"}, "beam_size"),  # strict types
        ("caption", {"image": png_b64, "beam_size": None}, "beam_size"),  # not nullable
        ("caption", {"image": png_b64, "max_len": 100_000}, "max_len"),
        ("vqa", {"image": png_b64, "question": "q?", "mode": "guess"}, "mode"),
        ("caption", {"image": png_b64, "temperature": 2}, "temperature: Extra inputs"),
        ("caption", {"image": 12}, "base64 string"),
        ("caption", {"image": "not base64 !!"}, "not valid base64"),
        ("vqa", {"image": png_b64, "question": "x" * 1001}, "question"),
    ]
    for task, body, reason in cases:
        r = httpx.post(f"{url}/v1/{task}", json=body)
        assert r.status_code == 422, (task, body if len(str(body)) < 80 else "...", r.text)
        assert reason in _detail(r), (reason, _detail(r))
    # the same through multipart
    form_cases = [
        ("vqa", {}, {"image": ("d.png", png_bytes)}, "question: Field required"),
        ("caption", {"beam_size": "three"}, {"image": ("d.png", png_bytes)}, "integer"),
        ("caption", {}, {"beam_size": (None, b"2")}, "image: Field required"),
        ("caption", {"unknown": "1"}, {"image": ("d.png", png_bytes)}, "unknown"),
        ("ground", {"text": ["a", "b"]}, {"image": ("d.png", png_bytes)}, "given 2 times"),
        ("ground", {"text": "a", "bins_only": "yes"}, {"image": ("d.png", png_bytes)},
         "bins_only: Input should be true or false"),
    ]
    for task, data, files, reason in form_cases:
        r = httpx.post(f"{url}/v1/{task}", data=data, files=files)
        assert r.status_code == 422, (task, data, r.text)
        assert reason in _detail(r), (reason, _detail(r))


def test_model_refusals_are_422_not_500(shared_server, png_b64):
    # valid by the schema, refused by the model: too long for the 256-position encoder,
    # "all" mode without candidates (the demo answers are the default, so send open+all)
    r = httpx.post(f"{shared_server.url}/v1/vqa",
                   json={"image": png_b64, "question": "\U0001f600" * 300})
    assert r.status_code == 422 and "positions" in _detail(r)
    r = httpx.post(f"{shared_server.url}/v1/classify",
                   json={"image": png_b64, "classes": ["\U0001f600" * 200]})
    assert r.status_code == 422, r.text


def test_unparseable_bodies_are_400(shared_server):
    url = f"{shared_server.url}/v1/caption"
    for content in (b"{not json", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000):
        r = httpx.post(url, content=content, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        assert "not valid JSON" in _detail(r)
    r = httpx.post(url, content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON object" in _detail(r)
    r = httpx.post(url, content=b"--x\r\ngarbage",
                   headers={"content-type": "multipart/form-data"})  # no boundary
    assert r.status_code == 400 and "multipart" in _detail(r)


def test_urls_in_requests_are_never_fetched(shared_server):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        for image in (f"http://127.0.0.1:{port}/cat.png", "file:///etc/passwd",
                      f"//127.0.0.1:{port}/cat.png"):
            r = httpx.post(f"{shared_server.url}/v1/caption", json={"image": image})
            assert r.status_code == 422, r.text
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody connected
    finally:
        listener.close()


WEIRD_TEXTS = ["\ud800", "\u0000", " ", "?", "<bin_5> <code_7> </s> <s> <pad> <unk>",
               "\U0001f600" * 300, "a" * 1000, "\u202e\u0301\ufeff"]
TEXT_FIELDS = {"vqa": "question", "ground": "text", "entail": "hypothesis",
               "generate": "prompt", "summarize": "text", "classify": "classes"}


def test_no_input_gives_500(shared_server, png_b64):
    url = shared_server.url
    junk = [None, 0, "x", [], {"image": [png_b64]}, {"image": {"a": 1}},
            {"image": png_b64, "question": 5, "text": [], "classes": "a", "prompt": {},
             "hypothesis": 1.5, "topk": True}]
    for task in TASKS:
        for body in junk:
            r = httpx.post(f"{url}/v1/{task}", json=body)
            assert 400 <= r.status_code < 500, (task, str(body)[:60], r.status_code, r.text)
            assert r.json()["detail"]
        r = httpx.post(f"{url}/v1/{task}", content=b"\x00" * 64,
                       headers={"content-type": "multipart/form-data; boundary=zz"})
        assert 400 <= r.status_code < 500, (task, r.text)
    # well-formed requests with strange texts reach the model: answered or refused, no 500
    for task, field in TEXT_FIELDS.items():
        for text in WEIRD_TEXTS:
            body = {field: [text] if task == "classify" else text}
            if task != "summarize":
                body["image"] = png_b64
            r = httpx.post(f"{url}/v1/{task}", content=json.dumps(body).encode(), timeout=60,
                           headers={"content-type": "application/json"})  # escapes \ud800
            assert r.status_code in (200, 422), (task, repr(text)[:40], r.text)


def _post_in_thread(url: str, body: dict, out: list) -> threading.Thread:
    def go():
        out.append(httpx.post(url, json=body, timeout=60))

    t = threading.Thread(target=go)
    t.start()
    return t


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_full_queue_is_503_with_retry_after(serve, gated, png_b64):
    with serve(gated, max_batch_size=1, queue_size=1, max_wait_ms=0) as live:
        url = f"{live.url}/v1/caption"
        results: list = []
        first = _post_in_thread(url, {"image": png_b64}, results)
        assert gated.entered.wait(10)  # the first request is inside the model
        second = _post_in_thread(url, {"image": png_b64}, results)
        _wait_for(lambda: httpx.get(f"{live.url}/healthz").json()["queue_depth"] == 1)
        r = httpx.post(url, json={"image": png_b64})
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) >= 1
        assert "queue is full" in _detail(r)
        gated.gate.set()
        first.join(30)
        second.join(30)
        assert [x.status_code for x in results] == [200, 200]
        assert gated.calls == [1, 1]


def test_timeout_is_504_and_withdraws_the_request(serve, gated, png_b64):
    with serve(gated, max_batch_size=1, timeout_s=0.5, max_wait_ms=0) as live:
        url = f"{live.url}/v1/caption"
        results: list = []
        first = _post_in_thread(url, {"image": png_b64}, results)
        assert gated.entered.wait(10)
        start = time.monotonic()
        r = httpx.post(url, json={"image": png_b64})  # queued behind the blocked one
        assert r.status_code == 504 and "timeout" in _detail(r)
        assert 0.4 < time.monotonic() - start < 5
        gated.gate.set()
        first.join(30)
        assert results[0].status_code == 504  # the first one timed out too
        _wait_for(lambda: httpx.get(f"{live.url}/healthz").json()["queue_depth"] == 0)
        time.sleep(0.3)
        assert gated.calls == [1]  # the withdrawn request never reached the model


def test_api_key(serve, png_b64):
    with serve(api_key="s3cret", max_body_mb=0.05) as live:
        url = f"{live.url}/v1/caption"
        r = httpx.post(url, json={"image": png_b64})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        r = httpx.post(url, json={"image": png_b64}, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        for headers in ({"Authorization": "Bearer s3cret"}, {"X-API-Key": "s3cret"}):
            r = httpx.post(url, json={"image": png_b64}, headers=headers)
            assert r.status_code == 200, r.text
        assert httpx.get(f"{live.url}/metrics").status_code == 401
        assert httpx.get(f"{live.url}/v1/models").status_code == 401
        assert httpx.get(f"{live.url}/metrics", headers={"X-API-Key": "s3cret"}).status_code == 200
        # the page, its assets, the health check and the document stay reachable
        for path in ("/", "/static/app.js", "/healthz", "/openapi.json", "/v1/tasks"):
            assert httpx.get(f"{live.url}{path}").status_code == 200, path
        doc = httpx.get(f"{live.url}/openapi.json").json()
        assert "bearer" in doc["components"]["securitySchemes"]
        assert doc["paths"]["/v1/caption"]["post"]["security"]
        assert "401" in doc["paths"]["/v1/caption"]["post"]["responses"]
        assert "security" not in doc["paths"]["/healthz"]["get"]
        # an unauthenticated oversized body is refused for the key, before it is read
        r = httpx.post(url, content=b"x" * 100_000, headers={"content-type": "application/json"})
        assert r.status_code == 401


def test_settings_are_checked():
    from ofa.errors import InputError
    from ofa.serve import ServeSettings

    for bad in ({"max_batch_size": 0}, {"queue_size": -1}, {"timeout_s": 0},
                {"max_wait_ms": -1}, {"max_body_mb": float("nan")}, {"api_key": " "},
                {"vqa_answers": []}, {"max_score_tokens": 0}, {"max_connections": 1.5},
                {"read_timeout_s": 0}, {"keep_alive_s": float("inf")}):
        with pytest.raises(InputError):
            ServeSettings(**bad)


def test_image_is_decoded_within_the_pixel_limit_only():
    from ofa.serve.images import ImageError, decode_image

    img = Image.new("RGB", (40, 30), (255, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    assert decode_image(buf.getvalue(), max_pixels=1200).size == (40, 30)
    with pytest.raises(ImageError, match="1,199"):
        decode_image(buf.getvalue(), max_pixels=1199)
