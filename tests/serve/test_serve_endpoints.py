"""Every task endpoint over real HTTP, as JSON (base64 image) and as multipart (file upload):
the answers are the ones the Python API gives for the same image, plus latency fields."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image

from ofa.demo import DEMO_IMAGE, DEMO_QUERIES
from ofa.tasks import TASKS

QUERIES = __import__("json").loads(DEMO_QUERIES.read_text())
IMG = str(DEMO_IMAGE)


def post(live, task: str, json=None, files=None, data=None, **kw) -> httpx.Response:
    return httpx.post(f"{live.url}/v1/{task}", json=json, files=files, data=data, timeout=60,
                      **kw)


def both_ways(live, task: str, fields: dict, png: bytes, b64: str) -> list[dict]:
    """The same request as JSON and as multipart; both must succeed."""
    as_json = post(live, task, json={"image": b64, **fields})
    as_form = post(live, task, files={"image": ("demo.png", png, "image/png")}, data=fields)
    out = []
    for r in (as_json, as_form):
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "shapes-demo"
        assert body["latency_ms"] > 0 and 0 <= body["queue_ms"] <= body["latency_ms"]
        assert body["batch_size"] >= 1
        assert body["tokens"] and body["tokens"][-1] == 2  # ends with EOS
        out.append(body)
    return out


def test_caption(shared_server, demo_model, png_bytes, png_b64):
    expected = demo_model.caption(IMG)["caption"]
    for body in both_ways(shared_server, "caption", {}, png_bytes, png_b64):
        assert body["caption"] == expected
    assert "triangle" in expected  # the demo image holds a triangle: the model is really used


def test_caption_decoding_options(shared_server, demo_model, png_bytes, png_b64):
    expected = demo_model.caption(IMG, beam_size=2, max_len_b=3)
    for body in both_ways(shared_server, "caption", {"beam_size": 2, "max_len": 3},
                          png_bytes, png_b64):
        assert body["caption"] == expected["caption"]
        assert len(body["tokens"]) <= 4


def test_vqa_uses_the_servers_answer_list(shared_server, demo_model, demo_answers, png_bytes,
                                          png_b64):
    question = QUERIES["question"]
    expected = demo_model.vqa(IMG, question, answers=demo_answers)["answer"]
    for body in both_ways(shared_server, "vqa", {"question": question}, png_bytes, png_b64):
        assert body["answer"] == expected
        assert body["answer"] in demo_answers
        assert body["question"] == question


def test_vqa_all_candidates_mode(shared_server, demo_model, png_bytes, png_b64):
    question, answers = QUERIES["question"], ["red", "purple", "green"]
    expected = demo_model.vqa(IMG, question, answers=answers, mode="all")
    as_json = post(shared_server, "vqa", json={"image": png_b64, "question": question,
                                               "answers": answers, "mode": "all"})
    as_form = post(shared_server, "vqa", files={"image": ("d.png", png_bytes, "image/png")},
                   data={"question": question, "answers": answers, "mode": "all"})
    for r in (as_json, as_form):
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body["scores"]) == set(answers)
        assert body["answer"] == expected["answer"]
        assert body["scores"][body["answer"]] == pytest.approx(max(body["scores"].values()))


def test_ground_box_in_original_pixels(shared_server, demo_model, png_bytes, png_b64):
    text = QUERIES["text"]
    expected = demo_model.ground(IMG, text)["box"]
    for body in both_ways(shared_server, "ground", {"text": text}, png_bytes, png_b64):
        assert body["box"] == pytest.approx(expected, abs=0.01)
        assert body["image_size"] == [128, 128]
    # the same scene stretched to twice the width: the box is in the new image's pixels
    wide = Image.open(DEMO_IMAGE).convert("RGB").resize((256, 128), Image.NEAREST)
    buf = io.BytesIO()
    wide.save(buf, format="PNG")
    r = post(shared_server, "ground", json={"image": base64.b64encode(buf.getvalue()).decode(),
                                            "text": text})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image_size"] == [256, 128]
    assert body["box"] == pytest.approx(demo_model.ground(wide, text)["box"], abs=0.01)
    x0, y0, x1, y1 = body["box"]  # x doubled, y unchanged, up to a location bin or two
    assert (x0, x1) == pytest.approx((2 * expected[0], 2 * expected[2]), abs=8)
    assert (y0, y1) == pytest.approx((expected[1], expected[3]), abs=4)


def test_entail(shared_server, demo_model, png_bytes, png_b64):
    hypothesis = "there is a triangle"
    expected = demo_model.entail(IMG, hypothesis)
    for body in both_ways(shared_server, "entail", {"hypothesis": hypothesis}, png_bytes,
                          png_b64):
        assert (body["answer"], body["label"]) == (expected["answer"], expected["label"])
        assert set(body["scores"]) == {"yes", "no", "maybe"}


def test_classify(shared_server, demo_model, png_bytes, png_b64):
    classes = ["triangle", "square", "circle"]
    expected = demo_model.classify(IMG, classes, topk=2)
    for body in both_ways(shared_server, "classify", {"classes": classes, "topk": 2},
                          png_bytes, png_b64):
        assert body["label"] == expected["label"]
        assert [c["label"] for c in body["topk"]] == [c["label"] for c in expected["topk"]]
        scores = [c["score"] for c in body["topk"]]
        assert scores == sorted(scores, reverse=True)


def test_duplicate_candidates_are_scored_once(shared_server, png_b64):
    r = post(shared_server, "classify", json={"image": png_b64, "topk": 5,
                                              "classes": ["square", "triangle", "square"]})
    assert r.status_code == 200, r.text
    assert sorted(c["label"] for c in r.json()["topk"]) == ["square", "triangle"]


def test_summarize_is_text_only(shared_server, demo_model, png_b64):
    text = "the red square is next to a big blue circle"
    r = post(shared_server, "summarize", json={"text": text})
    assert r.status_code == 200, r.text
    assert r.json()["summary"] == demo_model.summarize(text)["summary"]
    r = post(shared_server, "summarize", files={"text": (None, text.encode())})  # multipart
    assert r.status_code == 200, r.text
    assert r.json()["summary"] == demo_model.summarize(text)["summary"]
    r = post(shared_server, "summarize", json={"text": text, "image": png_b64})
    assert r.status_code == 422 and "image" in r.json()["detail"]
    r = post(shared_server, "summarize", data={"text": text},
             files={"image": ("d.png", b"\x89PNG", "image/png")})
    assert r.status_code == 422 and "image" in r.json()["detail"]


def test_generate_with_and_without_image(shared_server, demo_model, png_bytes, png_b64):
    prompt = " what does the image describe?"
    with_image = demo_model.generate(prompt, IMG)["text"]
    for body in both_ways(shared_server, "generate", {"prompt": prompt}, png_bytes, png_b64):
        assert body["text"] == with_image
    r = post(shared_server, "generate", json={"prompt": prompt})
    assert r.status_code == 200, r.text
    assert r.json()["text"] == demo_model.generate(prompt)["text"]


def test_data_url_and_wrapped_base64_are_accepted(shared_server, png_bytes, png_b64):
    wrapped = "\n".join(png_b64[i:i + 76] for i in range(0, len(png_b64), 76))
    for image in ("data:image/png;base64," + png_b64, wrapped):
        r = post(shared_server, "caption", json={"image": image})
        assert r.status_code == 200, r.text


def test_image_modes_and_formats(shared_server, png_bytes):
    src = Image.open(io.BytesIO(png_bytes))
    for mode, fmt in (("L", "PNG"), ("RGBA", "PNG"), ("P", "GIF"), ("RGB", "JPEG"),
                      ("RGB", "WEBP"), ("CMYK", "TIFF")):
        buf = io.BytesIO()
        src.convert(mode).save(buf, format=fmt)
        r = post(shared_server, "caption", files={"image": (f"x.{fmt.lower()}", buf.getvalue())})
        assert r.status_code == 200, (mode, fmt, r.text)


def test_health_and_models(shared_server):
    health = httpx.get(f"{shared_server.url}/healthz").json()
    assert health == {"status": "ok", "model": "shapes-demo", "queue_depth": 0}
    models = httpx.get(f"{shared_server.url}/v1/models").json()["models"]
    assert [m["id"] for m in models] == ["shapes-demo"]
    assert models[0]["device"] == "cpu" and models[0]["dtype"] == "float32"
    assert "/v1/ground" in models[0]["endpoints"]


def test_openapi_document_is_complete(shared_server):
    doc = httpx.get(f"{shared_server.url}/openapi.json").json()
    assert {f"/v1/{t}" for t in TASKS} | {"/healthz", "/v1/models", "/v1/tasks",
                                          "/metrics"} <= set(doc["paths"])
    for task in TASKS.values():
        op = doc["paths"][f"/v1/{task.name}"]["post"]
        content = op["requestBody"]["content"]
        assert set(content) == {"application/json", "multipart/form-data"}
        schema = content["application/json"]["schema"]
        has_image = "image" in schema["properties"]
        assert has_image == (task.image != "none")
        assert ("image" in schema["required"]) == (task.image == "required")
        if has_image:
            assert content["multipart/form-data"]["schema"]["properties"]["image"][
                "format"] == "binary"
        assert {"200", "400", "413", "415", "422", "503", "504"} <= set(op["responses"])
        assert "Retry-After" in op["responses"]["503"]["headers"]
        result = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        fields = doc["components"]["schemas"][result.rsplit("/", 1)[1]]["properties"]
        assert {"latency_ms", "batch_size", "model", *task.outputs} <= set(fields)
    assert "securitySchemes" not in doc.get("components", {})  # no key configured
    assert "/" not in doc["paths"]
