"""The trainer end to end on a tiny model and a tiny ShapesWorld: DDP equals one process,
a killed run resumes exactly (whatever the kill left in the run folder), a from-scratch model
overfits, checkpoints and exports load, and a checkpoint never runs code."""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml

from ofa import cli
from ofa.api import load
from ofa.data.shapes import ShapesWorld
from ofa.errors import InputError
from ofa.tokenizer import CODE_OFFSET, EOS, PAD
from ofa.train import Trainer, build_config
from ofa.train.distributed import DistInfo

TINY_MODEL = {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "attention_heads": 2,
              "ffn_dim": 64, "resnet_layers": [1, 1, 1], "resnet_width": 8,
              "max_source_positions": 64, "max_target_positions": 64, "image_bucket_size": 8}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    ShapesWorld(seed=3, image_size=32, max_shapes=2).write(out, {"train": 24, "val": 4},
                                                           progress=False)
    return out


def tiny_config(shapes: Path, bpe_dir: Path, out: Path, **overrides) -> dict:
    cfg = {"output_dir": str(out), "tokenizer": str(bpe_dir), "seed": 5, "device": "cpu",
           "model": {"config": dict(TINY_MODEL), "image_size": 32, "dropout": 0.0,
                     "drop_path": 0.0, "freeze_batchnorm": True},
           "data": {"train": [{"path": str(shapes / "train.jsonl"), "tasks": ["caption"],
                               "ratio": 1.0},
                              {"path": str(shapes / "train.jsonl"),
                               "tasks": ["vqa", "ground", "entail"], "ratio": 1.0}],
                    "max_source_length": 40, "max_target_length": 16},
           "batch_size": 4, "max_updates": 3, "lr": 1e-3, "warmup_updates": 0,
           "log_interval": 1000, "valid_interval": 1000, "save_interval": 1000, "threads": 1}
    for key, value in overrides.items():
        node = cfg
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return cfg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg: dict, out_file: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    dist.init_process_group("gloo")
    try:
        info = DistInfo(rank, world, rank, torch.device("cpu"))
        trainer = Trainer(build_config(cfg), progress=False, info=info)
        trainer.train_step(trainer.batches[0])
        state = trainer._full_model_state()  # collective under FSDP
        if rank == 0:
            torch.save(state, out_file)
    finally:
        dist.destroy_process_group()


