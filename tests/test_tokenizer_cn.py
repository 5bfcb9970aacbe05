"""The Chinese vocabulary against the official tokenizer's ids (../shared/oracle/cn fixtures:
fairseq's BertBPE over OFA's utils/BERT_CN_dict)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ofa.errors import InputError
from ofa.tokenizer_cn import ChineseTokenizer


@pytest.fixture(scope="module")
def cn_dir(shared_dir: Path) -> Path:
    folder = shared_dir / "oracle" / "cn"
    if not (folder / "cases" / "tokenizer_cn.json").is_file():
        pytest.skip(f"Chinese fixtures missing in {folder}")
    return folder


@pytest.fixture(scope="module")
def fixture(cn_dir: Path) -> dict:
    return json.loads((cn_dir / "cases" / "tokenizer_cn.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("source", ["vocab.txt", "dict.txt"])
def test_ids_match_the_official_tokenizer(cn_dir, fixture, source):
    tok = ChineseTokenizer.from_file(cn_dir / source)
    for case in fixture["cases"]:
        assert tok.encode(case["text"]) == case["official_ids"], case["text"]
        assert tok.decode(case["official_ids"]) == case["official_decode"], case["text"]
    for task, prompts in fixture["prompts"].items():
        for prompt in prompts:
            assert tok.encode(prompt["text"]) == prompt["ids"], task


def test_layout_follows_the_vocabulary_length(cn_dir, fixture):
    tok = ChineseTokenizer.from_dir(cn_dir)
    special = fixture["special_ids"]
    assert (tok.mask_id, tok.code_offset, tok.bin_offset, tok.vocab_size) == (
        special["mask"], special["code_offset"], special["bin_offset"], special["vocab_size"])
    for token, i in special["bert_specials"].items():
        assert tok.encode(token, add_bos_eos=False) == [i]
        assert tok.id_to_token(i) == token
    assert tok.unk_id == special["bert_specials"]["[UNK]"] == 104  # as the models were trained
    for token, i in special["added_token_ids"].items():
        assert tok.id_to_token(i) == token
    assert tok.bin_id(999) == tok.vocab_size - 1 and tok.code_id(0) == tok.code_offset
    assert tok.encode(" 图片描述了什么内容?") == tok.encode("图片描述了什么内容?")  # spaces idle


def test_bad_input_is_one_clear_error(tmp_path, cn_dir):
    tok = ChineseTokenizer.from_dir(cn_dir)
    with pytest.raises(InputError, match="byte 0xff"):
        tok.encode(b"\xff\xfe".decode("utf-8", "surrogateescape"))
    with pytest.raises(InputError, match="outside the vocabulary"):
        tok.id_to_token(tok.vocab_size)
    (tmp_path / "vocab.txt").write_bytes(b"\xff\n")
    with pytest.raises(InputError, match="not UTF-8"):
        ChineseTokenizer.from_dir(tmp_path)
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    with pytest.raises(InputError, match=r"needs \[UNK\]"):
        ChineseTokenizer.from_dir(tmp_path)
    with pytest.raises(InputError, match="no Chinese vocabulary"):
        ChineseTokenizer.from_dir(tmp_path / "missing")


def test_a_vocab_with_the_fairseq_specials_gives_the_same_ids(cn_dir, fixture, tmp_path):
    """ModelScope's model folders write vocab.txt with <s> <pad> </s> <unk> first."""
    lines = (cn_dir / "vocab.txt").read_bytes().decode("utf-8")
    path = tmp_path / "vocab.txt"
    path.write_bytes(("<s>\n<pad>\n</s>\n<unk>\n" + lines + "<mask>\n").encode("utf-8"))
    tok, ref = ChineseTokenizer.from_file(path), ChineseTokenizer.from_file(cn_dir / "vocab.txt")
    assert tok.vocab_size == ref.vocab_size == 30325
    for case in fixture["cases"]:
        assert tok.encode(case["text"]) == case["official_ids"], case["text"]
