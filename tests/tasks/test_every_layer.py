"""Every task of the table goes through every layer: the Python API, the CLI with --json, the
server endpoint, record validation, ``ofa eval`` scoring and training featurization. The
inputs are built from each task's declaration, so a task added to the table is walked too,
and one that misses a layer fails here."""

from __future__ import annotations

import base64
import json
from typing import get_args

import pytest
import torch

import ofa
from ofa import cli
from ofa.data.records import validate_record
from ofa.demo import DEMO_IMAGE
from ofa.evaluate import score_predictions
from ofa.tasks import TASKS, Task, TaskField
from ofa.train.featurize import build_sample

TEXT = "a small red square"  # a ShapesWorld caption: the drawing task scores those
CANDIDATES = ["red", "blue", "square"]


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict:
    """The files tasks need besides the model, by part name: a tiny VQGAN for drawing."""
    from tiny_imagegen import write_vqgan

    return {"vqgan": write_vqgan(tmp_path_factory.mktemp("parts") / "vqgan")}


@pytest.fixture(scope="module")
def demo(parts):
    return ofa.load("shapes-demo", device="cpu").attach(**parts)


@pytest.fixture(scope="module")
def chinese_folder(tmp_path_factory, shared_dir):
    """A tiny random model with the Chinese checkpoints' vocabulary, for the tasks that only
    those have prompts for (OCR)."""
    from ofa.checkpoints import save_native
    from ofa.model import OFAModel
    from ofa.tokenizer_cn import ChineseTokenizer

    from conftest import tiny_config

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("zh") / "tiny-zh"
    save_native(OFAModel(tiny_config(vocab_size=30325)), folder,
                ChineseTokenizer.from_file(shared_dir / "oracle" / "cn" / "vocab.txt"))
    return folder


@pytest.fixture(scope="module")
def models(demo, chinese_folder):
    """Per vocabulary: (loaded model, its --model argument, a test client of its server)."""
    from fastapi.testclient import TestClient

    from ofa.serve import ServeSettings, create_app

    chinese = ofa.load(chinese_folder, device="cpu")
    with TestClient(create_app(demo, ServeSettings())) as en, \
            TestClient(create_app(chinese, ServeSettings())) as zh:
        yield {"en": (demo, "shapes-demo", en), "zh": (chinese, str(chinese_folder), zh)}


def sample_value(f: TaskField):
    """A valid value of a declared input, or None to leave an optional one out."""
    if f.kind == "text":
        # left out: a caption's own prompt, and GLUE's second text (its default dataset,
        # SST-2, reads one)
        return TEXT if f.required or f.name not in ("prompt", "text2") else None
    if f.kind == "texts":
        return CANDIDATES if f.required or not f.per_input else None
    if f.kind == "int":
        return 2
    return None  # choices and flags keep their defaults


def sample_inputs(spec: Task) -> dict:
    return {f.name: v for f in spec.fields if (v := sample_value(f)) is not None}


def cli_argv(spec: Task, inputs: dict, tmp_path) -> list[str]:
    argv = [] if spec.image == "none" else [str(DEMO_IMAGE)]
    for f in spec.fields:
        if f.name not in inputs:
            continue
        value = inputs[f.name]
        if spec.image == "none" and f is spec.input_fields[0]:
            argv.append(value)
        elif f.kind == "texts" and not f.per_input:
            path = tmp_path / f"{f.name}.txt"
            path.write_text("\n".join(value) + "\n")
            argv += ["--" + f.name.replace("_", "-"), str(path)]
        elif f.kind == "texts":
            argv += ["--" + f.name.replace("_", "-"), ",".join(value)]
        else:
            argv += ["--" + f.name.replace("_", "-"), str(value)]
    return argv


def same_answer(a, b) -> bool:
    if isinstance(a, list) and a and isinstance(a[0], float):
        return b is not None and all(abs(x - y) < 1e-3 for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_through_every_layer(name, models, parts, tmp_path, capsys):
    spec = TASKS[name]
    demo, model_arg, client = models[spec.languages[0]]
    inputs = sample_inputs(spec)
    images = None if spec.image == "none" else [str(DEMO_IMAGE)]

    # the Python API
    out = demo.run(name, images, **inputs)
    result = out[0] if isinstance(out, list) else out
    required = {k for k, (kind, _) in spec.outputs.items() if type(None) not in get_args(kind)}
    assert "error" not in result and required <= set(result)
    as_json = spec.to_json(result)  # images as base64 PNG
    answer = as_json[spec.result_key]

    # the CLI, one JSON object per input
    part_flags = [a for p in spec.parts if p.name in parts
                  for a in ("--" + p.name, str(parts[p.name]))]
    code = cli.main([name, *cli_argv(spec, inputs, tmp_path), *part_flags, "--model",
                     model_arg, "--device", "cpu", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert same_answer(json.loads(out.splitlines()[-1])[spec.result_key], answer)

    # the server
    body = {k: v for k, v in inputs.items()
            if next(f for f in spec.fields if f.name == k).serve}
    if images:
        body["image"] = base64.b64encode(DEMO_IMAGE.read_bytes()).decode()
    r = client.post(f"/v1/{name}", json=body)
    assert r.status_code == 200, r.text
    assert same_answer(r.json()[spec.result_key], answer)
    assert name in {t["name"] for t in client.get("/v1/tasks").json()["tasks"]}

    if not spec.record_fields:  # a task without data records has nothing to score or train
        assert spec.primary_metric is None
        return
    # a record whose reference is the prediction: it validates, scores and featurizes
    record = {"task": name, "id": "r0", **({"image": str(DEMO_IMAGE)} if images else {}),
              **{f.record_name: inputs[f.name] for f in spec.input_fields
                 if f.record_name and f.name in inputs},
              **spec.reference(as_json)}
    validate_record(record, "record 1")
    metrics = score_predictions([record], [{"prediction": answer}])
    assert f"{name}/{spec.primary_metric}" in metrics
    sample = build_sample(record, demo.tokenizer, image_size=demo.image_size)
    assert sample.task == name and sample.target[-1] == 2
    assert (sample.image is None) == (spec.image == "none")