def _one_step_single(cfg: dict) -> dict[str, torch.Tensor]:
    info = DistInfo(0, 1, 0, torch.device("cpu"))
    trainer = Trainer(build_config(cfg), progress=False, info=info)
    trainer.train_step(trainer.batches[0])
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_two_process_step_equals_one_process(shapes, bpe_dir, tmp_path, fsdp):
    # 2 processes x batch 3 read exactly the 6 samples one process reads with batch 6; the loss
    # is normalised by the global token count, so the update must be the same
    # Adam's first step is lr * sign(grad) for any gradient above eps: a larger eps keeps
    # summation-order noise in near-zero gradients from flipping whole lr-sized steps
    base = tiny_config(shapes, bpe_dir, tmp_path / "one", batch_size=6, adam_eps=1e-6)
    single = _one_step_single(base)
    cfg = tiny_config(shapes, bpe_dir, tmp_path / "two", batch_size=3, fsdp=fsdp,
                      adam_eps=1e-6)
    out_file = str(tmp_path / "ddp_state.pt")
    mp.start_processes(_ddp_worker, args=(2, _free_port(), cfg, out_file), nprocs=2,
                       start_method="spawn")
    multi = torch.load(out_file, weights_only=True)
    assert set(multi) == set(single)
    worst = max((multi[k].float() - single[k].float()).abs().max().item() for k in single)
    assert worst < 1e-5, worst
    # and the step did change the weights
    init = Trainer(build_config(tiny_config(shapes, bpe_dir, tmp_path / "init")),
                   progress=False, info=DistInfo(0, 1, 0, torch.device("cpu"))).model
    moved = max((init.state_dict()[k].float() - single[k].float()).abs().max().item()
                for k in single)
    assert moved > 1e-4


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    lines = (run_dir / "train_log.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines)]


def _train_cmd(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ofa.train", str(config), "--no-progress", *extra]


def test_killed_run_resumes_exactly(shapes, bpe_dir, tmp_path):
    steps = 24
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # dropout, drop-path and EMA on: their state must survive the restart too; an lr warm
    # restart after the kill must be taken by the resumed run
    settings = {"max_updates": steps, "save_interval": 4, "ema_decay": 0.9,
                "model.dropout": 0.1, "model.drop_path": 0.1,
                "lr_restarts": [{"update": 16, "lr": 5e-4, "warmup_updates": 2,
                                 "reset_optimizer": True}]}
    full_cfg, cut_cfg = tmp_path / "full.yaml", tmp_path / "cut.yaml"
    full_cfg.write_text(yaml.safe_dump(tiny_config(shapes, bpe_dir, tmp_path / "full",
                                                   **settings)))
    cut_cfg.write_text(yaml.safe_dump(tiny_config(shapes, bpe_dir, tmp_path / "cut",
                                                  **settings)))
    subprocess.run(_train_cmd(full_cfg), check=True, env=env, capture_output=True)
    reference = _losses(tmp_path / "full")
    assert [s for s, _ in reference] == list(range(1, steps + 1))
    lines = (tmp_path / "full" / "train_log.jsonl").read_text().splitlines()
    lrs = [json.loads(line)["lr"] for line in lines]  # the lr of the update after each step
    assert lrs[14] == pytest.approx(1e-3 * 9 / 24)
    assert lrs[15:18] == pytest.approx([0, 2.5e-4, 5e-4])
    # AdamW's moments began anew at the restart: its step count is the updates since then
    adam = torch.load(tmp_path / "full" / "checkpoint_last.pt", weights_only=True)["optimizer"]
    assert {int(s["step"]) for s in adam["state"].values()} == {steps - 16}

    proc = subprocess.Popen(_train_cmd(cut_cfg), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    log = tmp_path / "cut" / "train_log.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= 6:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up, as a crash or a preemption
    proc.wait()
    killed_at = len(log.read_text().splitlines())
    assert killed_at < steps, "the run finished before it could be killed"
    ckpt = torch.load(tmp_path / "cut" / "checkpoint_last.pt", weights_only=True)
    assert ckpt["step"] % 4 == 0 and ckpt["step"] <= killed_at

    # without --resume the folder is protected
    again = subprocess.run(_train_cmd(cut_cfg), env=env, capture_output=True, text=True)
    assert again.returncode == 1 and "--resume" in again.stderr
    subprocess.run(_train_cmd(cut_cfg, "--resume"), check=True, env=env, capture_output=True)
    resumed = _losses(tmp_path / "cut")
    assert [s for s, _ in resumed] == list(range(1, steps + 1))
    assert resumed == reference  # bit-for-bit the same losses
    a = load(tmp_path / "full" / "final", device="cpu").model.state_dict()
    b = load(tmp_path / "cut" / "final", device="cpu").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_from_scratch_model_overfits_and_exports(shapes, bpe_dir, tmp_path):
    from ofa.data.records import read_jsonl

    captions = read_jsonl(shapes / "train.jsonl", ["caption"])[:4]
    one = tmp_path / "four.jsonl"
    one.write_text("".join(json.dumps(r) + "\n" for r in captions))
    cfg = tiny_config(shapes, bpe_dir, tmp_path / "run", max_updates=150, lr=3e-3,
                      warmup_updates=10, label_smoothing=0.0, valid_interval=150,
                      **{"data.train": [{"path": str(one)}], "data.valid": [{"path": str(one)}],
                         "model.freeze_batchnorm": False})
    cfg["model"]["config"].update(d_model=64, attention_heads=4, ffn_dim=128)
    trainer = Trainer(build_config(cfg), progress=False,
                      info=DistInfo(0, 1, 0, torch.device("cpu")))
    result = trainer.train()
    losses = _losses(tmp_path / "run")
    assert losses[-1][1] < 0.05 < losses[0][1]
    assert result["metrics"]["caption/bleu4"] > 0.99
    ofa = load(tmp_path / "run" / "best", device="cpu")
    assert ofa.image_size == 32
    got = ofa.caption([r["image"] for r in captions])
    assert [g["caption"] for g in got] == [r["caption"] for r in captions]
    valid = (tmp_path / "run" / "valid_log.jsonl").read_text().splitlines()
    assert json.loads(valid[-1])["caption/bleu4"] > 0.99


def test_config_errors(shapes, bpe_dir, tmp_path):
    good = tiny_config(shapes, bpe_dir, tmp_path / "x")
    with pytest.raises(InputError, match="unknown setting.*colour"):
        build_config({**good, "colour": 1})
    with pytest.raises(InputError, match="batch_size"):
        build_config({**good, "batch_size": 0})
    with pytest.raises(InputError, match="dtype"):
        build_config({**good, "dtype": "int8"})
    with pytest.raises(InputError, match="decay_updates"):
        build_config({**good, "decay_updates": 0})
    with pytest.raises(InputError, match="tokenizer"):
        build_config({**good, "tokenizer": None})
    with pytest.raises(InputError, match="data.train"):
        build_config({**good, "data": {"train": []}})
    train = good["data"]["train"]
    for window, message in (({"from_update": -1}, "from_update must be an integer >= 0"),
                            ({"from_update": 2, "until_update": 2}, "until_update must be"),
                            ({"from_update": 3}, "would never be used")):
        bad = {**good, "data": {**good["data"], "train": [train[0], {**train[1], **window}]}}
        with pytest.raises(InputError, match=message):
            build_config(bad)
    valid = {**good, "data": {**good["data"], "valid": [{**train[0], "until_update": 2}]}}
    with pytest.raises(InputError, match="training datasets only"):
        build_config(valid)
    last = good["max_updates"]
    for restarts, message in (([{"update": 0, "lr": 1e-3}], "update must be an integer above"),
                              ([{"update": last, "lr": 1e-3}], "update must be an integer"),
                              ([{"update": 2, "lr": 1e-3}, {"update": 2, "lr": 1e-3}],
                               r"lr_restarts\[1\].update"),
                              ([{"update": 1, "lr": 0}], "lr must be a positive"),
                              ([{"update": 1, "lr": 1e-3, "warmup_updates": last}],
                               "warmup_updates must be"),
                              ([{"update": 1, "peak": 1e-3}], "unknown setting.*peak"),
                              ([{"update": 1, "lr": 1e-3, "reset_optimizer": "yes"}],
                               "reset_optimizer must be"),
                              ([{"update": 1, "lr": 1e-3, "decay_updates": last + 1}],
                               r"decay_updates must be an integer above 1 \(update"),
                              ([{"update": 1, "lr": 1e-3, "warmup_updates": 1,
                                 "decay_updates": 2}], "decay_updates must be an integer above 2"),
                              ({"update": 1}, "must be a list")):
        with pytest.raises(InputError, match=message):
            build_config({**good, "lr_restarts": restarts})
    restarted = build_config({**good, "lr_restarts": [{"update": 1, "lr": 2e-4,
                                                        "warmup_updates": 1}]})
    assert restarted.lr_restarts[0].lr == 2e-4


def test_trains_from_official_tsv(shapes, bpe_dir, tmp_path):
    import base64

    from ofa.data.records import read_jsonl

    rows = []
    for r in read_jsonl(shapes / "train.jsonl", ["ground"])[:6]:
        b64 = base64.b64encode(Path(r["image"]).read_bytes()).decode()
        box = ",".join(str(v) for v in r["box"])
        rows.append("\t".join([r["id"], "0", r["text"], box, b64]))  # official refcoco layout
    tsv = tmp_path / "refcoco_train.tsv"
    tsv.write_text("\n".join(rows) + "\n")
    cfg = tiny_config(shapes, bpe_dir, tmp_path / "run", max_updates=2,
                      **{"data.train": [{"path": str(tsv), "tasks": ["ground"]}]})
    trainer = Trainer(build_config(cfg), progress=False,
                      info=DistInfo(0, 1, 0, torch.device("cpu")))
    assert len(trainer.train_records[0]) == 6
    assert trainer.train()["step"] == 2
    with pytest.raises(InputError, match="one task"):
        build_config(tiny_config(shapes, bpe_dir, tmp_path / "x",
                                 **{"data.train": [{"path": str(tsv)}]}))
    # an official classification TSV (image, unused, label) with its labels as the trie
    classify = tmp_path / "imagenet_train.tsv"
    classify.write_text("".join(f"{r.split(chr(9))[-1]}\t0\t{label}\n"
                                for r, label in zip(rows, ["cat", "dog", "tabby cat"] * 2,
                                                    strict=True)))
    cfg = tiny_config(shapes, bpe_dir, tmp_path / "run-classify", max_updates=1, batch_size=6,
                      **{"data.train": [{"path": str(classify), "tasks": ["classify"],
                                         "constrain": True}]})
    trainer = Trainer(build_config(cfg), progress=False,
                      info=DistInfo(0, 1, 0, torch.device("cpu")))
    batch = trainer.batches[0][0]
    first = {trainer.tokenizer.encode(" " + w, add_bos_eos=False)[0]
             for w in ("cat", "dog", "tabby")}
    assert {i for ids in batch.allowed_ids for i in ids} >= first
    assert batch.allowed_rows.numel() == batch.ntokens  # every target token is constrained


def test_branch_with_a_new_restart_starts_it_on_time(shapes, bpe_dir, tmp_path):
    # a plain run saves at update 4; resuming it with a restart at update 4 added (a branch)
    # must run update 5 at the restart's lr (0: warmup starts), not the checkpoint's
    plain = tiny_config(shapes, bpe_dir, tmp_path / "run", max_updates=8, save_interval=4)
    first = Trainer(build_config(plain), progress=False,
                    info=DistInfo(0, 1, 0, torch.device("cpu")))
    for step in range(4):
        first.train_step(first.batches[step])
    first.save()
    assert first.optimizer.param_groups[0]["lr"] > 0
    branch = {**plain, "lr_restarts": [{"update": 4, "lr": 5e-4, "warmup_updates": 2}]}
    resumed = Trainer(build_config(branch), resume=True, progress=False,
                      info=DistInfo(0, 1, 0, torch.device("cpu")))
    assert resumed.step == 4
    assert [g["lr"] for g in resumed.optimizer.param_groups] == [0.0] * len(
        resumed.optimizer.param_groups)
    resumed.train_step(resumed.batches[4])
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-4)


def test_ema_added_on_resume_starts_from_the_resumed_weights(shapes, bpe_dir, tmp_path):
    # a run saved without EMA, resumed with ema_decay: the average must begin at the loaded
    # weights, not at the fresh model's random ones
    plain = tiny_config(shapes, bpe_dir, tmp_path / "run", max_updates=8)
    first = Trainer(build_config(plain), progress=False,
                    info=DistInfo(0, 1, 0, torch.device("cpu")))
    for step in range(3):
        first.train_step(first.batches[step])
    first.save()
    saved = {k: p.detach().clone() for k, p in first.model.named_parameters()}
    resumed = Trainer(build_config({**plain, "ema_decay": 0.9}), resume=True, progress=False,
                      info=DistInfo(0, 1, 0, torch.device("cpu")))
    assert all(torch.equal(resumed.ema.params[k], saved[k].float()) for k in saved)
    resumed.train_step(resumed.batches[3])
    name, p = next(iter(resumed.model.named_parameters()))
    expected = 0.9 * saved[name].float() + 0.1 * p.detach().float()
    assert torch.allclose(resumed.ema.params[name], expected, atol=1e-7)


def test_constrained_answers_mask_the_loss(shapes, bpe_dir, tmp_path):
    """``constrain: true``: the answer tokens of VQA and entailment samples get the official
    trie mask in the loss; captions and boxes stay over the whole vocabulary."""
    from ofa.tokenizer import PAD

    def trainer(constrain: bool, **extra) -> Trainer:
        cfg = tiny_config(shapes, bpe_dir, tmp_path / f"run-{constrain}", **extra)
        cfg["data"]["train"][1]["constrain"] = constrain
        cfg["data"]["vqa_answers"] = str(shapes / "answers.txt")
        return Trainer(build_config(cfg), progress=False,
                       info=DistInfo(0, 1, 0, torch.device("cpu")))

    free, constrained = trainer(False), trainer(True)
    batch = constrained.batches[0][0]
    assert free.batches[0][0].allowed_rows is None
    answer_tokens = sum(int(batch.target[i].ne(PAD).sum()) for i, t in enumerate(batch.tasks)
                        if t in ("vqa", "entail"))
    assert answer_tokens > 0 and batch.allowed_rows.numel() == answer_tokens
    with torch.no_grad():
        a = constrained._forward_loss(batch, 0.0)
        b = free._forward_loss(free.batches[0][0], 0.0)  # same seed: same weights, samples
    assert a.ntokens == b.ntokens and a.loss < b.loss  # a few candidates instead of 59k ids
    record = constrained.train_step(constrained.batches[0])
    assert torch.isfinite(torch.tensor(record["loss"]))
    cfg = tiny_config(shapes, bpe_dir, tmp_path / "no-answers")
    cfg["data"]["train"][1]["constrain"] = True
    with pytest.raises(InputError, match="train.jsonl: constraining VQA targets needs"):
        Trainer(build_config(cfg), progress=False, info=DistInfo(0, 1, 0, torch.device("cpu")))
    cfg["data"]["train"][0]["constrain"] = True  # the caption-only dataset
    with pytest.raises(InputError, match="constrain applies to vqa, entail, classify"):
        build_config(cfg)
    cfg["data"]["train"][0]["constrain"] = "yes"
    with pytest.raises(InputError, match="constrain must be true or false"):
        build_config(cfg)
    cfg["data"]["train"][0]["constrain"] = False
    cfg["data"]["valid"] = [{"path": str(shapes / "val.jsonl"), "constrain": True}]
    with pytest.raises(InputError, match="constrain applies to training datasets"):
        build_config(cfg)


# ------------------------------------------------ kills, leftovers and planted checkpoints
class Killed(BaseException):
    """Stands for SIGKILL: nothing of the run (no ``except``, no save) runs after it."""


def _resume_config(shapes: Path, bpe_dir: Path, out: Path, **overrides) -> dict:
    # checkpoints at 3 and 6, validations at 2, 4 and 6: a kill can fall between any two
    valid = [{"path": str(shapes / "val.jsonl"), "limit": 1}]
    return tiny_config(shapes, bpe_dir, out, max_updates=6, save_interval=3, valid_interval=2,
                       **{"model.dropout": 0.1, "data.valid": valid, **overrides})


def _trainer(cfg: dict, resume: bool = False) -> Trainer:
    return Trainer(build_config(cfg), resume=resume, progress=False,
                   info=DistInfo(0, 1, 0, torch.device("cpu")))


def _killed_run(cfg: dict, monkeypatch, before_update: int) -> Path:
    """Train until just before ``before_update``, then die as a kill would."""
    real_step = Trainer.train_step

    def train_step(self, micro_batches):
        if self.step + 1 == before_update:
            raise Killed
        return real_step(self, micro_batches)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_step", train_step)
        with pytest.raises(Killed):
            _trainer(cfg).train()
    return Path(cfg["output_dir"])


def _log_steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def _tear_last_line(path: Path) -> None:
    """Cut the file in the middle of its last line, as a kill mid-write leaves it."""
    text = path.read_text()
    start = text.rstrip("\n").rfind("\n") + 1
    path.write_text(text[:start + (len(text) - start) // 2])


def _assert_same_run(run: Path, reference: Path) -> None:
    """Line for line the same logs (they hold no wall-clock times), the same exports."""
    for name in ("train_log.jsonl", "valid_log.jsonl"):
        assert (run / name).read_text() == (reference / name).read_text(), name
    for folder in ("best", "final"):
        assert ((run / folder / "model.safetensors").read_bytes()
                == (reference / folder / "model.safetensors").read_bytes()), folder


@pytest.fixture(scope="module")
def uninterrupted(shapes, bpe_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    _trainer(_resume_config(shapes, bpe_dir, out)).train()
    assert _log_steps(out / "train_log.jsonl") == [1, 2, 3, 4, 5, 6]
    assert _log_steps(out / "valid_log.jsonl") == [2, 4, 6]
    return out


def test_validation_after_the_checkpoint_is_logged_once(shapes, bpe_dir, tmp_path,
                                                        monkeypatch, uninterrupted):
    cfg = _resume_config(shapes, bpe_dir, tmp_path / "run")
    run = _killed_run(cfg, monkeypatch, before_update=5)  # validated at 4, saved at 3
    assert _log_steps(run / "valid_log.jsonl") == [2, 4]
    _trainer(cfg, resume=True).train()
    _assert_same_run(run, uninterrupted)


@pytest.mark.parametrize("resume", [False, True], ids=["plain", "resume"])
def test_run_killed_before_its_first_checkpoint_starts_over(shapes, bpe_dir, tmp_path,
                                                            monkeypatch, uninterrupted,
                                                            resume):
    cfg = _resume_config(shapes, bpe_dir, tmp_path / "run")
    run = _killed_run(cfg, monkeypatch, before_update=3)
    assert not (run / "checkpoint_last.pt").exists()
    assert _log_steps(run / "train_log.jsonl") == [1, 2]
    _trainer(cfg, resume=resume).train()
    _assert_same_run(run, uninterrupted)


def test_torn_log_lines_are_dropped_on_resume(shapes, bpe_dir, tmp_path, monkeypatch,
                                              uninterrupted):
    cfg = _resume_config(shapes, bpe_dir, tmp_path / "run")
    run = _killed_run(cfg, monkeypatch, before_update=5)
    for name in ("train_log.jsonl", "valid_log.jsonl"):
        _tear_last_line(run / name)
        assert not (run / name).read_text().endswith("\n")
    _trainer(cfg, resume=True).train()
    _assert_same_run(run, uninterrupted)


def test_leftovers_of_interrupted_writes_are_cleaned_up(shapes, bpe_dir, tmp_path,
                                                        monkeypatch, uninterrupted):
    cfg = _resume_config(shapes, bpe_dir, tmp_path / "run")
    run = _killed_run(cfg, monkeypatch, before_update=5)
    # what kills inside each write leave: a checkpoint or log being written, an export being
    # written (save_native's own temporary folder inside it), and best/ killed between the
    # two renames that replace it (the previous folder waits under .best.old-PID)
    (run / ".checkpoint_last.pt.tmp-4242").write_bytes(b"PK\x03\x04 half a checkpoint")
    (run / ".train_log.jsonl.tmp-4242").write_text('{"step": 1}\n')
    (run / ".final.new-4242" / ".final.new-4242.k2_9xyzq").mkdir(parents=True)
    shutil.copytree(run / "best", run / ".best.new-4243")
    (run / "best").rename(run / ".best.old-4243")
    # the user's own files, and names that only look like ours, stay
    (run / "notes.txt").write_text("keep")
    (run / ".best.new-x").mkdir()
    (run / "best.old-1").mkdir()

    resumed = _trainer(cfg, resume=True)
    assert sorted(p.name for p in run.iterdir()) == [
        ".best.new-x", "best", "best.old-1", "checkpoint_last.pt", "config.json",
        "notes.txt", "train_log.jsonl", "valid_log.jsonl"]
    resumed.train()
    _assert_same_run(run, uninterrupted)


def _write_config(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cli_error(config: Path, capsys) -> str:
    assert cli.main(["train", str(config), "--resume", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ofa: error:") and "\n" not in err
    return err


def test_damaged_checkpoint_is_one_clear_error(shapes, bpe_dir, tmp_path, monkeypatch,
                                               capsys):
    cfg = _resume_config(shapes, bpe_dir, tmp_path / "run")
    run = _killed_run(cfg, monkeypatch, before_update=4)
    ckpt = run / "checkpoint_last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:ckpt.stat().st_size // 2])
    with pytest.raises(InputError, match=r"checkpoint_last\.pt.*damaged.*delete it"):
        _trainer(cfg, resume=True)
    err = _cli_error(_write_config(cfg, tmp_path / "run.yaml"), capsys)
    assert str(ckpt) in err and "delete it to start the run over" in err


class _Planted:
    """A pickle that runs a shell command when it is loaded by a full unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


@pytest.mark.parametrize("layout", ["torch-zip", "raw-pickle"])
def test_planted_checkpoint_is_refused_not_run(shapes, bpe_dir, tmp_path, capsys, layout):
    run = tmp_path / "run"
    run.mkdir()
    ckpt = run / "checkpoint_last.pt"

    def plant(path: Path, marker: Path) -> None:
        if layout == "torch-zip":
            torch.save({"version": 2, "step": 3, "model": _Planted(marker)}, path)
        else:
            path.write_bytes(pickle.dumps(_Planted(marker)))

    # the plant is live: a full unpickler runs it (a raw pickle then fails torch's own checks)
    plant(tmp_path / "probe.pt", tmp_path / "probe-ran")
    with contextlib.suppress(RuntimeError):
        torch.load(tmp_path / "probe.pt", weights_only=False)
    assert (tmp_path / "probe-ran").exists()

    marker = tmp_path / "planted-code-ran"
    plant(ckpt, marker)
    cfg = _resume_config(shapes, bpe_dir, run)
    with pytest.raises(InputError, match=r"cannot resume: .*checkpoint_last\.pt: refusing"):
        _trainer(cfg, resume=True)
    err = _cli_error(_write_config(cfg, tmp_path / "run.yaml"), capsys)
    assert str(ckpt) in err
    assert not marker.exists()


def test_checkpoint_is_plain_data_and_version_1_still_resumes(shapes, bpe_dir, tmp_path):
    # fp16 (a gradient scaler) and EMA: every part of the state a run can have
    cfg = tiny_config(shapes, bpe_dir, tmp_path / "run", dtype="fp16", ema_decay=0.9)
    first = _trainer(cfg)
    for step in range(2):
        first.train_step(first.batches[step])
    np.random.seed(11)
    np.random.standard_normal()  # a cached gaussian is part of numpy's state too
    expected = np.random.get_state()
    first.save()
    path = tmp_path / "run" / "checkpoint_last.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)  # no allow-listed class
    assert state["version"] == 2 and state["scaler"] is not None and state["ema"] is not None

    def resumed_numpy_state() -> tuple:
        np.random.seed(0)
        resumed = _trainer(cfg, resume=True)
        assert resumed.step == 2
        return np.random.get_state()

    def same(a: tuple, b: tuple) -> bool:
        return a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:]

    assert same(resumed_numpy_state(), expected)
    # version 1 pickled numpy's own state tuple; it is read as data, without running code
    state["version"], state["rng"]["numpy"] = 1, expected
    torch.save(state, path)
    assert same(resumed_numpy_state(), expected)


def test_drawing_records_train_in_code_mode(shapes, bpe_dir, tmp_path):
    """Text-to-image records (caption -> VQGAN codes) train beside the others: the decoder runs
    those samples in code mode and their loss stays within the code ids."""
    import json

    rng = np.random.default_rng(0)
    drawings = tmp_path / "drawings.jsonl"
    with drawings.open("w") as f:
        for i in range(8):  # a 4 x 4 grid: TINY_MODEL's code_image_size 32 would be 4 x 4
            f.write(json.dumps({"task": "imagine", "id": f"d{i}", "text": f"a red circle {i}",
                                "codes": rng.integers(0, 64, 16).tolist()}) + "\n")
    model = {**TINY_MODEL, "code_image_size": 32}
    cfg = tiny_config(shapes, bpe_dir, tmp_path / "run", **{"model.config": model})
    cfg["data"]["train"].append({"path": str(drawings), "ratio": 1.0})
    trainer = Trainer(build_config(cfg), progress=False,
                      info=DistInfo(0, 1, 0, torch.device("cpu")))
    batch = next(b for step in trainer.batches for b in step if "imagine" in b.tasks)
    codes = batch.code_mask.nonzero().flatten().tolist()
    assert codes and all(batch.tasks[i] == "imagine" for i in codes)
    with torch.no_grad():
        out = trainer._forward_loss(batch, 0.0)
    # a drawing's tokens are scored among 8196 ids, not 59457: below uniform over the vocab
    assert torch.isfinite(out.loss) and out.loss / out.ntokens < np.log(59457)
    first = trainer.train_step(trainer.batches[0])["loss"]
    assert np.isfinite(first)
    # validation does not draw: imagine records there are refused before any training
    cfg["data"]["valid"] = [{"path": str(drawings)}]
    with pytest.raises(InputError, match="data.valid holds imagine records"):
        Trainer(build_config(cfg), progress=False, info=DistInfo(0, 1, 0, torch.device("cpu")))


def test_image_codes_narrow_the_columns_a_drawing_is_scored_over(shapes, bpe_dir, tmp_path):
    """data.image_codes: a drawing's code rows are scored over the specials and the VQGAN's
    codes only (a smaller codebook, a smaller softmax); a target beyond it is an error."""
    import json

    drawings = tmp_path / "drawings.jsonl"
    with drawings.open("w") as f:
        for i in range(8):
            f.write(json.dumps({"task": "imagine", "id": f"d{i}", "text": "a red circle",
                                "codes": [(5 * i + j) % 64 for j in range(16)]}) + "\n")
    model = {**TINY_MODEL, "code_image_size": 32}

    def loss_with(codes):
        cfg = tiny_config(shapes, bpe_dir, tmp_path / f"run{codes}",
                          **{"model.config": model, "data.image_codes": codes})
        cfg["data"]["train"] = [{"path": str(drawings)}]
        trainer = Trainer(build_config(cfg), progress=False,
                          info=DistInfo(0, 1, 0, torch.device("cpu")))
        with torch.no_grad():
            out = trainer._forward_loss(trainer.batches[0][0], 0.0)
        return float(out.loss / out.ntokens)

    narrow, wide = loss_with(64), loss_with(8192)
    assert narrow < np.log(80) < np.log(8000) < wide
    with pytest.raises(InputError, match=r"beyond data.image_codes \(32\)"):
        loss_with(32)
    with pytest.raises(InputError, match="data.image_codes must be an integer"):
        loss_with(0)


def test_max_epochs_counts_updates_from_the_records(shapes, bpe_dir, tmp_path):
    cfg = tiny_config(shapes, bpe_dir, tmp_path / "run", max_updates=None, max_epochs=1.5,
                      batch_size=4, update_freq=2,
                      lr_restarts=[{"update": 5000, "lr": 1e-4}])  # checked once resolved
    with pytest.raises(InputError, match=r"lr_restarts\[0\].update must be an integer above 0 "
                                         r"and below max_updates \(\d+\)"):
        Trainer(build_config(cfg), progress=False, info=DistInfo(0, 1, 0, torch.device("cpu")))
    cfg["lr_restarts"] = []
    trainer = Trainer(build_config(cfg), progress=False,
                      info=DistInfo(0, 1, 0, torch.device("cpu")))
    records = sum(len(r) for r in trainer.train_records)
    assert records > 8
    assert trainer.cfg.max_updates == math.ceil(1.5 * math.ceil(records / 8))
    assert len(trainer.batches) == trainer.cfg.max_updates
    # global_batch sets update_freq from the processes: 16 = 4 per micro-batch x 4
    cfg.update(update_freq=1, global_batch=16)
    trainer = Trainer(build_config(cfg), progress=False,
                      info=DistInfo(0, 1, 0, torch.device("cpu")))
    assert trainer.cfg.update_freq == 4
    assert trainer.cfg.max_updates == math.ceil(1.5 * math.ceil(records / 16))
    cfg.update(global_batch=18, output_dir=str(tmp_path / "run-18"))
    with pytest.raises(InputError, match="global_batch 18 is not a multiple of batch_size 4"):
        Trainer(build_config(cfg), progress=False, info=DistInfo(0, 1, 0, torch.device("cpu")))
    with pytest.raises(InputError, match="update_freq or global_batch, not both"):
        build_config({**cfg, "update_freq": 2})
    with pytest.raises(InputError, match="max_updates or max_epochs, not both"):
        build_config(tiny_config(shapes, bpe_dir, tmp_path / "x", max_epochs=2))
    for bad in (0, -1, "2", True):
        with pytest.raises(InputError, match="max_epochs must be a positive number"):
            build_config(tiny_config(shapes, bpe_dir, tmp_path / "x", max_updates=None,
                                     max_epochs=bad))


def test_decoder_noise_changes_inputs_not_targets(shapes, bpe_dir, tmp_path):
    def batch(noise: float, step: int = 0):
        spec = {"path": str(shapes / "train.jsonl"), "tasks": ["caption"],
                "decoder_noise": noise}
        cfg = tiny_config(shapes, bpe_dir, tmp_path / f"run-{noise}-{step}", batch_size=8,
                          **{"data.train": [spec]})
        trainer = Trainer(build_config(cfg), progress=False,
                          info=DistInfo(0, 1, 0, torch.device("cpu")))
        return trainer.batches[step][0]

    clean, noisy, again = batch(0.0), batch(0.5), batch(0.5)
    assert torch.equal(clean.target, noisy.target)
    assert torch.equal(noisy.decoder_input, again.decoder_input)  # seeded by (seed, step)
    assert not torch.equal(noisy.decoder_input, batch(0.5, step=1).decoder_input)
    answer = clean.target.ne(PAD) & clean.target.ne(EOS)  # where the caption's tokens sit
    shifted = torch.zeros_like(answer)
    shifted[:, 1:] = answer[:, :-1]  # the decoder input holds them one place later
    changed = clean.decoder_input.ne(noisy.decoder_input)
    assert not (changed & ~shifted).any()  # BOS, prompt prefix and padding untouched
    share = changed.sum().item() / shifted.sum().item()
    assert 0.3 < share < 0.7
    replaced = noisy.decoder_input[changed]
    assert ((replaced >= 4) & (replaced < CODE_OFFSET)).all()  # text tokens only
    with pytest.raises(InputError, match="decoder_noise must lie in"):
        build_config(tiny_config(shapes, bpe_dir, tmp_path / "x", **{"data.train": [
            {"path": str(shapes / "train.jsonl"), "decoder_noise": 1.0}]}))
