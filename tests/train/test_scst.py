"""SCST (caption stage 2): the leave-one-out reward, the loss's direction, an update on a tiny
model that logs its reward, two processes equal to one, exact kill-and-resume, clear config
errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from test_trainer import (
    _ddp_worker,
    _free_port,
    _killed_run,
    _log_steps,
    _one_step_single,
    _trainer,
    tiny_config,
)

from ofa.data.records import read_jsonl
from ofa.data.shapes import ShapesWorld
from ofa.errors import InputError
from ofa.generate import Hypothesis
from ofa.metrics.cider_d import DocumentFrequency, cider_d, reference_sets
from ofa.tokenizer import BOS, EOS, PAD
from ofa.train import build_config
from ofa.train.config import ScstSettings
from ofa.train.scst import (
    ScstReward,
    gather_references,
    leave_one_out,
    scst_loss,
    scst_sequences,
)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    ShapesWorld(seed=3, image_size=32, max_shapes=2).write(out, {"train": 24, "val": 4},
                                                           progress=False)
    records = read_jsonl(out / "train.jsonl", tasks=["caption"])
    DocumentFrequency.from_references(reference_sets(records)).save(out / "df.json.gz")
    return out


def scst_config(shapes: Path, bpe_dir: Path, out: Path, **overrides) -> dict:
    cfg = tiny_config(shapes, bpe_dir, out, **overrides)
    cfg["data"]["train"] = [{"path": str(shapes / "train.jsonl"), "tasks": ["caption"]}]
    cfg["scst"] = {"df": str(shapes / "df.json.gz"), "samples": 3, "max_len_b": 6}
    return cfg


def test_leave_one_out_baseline():
    assert leave_one_out([1.0, 2.0, 6.0]).tolist() == [1 - 4, 2 - 3.5, 6 - 1.5]
    assert leave_one_out([3.0]).tolist() == [0.0]  # nothing to compare a lone caption with
    assert leave_one_out([2.0, 2.0]).tolist() == [0.0, 0.0]


def test_sequences_and_loss_direction():
    hyps = [Hypothesis(torch.tensor([7, 8, EOS]), 0.0, torch.zeros(3)),
            Hypothesis(torch.tensor([9, EOS]), 0.0, torch.zeros(2))]
    decoder_input, target = scst_sequences(hyps)
    assert decoder_input.tolist() == [[BOS, 7, 8], [BOS, 9, PAD]]
    assert target.tolist() == [[7, 8, EOS], [9, EOS, PAD]]
    logits = torch.zeros(5, 12, requires_grad=True)  # the 5 non-PAD target tokens, row-major
    loss = scst_loss(logits, target, torch.tensor([1.0, -1.0]))
    assert loss.item() == pytest.approx(-(3 * -np.log(12) * 1.0 + 2 * -np.log(12) * -1.0))
    loss.backward()
    # gradient descent raises the rewarded caption's tokens and lowers the other's
    assert logits.grad[0, 7] < 0 and logits.grad[3, 9] > 0


def test_rewards_are_cider_d_against_all_of_an_images_references(shapes, tokenizer):
    records = [{"task": "caption", "image": "/a.png", "caption": "A red circle"},
               {"task": "caption", "image": "/a.png", "caption": "a circle"},
               {"task": "caption", "image": "/b.png", "caption": ["x", "y"]},
               {"task": "vqa", "image": "/a.png", "question": "q?"}]
    gathered = gather_references(records)
    assert [r.get("caption") for r in gathered] == [["A red circle", "a circle"]] * 2 + [
        ["x", "y"], None]
    reward = ScstReward(ScstSettings(df=str(shapes / "df.json.gz")), tokenizer)
    captions = [["a red circle", "a blue square", "red circle"], ["x", "z"]]
    refs = [["A Red circle", "a circle"], ["x", "y"]]
    scores, rewards = reward.rewards(captions, refs)
    expected = cider_d([c for cs in captions for c in cs],
                       [["a red circle", "a circle"]] * 3 + [["x", "y"]] * 2, reward.df)
    assert np.concatenate(scores) == pytest.approx(expected)
    assert rewards[0] == pytest.approx(leave_one_out(expected[:3]))
    assert scores[0][0] > scores[0][2] > scores[0][1]


def test_an_scst_update_logs_its_reward_and_moves_the_model(shapes, bpe_dir, tmp_path):
    cfg = scst_config(shapes, bpe_dir, tmp_path / "run", max_updates=2)
    trainer = _trainer(cfg)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").open()]
    assert [r["step"] for r in log] == [1, 2]
    for r in log:
        assert r["nsentences"] == 3 * cfg["batch_size"]  # samples per image x images
        assert np.isfinite(r["loss"]) and r["reward"] >= 0 and r["ntokens"] > 0
        assert "nll" not in r
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_two_processes_equal_one(shapes, bpe_dir, tmp_path):
    base = scst_config(shapes, bpe_dir, tmp_path / "one", batch_size=6, adam_eps=1e-6)
    single = _one_step_single(base)
    cfg = scst_config(shapes, bpe_dir, tmp_path / "two", batch_size=3, adam_eps=1e-6)
    out_file = str(tmp_path / "ddp_state.pt")
    mp.start_processes(_ddp_worker, args=(2, _free_port(), cfg, out_file), nprocs=2,
                       start_method="spawn")
    multi = torch.load(out_file, weights_only=True)
    for key, value in single.items():
        torch.testing.assert_close(multi[key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_killed_and_resumed_scst_run_matches_the_uninterrupted_one(shapes, bpe_dir, tmp_path,
                                                                  monkeypatch):
    def config(name: str) -> dict:
        return scst_config(shapes, bpe_dir, tmp_path / name, max_updates=4, save_interval=2,
                           **{"model.dropout": 0.1})

    _trainer(config("whole")).train()
    cfg = config("killed")
    _killed_run(cfg, monkeypatch, before_update=4)
    assert _log_steps(tmp_path / "killed" / "train_log.jsonl") == [1, 2, 3]
    _trainer(cfg, resume=True).train()
    assert ((tmp_path / "killed" / "train_log.jsonl").read_text()
            == (tmp_path / "whole" / "train_log.jsonl").read_text())
    assert ((tmp_path / "killed" / "final" / "model.safetensors").read_bytes()
            == (tmp_path / "whole" / "final" / "model.safetensors").read_bytes())


@pytest.mark.parametrize("change, message", [
    ({"df": ""}, "scst.df must name a document-frequency file"),
    ({"samples": 1}, "scst.samples must be at least 2"),
    ({"search": "greedy"}, "scst.search must be beam or sampling"),
    ({"temperature": 0}, "scst.temperature must be a positive number"),
    ({"bogus": 1}, "unknown setting"),
])
def test_bad_scst_settings_are_one_line_errors(shapes, bpe_dir, tmp_path, change, message):
    cfg = scst_config(shapes, bpe_dir, tmp_path / "run")
    cfg["scst"].update(change)
    with pytest.raises(InputError, match=message):
        build_config(cfg)


def test_scst_needs_caption_data_a_readable_df_and_no_fsdp(shapes, bpe_dir, tmp_path):
    cfg = scst_config(shapes, bpe_dir, tmp_path / "run")
    cfg["data"]["train"][0]["tasks"] = ["caption", "vqa"]
    with pytest.raises(InputError, match="scst trains captions only"):
        build_config(cfg)
    cfg = scst_config(shapes, bpe_dir, tmp_path / "run")
    cfg["scst"]["df"] = str(tmp_path / "missing.json.gz")
    with pytest.raises(InputError, match="no document-frequency file"):
        _trainer(cfg)
    cfg = scst_config(shapes, bpe_dir, tmp_path / "run", fsdp=True)
    with pytest.raises(InputError, match="scst with fsdp is not supported"):
        _trainer(cfg)
