"""configs/official: every recipe loads and trains two updates on tiny TSVs in the official
layouts, with its own settings (batch shape, freezing, constraints, EMA, SCST, noise) and only
the model, sizes and paths swapped for tiny ones."""

from __future__ import annotations

import base64
import io
import json
import pickle
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from ofa import cli
from ofa.checkpoints import save_native
from ofa.model import OFAModel
from ofa.tokenizer import OFATokenizer
from ofa.train import Trainer, build_config
from ofa.train.distributed import DistInfo

from conftest import tiny_config

OFFICIAL = Path(__file__).resolve().parents[2] / "configs" / "official"
CONFIGS = sorted(OFFICIAL.glob("*.yaml"))
ANSWERS = ["yes", "no", "two", "red"]


def _png(seed: int) -> str:
    image = Image.new("RGB", (32, 32), (seed * 70 % 256, seed * 40 % 256, 90))
    image.paste((250, 250, 250), (4 + seed, 5, 20, 24))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _rows(task: str, n: int) -> list[list[str]]:
    """``n`` rows of ``task``'s official TSV (all columns, in the file's order)."""
    rows = []
    for i in range(n):
        if task == "caption":  # uniq_id, image_id, caption(s), object tags, image
            rows.append([str(i), str(100 + i), "a white box on a plain wall && a box",
                         "box&&wall", _png(i)])
        elif task == "ground":  # uniq_id, image_id, text, region, image
            rows.append([f"{i}_1", str(i), "the white box", f"{4 + i},5,20,24", _png(i)])
        elif task == "vqa":  # question_id, image_id, question, answers, object tags, image
            rows.append([str(i), str(i), "is there a box?", f"1.0|!+{ANSWERS[i % 4]}",
                         "box&&wall", _png(i)])
        elif task == "entail":  # uniq_id, image_id, image, hypothesis, premise, label
            rows.append([f"{i}.jpg#0r1e", str(i), _png(i), "there is a box",
                         "a white box on a wall",
                         ("entailment", "neutral", "contradiction")[i % 3]])
        elif task == "classify":  # image (URL-safe base64), class index, label
            image = base64.urlsafe_b64encode(base64.b64decode(_png(i))).decode()
            rows.append([image, str(i % 2 + 1), ("tench", "goldfish")[i % 2]])
        elif task == "summarize":  # source, target
            rows.append([f"the dollar fell {i} percent against the yen on monday",
                         "dollar falls"])
        elif task == "imagine":  # uniq_id, 16 codes (a 32 px canvas), caption
            rows.append([str(i), " ".join(str((i * 37 + k * 11) % 8192) for k in range(16)),
                         "a white box on a wall"])
        elif task == "pairs":  # uniq_id, image, caption, question, refs, objects, dataset, type
            rows += [[f"{i}c", _png(i), "a white box on a wall", "", "", "box&&wall", "coco",
                      "caption"],
                     [f"{i}q", _png(i), "", "is there a box?", "0.9|!+yes&&0.3|!+no", "", "vqa",
                      "qa"],
                     [f"{i}g", _png(i), "the white box", "", f"{4 + i},5,20,24", "", "refcoco",
                      "visual_grounding"]]
        elif task == "text":  # uniq_id, text
            rows.append([str(i), "The dollar fell against the yen on Monday, traders said."])
        elif task == "image":  # image_id, image, the centre's codes
            rows.append([str(i), _png(i), " ".join(str(k * 5 + i) for k in range(16))])
        elif task == "detection":  # image_id, image, x0,y0,x1,y1,cat_id,name&&...
            rows.append([str(i), _png(i), f"{4 + i},5,20,24,1,box&&0,0,31,3,2,wall"])
        elif task.startswith("glue:"):  # OFA's glue_data files (no header)
            rows.append(_glue_row(task.split(":")[1], i))
    return rows


def _glue_row(dataset: str, i: int) -> list[str]:
    """Row ``i`` of OFA's ``<dataset>_*.tsv``, every column the official selected_cols read."""
    a, b = f"the box is white {i}", "a white box"
    return {"sst2": [a, str(i % 2)], "cola": [str(i), a, str(i % 2)],
            "mrpc": [a, b, str(i % 2)], "qqp": [str(i), "1", "2", a, b, str(i % 2)],
            "qnli": [str(i), "what is white?", a, ("entailment", "not_entailment")[i % 2]],
            "rte": [str(i), a, b, ("entailment", "not_entailment")[i % 2]],
            "mnli": [a, b, str(i % 3)]}[dataset]


def _negatives(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "all_captions.txt").write_text("a dog on a couch\ntwo cats\n")
    (folder / "object.txt").write_text("box\nwall\ndog\n")
    (folder / "type2ans.json").write_text(json.dumps({"yes/no": ["yes", "no"],
                                                      "other": ["yes", "no", "red"]}))
    return folder


