"""The server is built from the task table: every task of ``ofa.tasks.TASKS`` gets its route,
request and result schemas and its entry in ``GET /v1/tasks``, and a task added to the table
is served with no server edit."""

from __future__ import annotations

import httpx

import ofa.tasks
from ofa.demo import DEMO_IMAGE
from ofa.serve.schemas import request_model
from ofa.tasks import TASKS, CaptionTask

IMG = str(DEMO_IMAGE)


class DescribeTask(CaptionTask):
    """The caption task under another name: a task the server has never heard of."""

    name = "describe"
    summary = "Describe an image (a caption under another name)"


def test_v1_tasks_lists_every_task_with_its_fields(shared_server):
    r = httpx.get(f"{shared_server.url}/v1/tasks")
    assert r.status_code == 200
    listed = {t["name"]: t for t in r.json()["tasks"]}
    assert list(listed) == list(TASKS)
    for name, task in TASKS.items():
        info = listed[name]
        assert (info["summary"], info["path"], info["image"], info["result_key"]) == (
            task.summary, f"/v1/{name}", task.image, task.result_key)
        fields = [f["name"] for f in info["fields"]]
        served = [f.name for f in task.fields if f.serve]
        decoding = ["beam_size", "max_len"] if task.kind == "generate" else []
        assert fields == served + decoding
    vqa = {f["name"]: f for f in listed["vqa"]["fields"]}
    assert "zero_shot" not in vqa  # serve=False: not offered over HTTP
    assert vqa["question"] == {"name": "question", "kind": "text", "required": True,
                               "help": "the question", "choices": [], "max_chars": 1000}
    assert vqa["mode"]["choices"] == ["beam", "all", "open"]
    assert vqa["answers"]["max_chars"] == 200  # a candidate
    summarize = listed["summarize"]["fields"][0]
    assert summarize["max_chars"] == 20_000


def test_requests_keep_their_wire_format():
    vqa = request_model(TASKS["vqa"])
    req = vqa.model_validate({"question": "q?", "answers": ["b", "a", "b"], "max_len": 3})
    assert req.inputs() == {"question": "q?", "objects": None}
    # lists deduplicated in order, unset options at their default, decoding apart
    assert req.options() == {"answers": ("b", "a"), "mode": "beam",
                             "decoding": {"max_len_b": 3}}
    classify = request_model(TASKS["classify"])
    assert classify.model_validate({"classes": ["x"]}).options() == {"classes": ("x",),
                                                                     "topk": 5}
    entail = request_model(TASKS["entail"])
    assert entail.model_validate({"hypothesis": "h"}).options() == {}  # scores: no decoding
    schema = vqa.model_json_schema()
    assert schema["additionalProperties"] is False
    assert schema["properties"]["answers"]["maxItems"] == 2000
    assert schema["properties"]["beam_size"]["maximum"] == 10


def test_a_task_added_to_the_table_is_served(monkeypatch, serve, demo_model, png_b64,
                                             png_bytes):
    monkeypatch.setitem(ofa.tasks.TASKS, "describe", DescribeTask())
    expected = demo_model.caption(IMG)["caption"]
    with serve() as live:
        r = httpx.post(f"{live.url}/v1/describe", json={"image": png_b64, "beam_size": 2},
                       timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["caption"] == demo_model.caption(IMG, beam_size=2)["caption"]
        r = httpx.post(f"{live.url}/v1/describe", files={"image": ("d.png", png_bytes)},
                       timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["caption"] == expected
        r = httpx.post(f"{live.url}/v1/describe", json={"beam_size": 2})
        assert r.status_code == 422 and "image: Field required" in r.json()["detail"]

        doc = httpx.get(f"{live.url}/openapi.json").json()
        op = doc["paths"]["/v1/describe"]["post"]
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        assert schema["required"] == ["image"]
        assert {"image", "prompt", "beam_size", "max_len"} == set(schema["properties"])
        result = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert result.endswith("/DescribeResult")
        tasks = httpx.get(f"{live.url}/v1/tasks").json()["tasks"]
        assert [t["name"] for t in tasks][-1] == "describe"
        models = httpx.get(f"{live.url}/v1/models").json()["models"]
        assert "/v1/describe" in models[0]["endpoints"]
        metrics = httpx.get(f"{live.url}/metrics").text
        assert 'ofa_queue_depth{task="describe"} 0.0' in metrics



def test_every_declared_option_is_served(shared_server, demo_model, png_b64, png_bytes):
    text = "the blue square"
    expected = demo_model.ground(IMG, text, bins_only=True)["box"]
    for flag in ("true", "True"):  # multipart: a flag as text
        r = httpx.post(f"{shared_server.url}/v1/ground", files={"image": ("d.png", png_bytes)},
                       data={"text": text, "bins_only": flag}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["box"] == expected
    r = httpx.post(f"{shared_server.url}/v1/ground", timeout=60,
                   json={"image": png_b64, "text": text, "bins_only": True})
    assert r.json()["box"] == expected
    # a per-input list: VQA's object tags, read into the question
    r = httpx.post(f"{shared_server.url}/v1/vqa", timeout=60,
                   json={"image": png_b64, "question": "what is it?", "objects": ["square"]})
    assert r.status_code == 200, r.text
    assert r.json()["question"] == "what is it? object: square"
