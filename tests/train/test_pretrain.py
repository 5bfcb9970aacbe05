"""Pretraining: the official samples of each pretraining file kind, whole-word span masking,
patch sampling, the two loss groups, and a pretraining run on ShapesWorld's pretraining files
that trains and resumes exactly."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_trainer import TINY_MODEL, _killed_run, _trainer

from ofa.boxes import box_to_bins
from ofa.data.pretrain_tsv import read_pretrain_tsv
from ofa.data.shapes import ShapesWorld
from ofa.data.shapes_pretrain import write_pretraining_data
from ofa.errors import InputError
from ofa.model.encoder import OFAEncoder
from ofa.tokenizer import BOS, CODE_OFFSET, EOS, MASK, OFATokenizer
from ofa.train.pretrain import (
    IMAGE_INFILL,
    REGION_CAPTION,
    TEXT_INFILL,
    Negatives,
    PretrainSamples,
    TextMasker,
)

from conftest import tiny_config as tiny_model_config

VQGAN = Path(__file__).resolve().parents[2] / "src/ofa/assets/shapes-demo/vqgan"
WORDS = ("apple river mountain yellow table garden window silver kitchen bottle orange pencil "
         "rocket forest candle doctor island guitar jacket ladder marble napkin ocean pepper "
         "quilt saddle tunnel violin walnut zebra photosynthesis").split()  # distinct tokens


@pytest.fixture(scope="module")
def tokenizer(bpe_dir) -> OFATokenizer:
    return OFATokenizer.from_dir(bpe_dir)


@pytest.fixture(scope="module")
def pretrain_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrain")
    world = ShapesWorld(seed=3, image_size=32, max_shapes=2)
    write_pretraining_data(world, out, {"pretrain": 12, "val": 3}, VQGAN, progress=False)
    return out


def _deleted_spans(original: list[int], masked: list[int]) -> list[tuple[int, int]]:
    """[start, end) runs of ``original`` missing from ``masked`` (the tokens are distinct)."""
    kept = {t for t in masked if t != MASK}
    spans, start = [], None
    for i, t in enumerate(original + [-1]):
        if t not in kept and t != -1 and start is None:
            start = i
        elif (t in kept or t == -1) and start is not None:
            spans.append((start, i))
            start = None
    return spans


def test_text_masker_masks_whole_words_in_spans(tokenizer):
    masker = TextMasker(tokenizer)
    ids = [BOS, *tokenizer.encode(" " + " ".join(WORDS), add_bos_eos=False), EOS]
    assert len(set(ids)) == len(ids)  # distinct tokens: deletions can be located
    starts = {i for i, t in enumerate(ids) if masker.word_start[t]} - {0, len(ids) - 1}
    assert len(starts) == len(WORDS) and len(ids) - 2 > len(WORDS)  # some words span tokens
    shares = []
    for seed in range(40):
        masked = masker(ids, np.random.default_rng(seed))
        assert masked == masker(ids, np.random.default_rng(seed))
        assert masked[0] == BOS and masked[-1] == EOS and MASK in masked
        kept = [t for t in masked if t != MASK]
        assert kept == [t for t in ids if t in set(kept)]  # the rest, in order
        removed_words = 0
        for a, b in _deleted_spans(ids, masked):
            assert a in starts and (b in starts or b == len(ids) - 1)  # whole words only
            removed_words += sum(1 for i in range(a, b) if i in starts)
        assert removed_words <= math.ceil(0.3 * len(WORDS))
        shares.append(removed_words / len(WORDS))
    assert 0.22 < np.mean(shares) <= 0.3 + 1e-9
    assert masker([BOS, EOS], np.random.default_rng(0)) == [BOS, EOS]


def test_samples_follow_the_official_prompts(pretrain_dir, tokenizer):
    negatives = Negatives.load(pretrain_dir / "negatives")
    make = PretrainSamples(tokenizer, negatives, max_source_length=80, max_target_length=30)
    pairs = read_pretrain_tsv(pretrain_dir / "pairs_pretrain.tsv", "pairs")
    by_kind = {}
    for r in pairs:
        by_kind.setdefault(r["pretrain"], r)
    assert set(by_kind) == {"caption", "qa", "grounding"}

    caption = by_kind["caption"]
    answers = set()
    for seed in range(30):
        sample, itm = make(caption, 32, np.random.default_rng(seed))
        assert sample.source == tokenizer.encode(" what does the image describe?")
        assert sample.target[:-1] == tokenizer.encode(" " + caption["caption"],
                                                      add_bos_eos=False)
        prompt = tokenizer.decode(itm.source)
        assert prompt.startswith(' does the image describe "') and prompt.endswith('"?')
        shown = prompt[len(' does the image describe " '):-len(' "?')]
        answer = tokenizer.decode(itm.target[:-1]).strip()
        assert (shown == caption["caption"]) == (answer == "yes")
        if answer == "no":
            assert shown in negatives.captions or any(
                shown == caption["caption"].replace(o, p) for o in caption["objects"]
                for p in negatives.objects)
        answers.add(answer)
        assert sample.group == itm.group == 0 and torch.equal(sample.image, itm.image)
    assert answers == {"yes", "no"}

    qa = by_kind["qa"]
    sample, itm = make(qa, 32, np.random.default_rng(1))
    assert sample.source == tokenizer.encode(" " + qa["question"])
    assert sample.decoder_input[0] == BOS and sample.target[-1] == EOS  # no question prefix
    answer = max(qa["answers"], key=qa["answers"].get)
    assert tokenizer.decode(sample.target[:-1]).strip() == answer
    assert tokenizer.decode(itm.source).startswith(
        f' what is the answer to question " {qa["question"]} ". is "')

    ground = by_kind["grounding"]
    box_sample, region = make(ground, 32, np.random.default_rng(0))
    bins = box_to_bins(ground["box"], (32, 32), 32)
    assert box_sample.target == [*bins, EOS]
    assert region.source == [BOS, *tokenizer.encode(REGION_CAPTION, add_bos_eos=False), *bins,
                             EOS]
    assert tokenizer.decode(region.target[:-1]).strip() == ground["text"]

    text = read_pretrain_tsv(pretrain_dir / "text_pretrain.tsv", "text")[0]
    (infill,) = make(text, None, np.random.default_rng(0))
    prompt = tokenizer.encode(TEXT_INFILL, add_bos_eos=False)
    assert infill.source[:len(prompt) - 1] == [BOS, *prompt[:-2]]
    assert infill.source[-3:] == [*prompt[-2:], EOS] and MASK in infill.source
    assert infill.target[:-1] == tokenizer.encode(" " + text["text"].lower(), add_bos_eos=False)
    assert infill.image is None and infill.group == 1 and infill.weight == 2.0

    image = read_pretrain_tsv(pretrain_dir / "image_pretrain.tsv", "image")[0]
    assert len(image["codes"]) == 16  # the middle 4 x 4 of the VQGAN's 8 x 8
    (drawn,) = make(image, 32, np.random.default_rng(0))
    assert drawn.source == tokenizer.encode(IMAGE_INFILL) and drawn.code
    assert drawn.target == [CODE_OFFSET + c for c in image["codes"]] + [EOS]
    assert (drawn.image[:, 8:24, 8:24] == 0).all() and (drawn.image[:, :8] != 0).any()

    detection = read_pretrain_tsv(pretrain_dir / "detection_pretrain.tsv", "detection")[0]
    (detect,) = make(detection, 32, np.random.default_rng(0))
    want = []
    for obj in detection["objects"]:
        want += box_to_bins(obj["box"], (32, 32), 32)
        want += tokenizer.encode(" " + obj["label"], add_bos_eos=False)
    assert detect.target == [*want, EOS] and detect.group == 1


def test_pretraining_configs_are_checked(pretrain_dir, bpe_dir, tmp_path):
    from ofa.train import build_config

    cfg = _pretrain_config(pretrain_dir, bpe_dir, tmp_path / "x")
    cfg["data"] = {**cfg["data"], "negatives": None}
    with pytest.raises(InputError, match="pretraining pairs need ITM negatives"):
        build_config(cfg)
    cfg["data"]["negatives"] = "n"
    cfg["data"]["train"] = [{**cfg["data"]["train"][0], "tasks": ["caption"]}]
    with pytest.raises(InputError, match="a pretraining file makes its own tasks"):
        build_config(cfg)
    cfg["data"]["train"] = [{**cfg["data"]["train"][0], "tasks": None, "pretrain": "words"}]
    with pytest.raises(InputError, match="pretrain must be one of pairs, text, image"):
        build_config(cfg)


def test_pretraining_rows_are_checked(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("1\tAAAA\ta cat\t\t\t\tcoco\tcaptioning\n")
    with pytest.raises(InputError, match=r"pairs.tsv:1: type 'captioning' must be one of"):
        read_pretrain_tsv(path, "pairs")[0]
    path.write_text("1\tAAAA\tlabel\n")
    with pytest.raises(InputError, match=r"detection label 'label' must be x0,y0,x1,y1"):
        read_pretrain_tsv(path, "detection")[0]
    with pytest.raises(InputError, match="unknown pretraining file kind 'words'"):
        read_pretrain_tsv(path, "words")
    with pytest.raises(InputError, match="type2ans.json"):
        Negatives.load(tmp_path)


def test_patch_sampling_keeps_a_random_subset():
    torch.manual_seed(0)
    encoder = OFAEncoder(tiny_model_config(), torch.nn.Embedding(59457, 64)).eval()
    ids = torch.tensor([[BOS, 100, 200, EOS]])
    images = torch.randn(1, 3, 64, 64)  # 4 x 4 = 16 patches
    with torch.no_grad():
        full = encoder(ids, images)
        torch.manual_seed(1)
        a = encoder(ids, images, sample_patches=5)
        torch.manual_seed(1)
        again = encoder(ids, images, sample_patches=5)
        torch.manual_seed(2)
        b = encoder(ids, images, sample_patches=5)
        everything = encoder(ids, images, sample_patches=16)
    assert full.hidden.shape[1] == 16 + 4 and a.hidden.shape[1] == 5 + 4
    assert torch.equal(a.hidden, again.hidden) and not torch.equal(a.hidden[:, :5],
                                                                  b.hidden[:, :5])
    assert torch.equal(everything.hidden, full.hidden)


def _pretrain_config(pretrain_dir: Path, bpe_dir: Path, out: Path, **overrides) -> dict:
    train = [{"path": str(pretrain_dir / "pairs_pretrain.tsv"), "pretrain": "pairs", "ratio": 8},
             {"path": str(pretrain_dir / "text_pretrain.tsv"), "pretrain": "text", "ratio": 2},
             {"path": str(pretrain_dir / "image_pretrain.tsv"), "pretrain": "image",
              "ratio": 1},
             {"path": str(pretrain_dir / "detection_pretrain.tsv"), "pretrain": "detection",
              "ratio": 1}]
    cfg = {"output_dir": str(out), "tokenizer": str(bpe_dir), "seed": 5, "device": "cpu",
           "model": {"config": dict(TINY_MODEL), "image_size": 32, "dropout": 0.1,
                     "drop_path": 0.0, "freeze_batchnorm": True},
           "data": {"train": train, "negatives": str(pretrain_dir / "negatives"),
                    "sample_patches": 3, "max_source_length": 64, "max_target_length": 16,
                    "image_codes": 512},
           "batch_size": 6, "update_freq": 2, "max_updates": 6, "lr": 1e-3,
           "warmup_updates": 0, "label_smoothing": 0.0, "log_interval": 1000,
           "valid_interval": 1000, "save_interval": 3, "threads": 1}
    cfg.update(overrides)
    return cfg


def test_loss_groups_are_normalised_apart(pretrain_dir, bpe_dir, tmp_path):
    trainer = _trainer(_pretrain_config(pretrain_dir, bpe_dir, tmp_path / "run",
                                        **{"model": {"config": dict(TINY_MODEL),
                                                     "image_size": 32, "dropout": 0.0,
                                                     "drop_path": 0.0}}))
    micro = trainer.batches[0]
    assert [mb.group for mb in micro] == [0, 1, 0, 1]  # pairs, extras per micro-batch
    original = trainer.model
    reference = copy.deepcopy(original)
    torch.manual_seed(7)
    trainer._ce_backward(micro)
    # by hand: each group's summed loss over that group's tokens in the whole update
    tokens = {g: sum(mb.ntokens for mb in micro if mb.group == g) for g in (0, 1)}
    trainer.model = trainer.wrapped = reference
    torch.manual_seed(7)  # the same patch draws
    for mb in micro:
        (trainer._forward_loss(mb, 0.0).loss / tokens[mb.group]).backward()
    compared = 0
    for (name, p), q in zip(original.named_parameters(), reference.parameters(), strict=True):
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, msg=name)
            compared += 1
    assert compared > 10 and tokens[0] != tokens[1]


def test_pretraining_run_resumes_exactly(pretrain_dir, bpe_dir, tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    result = _trainer(_pretrain_config(pretrain_dir, bpe_dir, reference)).train()
    assert result["step"] == 6
    losses = [json.loads(line)["loss"] for line in
              (reference / "train_log.jsonl").read_text().splitlines()]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    from ofa.api import load

    assert load(reference / "final").task == "pretrained"  # VQA asked as pretrained models are
    cfg = _pretrain_config(pretrain_dir, bpe_dir, tmp_path / "killed")
    _killed_run(cfg, monkeypatch, before_update=5)
    _trainer(cfg, resume=True).train()
    killed = tmp_path / "killed"  # the same losses line for line, the same final weights
    assert (killed / "train_log.jsonl").read_text() == (reference / "train_log.jsonl").read_text()
    assert ((killed / "final" / "model.safetensors").read_bytes()
            == (reference / "final" / "model.safetensors").read_bytes())


def test_shapes_pretraining_files_need_a_vqgan(tmp_path, capsys):
    from ofa import cli

    assert cli.main(["data", "shapes", str(tmp_path), "--train", "2", "--val", "1",
                     "--test", "0", "--pretrain", "4"]) != 0
    assert "--pretrain needs --vqgan" in capsys.readouterr().err


def test_two_processes_train_what_one_does(pretrain_dir, bpe_dir, tmp_path):
    # 2 processes x 6 records read the 12 one process reads; each loss group is normalised by
    # its tokens over both, so the update is the same (patch sampling off: its draws are per
    # process)
    from test_trainer import _ddp_worker, _free_port, _one_step_single
    from torch import multiprocessing as mp

    def config(out: Path, batch: int) -> dict:
        cfg = _pretrain_config(pretrain_dir, bpe_dir, out, batch_size=batch, update_freq=1,
                               adam_eps=1e-6)
        cfg["data"] = {**cfg["data"], "sample_patches": None}
        cfg["model"] = {**cfg["model"], "dropout": 0.0}
        return cfg

    single = _one_step_single(config(tmp_path / "one", 12))
    out_file = str(tmp_path / "ddp_state.pt")
    mp.start_processes(_ddp_worker, args=(2, _free_port(), config(tmp_path / "two", 6),
                                          out_file), nprocs=2, start_method="spawn")
    multi = torch.load(out_file, weights_only=True)
    worst = max((multi[k].float() - single[k].float()).abs().max().item() for k in single)
    assert worst < 1e-5, worst