def _tiny_recipe(path: Path, tmp: Path, init: Path) -> dict:
    """The recipe as written, with tiny files in place of the official ones."""
    data = yaml.safe_load(path.read_text())
    for spec in [*data["data"]["train"], *data["data"].get("valid", [])]:
        tsv = tmp / Path(spec["path"]).name
        if not tsv.exists():
            task = spec.get("pretrain") or spec["tasks"][0]
            if task == "glue":  # the dataset: OFA's file name (sst2_train.tsv)
                task = "glue:" + tsv.name.split("_")[0]
            rows = _rows(task, 6 if "train" in tsv.name else 3)
            tsv.write_text("".join("\t".join(r) + "\n" for r in rows))
        spec["path"] = str(tsv)
    if data["data"].get("vqa_answers"):
        answers = tmp / Path(data["data"]["vqa_answers"]).name
        answers.write_bytes(pickle.dumps({a: i for i, a in enumerate(ANSWERS)}))
        data["data"]["vqa_answers"] = str(answers)
    if data["data"].get("negatives"):
        data["data"]["negatives"] = str(_negatives(tmp / "negatives"))
    for spec in data["data"]["train"]:
        if spec.get("image_size"):
            spec["image_size"] = 32
    if data.get("scst"):  # the document frequencies, made as the config's comment says
        df = tmp / "cider-df.json.gz"
        train = data["data"]["train"][0]
        cli.main(["data", "cider-df", train["path"], "--selected-cols",
                  ",".join(map(str, train["selected_cols"])), "--out", str(df)])
        data["scst"]["df"] = str(df)
    model = data["model"]
    model["init"] = str(init)
    if "image_size" in model:
        model["image_size"] = 32
    if "code_image_size" in model.get("config", {}):
        model["config"]["code_image_size"] = 32
    # two micro-batches per update; a pretraining mix needs 12 rows for its ratios 8:2:1:1
    batch = 6 if data["data"].get("negatives") else 2
    data.update(output_dir=str(tmp / "run"), global_batch=2 * batch, batch_size=batch,
                max_epochs=None,
                max_updates=2, valid_interval=2, save_interval=2, valid_batch_size=4,
                threads=1, device="cpu")
    data.pop("warmup_updates", None)
    data["data"]["max_target_length"] = min(data["data"]["max_target_length"], 24)
    return data


@pytest.fixture(scope="module")
def tiny_init(tmp_path_factory, bpe_dir) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("init") / "tiny"
    save_native(OFAModel(tiny_config(d_model=32, ffn_dim=64, attention_heads=2)).eval(),
                folder, OFATokenizer.from_dir(bpe_dir))
    return folder


def test_every_published_run_has_a_recipe():
    names = {p.stem for p in CONFIGS}
    for task in ("caption-stage1", "caption-stage2", "refcoco", "refcocoplus", "refcocog",
                 "vqa", "snli-ve"):
        assert {f"{task}-base", f"{task}-large"} <= names
    assert {"imagenet-large", "gigaword-large", "image-gen-stage1-large", "pretrain-base",
            "pretrain-large"} <= names
    # run_scripts/glue publishes OFA-Large runs only
    assert {f"glue-{d}-large" for d in ("sst2", "cola", "mrpc", "qqp", "qnli", "rte",
                                        "mnli")} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_trains_two_updates(path, tiny_init, tmp_path, capsys):
    official = build_config(yaml.safe_load(path.read_text()), str(path))
    assert official.data.train and official.lr > 0
    assert (official.max_epochs is None) != (official.max_updates == 1000)  # one of them set
    cfg = build_config(_tiny_recipe(path, tmp_path, tiny_init), path.name)
    trainer = Trainer(cfg, progress=False, info=DistInfo(0, 1, 0, torch.device("cpu")))
    assert trainer.cfg.update_freq == 2  # global_batch over two micro-batches
    if any(d.pretrain for d in cfg.data.train):  # pairs and extras in loss groups of their own
        micro = [mb for step in range(4) for mb in trainer.batches[step]]
        assert {mb.group for mb in micro} == {0, 1}
        assert {t for mb in micro for t in mb.tasks} >= {"caption", "itm", "vqa", "ground",
                                                         "region_caption"}
    frozen = trainer.model.embed_tokens.weight.requires_grad is False
    assert frozen == official.model.freeze_embeddings
    noise = [d.decoder_noise for d in cfg.data.train]
    assert trainer.batches.decoder_noise == noise
    result = trainer.train()
    assert result["step"] == 2
    logs = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    assert logs and all(torch.isfinite(torch.tensor(float(yaml.safe_load(line)["loss"])))
                        for line in logs)
    if cfg.data.valid:  # validated with the task's metric and kept as best
        assert cfg.keep_best in (result.get("metrics") or {})
        assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
    if cfg.scst is not None:
        assert "reward" in yaml.safe_load(logs[-1])
