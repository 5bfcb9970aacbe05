"""The Chinese checkpoints through the API: vocabulary detection and checks, the Chinese
prompts, token ranges and post-processing of caption / grounding / OCR, and the clear errors of
tasks and vocabularies that do not fit (a tiny random model with the 30,325-id layout)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import ofa
from ofa.checkpoints import save_native
from ofa.errors import InputError
from ofa.model import OFAModel
from ofa.tokenizer_cn import ChineseTokenizer

from conftest import tiny_config


@pytest.fixture(scope="module")
def cn_vocab(shared_dir: Path) -> Path:
    return shared_dir / "oracle" / "cn" / "vocab.txt"


@pytest.fixture(scope="module")
def zh(tmp_path_factory, cn_vocab) -> ofa.OFA:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("zh") / "model"
    save_native(OFAModel(tiny_config(vocab_size=30325)), folder,
                ChineseTokenizer.from_file(cn_vocab))
    return ofa.load(folder, device="cpu", progress=False)


@pytest.fixture()
def line_image(tmp_path) -> str:
    path = tmp_path / "line.png"
    Image.new("RGB", (300, 40), (240, 240, 240)).save(path)
    return str(path)


def test_the_vocabulary_is_found_and_saved(zh):
    assert zh.tokenizer.language == "zh" and zh.tokenizer.vocab_size == 30325
    assert (zh.path / "vocab.txt").is_file() and not (zh.path / "vocab.json").exists()


def test_chinese_prompts_and_settings(zh, line_image):
    cap = zh.caption(line_image, max_len_b=4)
    # the official Chinese prompt: 图片描述了什么内容?
    assert ofa.tasks.get_task("caption").prepare(zh.tokenizer, "").source == [
        0, 1749, 4279, 2993, 6839, 753, 788, 724, 1083, 2163, 140, 2]
    assert isinstance(cap["caption"], str)
    config = ofa.tasks.get_task("caption").generation_config(zh.model.config, zh.tokenizer)
    assert (config.beam_size, config.max_len_b, config.no_repeat_ngram_size) == (8, 128, 3)


def test_grounding_reads_the_chinese_bins(zh, line_image):
    r = zh.ground(line_image, "红色的字", bins_only=True)
    bins = r["tokens"][:4]
    assert all(29325 <= t < 30325 for t in bins), bins  # <bin_*> of the Chinese layout
    assert r["box"] is not None and len(r["box"]) == 4
    source = ofa.tasks.get_task("ground").prepare(zh.tokenizer, "", text="红色的字").source
    assert zh.tokenizer.decode(source) == '这 段 文 字 " 红 色 的 字 " 描 述 的 是 哪 个 区 域 ？'


def test_ocr_reads_without_spaces_and_has_a_document_mode(zh, line_image):
    r = zh.ocr(line_image, max_len_b=6)
    assert " " not in r["text"]
    doc = zh.ocr(line_image, document=True, max_len_b=6)
    assert isinstance(doc["text"], str)
    square = ofa.tasks.get_task("ocr").configure(document=True).preprocess
    assert square.resize == "ocr_document"


def test_tasks_without_chinese_prompts_refuse_clearly(zh, line_image):
    with pytest.raises(InputError, match="vqa task needs a model with the English vocabulary"):
        zh.vqa(line_image, "什么颜色?")


def test_ocr_on_an_english_model_refuses_clearly(line_image):
    demo = ofa.load("shapes-demo", device="cpu")
    with pytest.raises(InputError, match="ocr task needs a model with the Chinese vocabulary "
                                         r"\(e.g. ofa-cn-ocr-base\)"):
        demo.ocr(line_image)


def test_a_vocabulary_that_does_not_fit_the_checkpoint(zh, cn_vocab, bpe_dir):
    with pytest.raises(InputError, match="Chinese BERT WordPiece, 30,325 ids.*59,457 rows"):
        ofa.load("shapes-demo", device="cpu", vocab=cn_vocab)
    with pytest.raises(InputError, match="English GPT-2 BPE, 59,457 ids.*30,325 rows"):
        ofa.load(zh.path, device="cpu", vocab=bpe_dir)


def test_non_utf8_text_is_one_clear_error(zh, line_image):
    with pytest.raises(InputError, match="UTF-8"):
        zh.ground(line_image, "\udcff字")


def test_eval_ocr_on_the_official_tsv_layout(zh, line_image, tmp_path, capsys):
    import base64
    import json

    from ofa import cli

    b64 = base64.urlsafe_b64encode(Path(line_image).read_bytes()).decode()
    tsv = tmp_path / "ocr_test.tsv"
    tsv.write_text(f"0\t{b64}\t北京 欢迎你\n1\t{b64}\tＯＦＡ\n", encoding="utf-8")
    out = tmp_path / "eval"
    code = cli.main(["eval", "ocr", "--model", str(zh.path), "--data", str(tsv), "--out",
                     str(out), "--device", "cpu", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    flat = json.dumps(metrics)
    assert "ocr/acc" in flat and "ocr/ned" in flat
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 2 and all(" " not in p["prediction"] for p in preds)
