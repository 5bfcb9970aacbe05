"""Optimizer groups, fairseq polynomial_decay schedule, clipping and freezing."""

import pytest
import torch
from torch import nn

from ofa.model import OFAConfig, OFAModel
from ofa.train.optim import (
    PolynomialDecaySchedule,
    Restart,
    build_optimizer,
    clip_grad_norm,
    freeze,
    param_groups,
    polynomial_decay_lr,
    polynomial_decay_schedule,
    restarted_lr,
    set_batchnorm_eval,
    warmup_updates_from_ratio,
)


def tiny_model() -> OFAModel:
    torch.manual_seed(0)
    return OFAModel(OFAConfig(d_model=32, encoder_layers=1, decoder_layers=1, attention_heads=2,
                              ffn_dim=64, resnet_layers=(1, 1, 1), resnet_width=8))


def train_step(model: OFAModel, opt: torch.optim.Optimizer) -> None:
    input_ids = torch.tensor([[0, 5, 6, 2]])
    decoder_ids = torch.tensor([[0, 7, 8]])
    images = torch.randn(1, 3, 64, 64)
    logits = model(input_ids, decoder_ids, images=images)
    opt.zero_grad()
    logits.float().logsumexp(-1).sum().backward()
    opt.step()


@pytest.mark.parametrize("u, lr", [(0, 0.0), (1, 0.25), (2, 0.5), (4, 1.0),
                                   (6, 0.9 * (1 - 2 / 8) ** 2 + 0.1), (11, 0.9 / 64 + 0.1),
                                   (12, 0.1), (50, 0.1)])
def test_polynomial_decay_values(u, lr):
    assert polynomial_decay_lr(u, 1.0, warmup_updates=4, total_updates=12, end_lr=0.1,
                               power=2.0) == pytest.approx(lr)


def test_no_warmup_starts_at_peak():
    assert polynomial_decay_lr(0, 2.0, 0, 10) == 2.0
    assert polynomial_decay_lr(5, 2.0, 0, 10) == pytest.approx(1.0)
    assert polynomial_decay_lr(10, 2.0, 0, 10) == 0.0


def test_warmup_from_ratio():
    assert warmup_updates_from_ratio(0.06, 1000) == 60
    assert warmup_updates_from_ratio(0.1, 15) == 1
    assert warmup_updates_from_ratio(0.0, 15) == 0


def test_scheduler_follows_updates_and_resumes():
    w = nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([w], lr=1e-3)
    sched = polynomial_decay_schedule(opt, 3, 7, 1e-5)
    assert isinstance(sched, PolynomialDecaySchedule)
    seen = [opt.param_groups[0]["lr"]]
    for _ in range(9):
        opt.step()
        sched.step()
        seen.append(opt.param_groups[0]["lr"])
    expected = [polynomial_decay_lr(u, 1e-3, 3, 7, 1e-5) for u in range(10)]
    assert seen == pytest.approx(expected)
    assert seen[0] == 0.0 and seen[3] == pytest.approx(1e-3) and seen[7] == 1e-5

    opt2 = torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=1e-3)
    sched2 = PolynomialDecaySchedule(opt2, warmup_updates=3, total_updates=7, end_lr=1e-5)
    sched2.load_state_dict(sched.state_dict())
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(polynomial_decay_lr(10, 1e-3, 3, 7, 1e-5))


def test_warm_restart_values():
    restart = [Restart(update=8, scale=0.5, warmup_updates=2)]
    lrs = [restarted_lr(u, 1.0, 2, 12, restarts=restart) for u in range(14)]
    # unchanged before the restart, then 0 -> 0.5 over 2 updates, then linear decay to 0 at 12
    assert lrs[:8] == pytest.approx([polynomial_decay_lr(u, 1.0, 2, 12) for u in range(8)])
    assert lrs[8:] == pytest.approx([0.0, 0.25, 0.5, 0.25, 0.0, 0.0])
    two = [Restart(4, 1.0, 0), Restart(8, 0.5, 0)]
    assert restarted_lr(5, 1.0, 0, 12, restarts=two) == pytest.approx(1.0 * 7 / 8)
    assert restarted_lr(9, 1.0, 0, 12, restarts=two) == pytest.approx(0.5 * 3 / 4)


def test_a_restart_with_its_own_decay_end_lets_a_run_train_on():
    """A run lengthened from 12 to 20 updates with one more restart: the first 12 updates keep
    their lrs when the first decay and the earlier restart's end where they did (12)."""
    short = [restarted_lr(u, 1.0, 2, 12, restarts=[Restart(8, 0.5, 2)]) for u in range(12)]
    longer = [Restart(8, 0.5, 2, decay_updates=12), Restart(12, 0.25, 0)]
    lrs = [restarted_lr(u, 1.0, 2, 20, restarts=longer, decay_updates=12) for u in range(20)]
    assert lrs[:12] == pytest.approx(short)
    assert lrs[12:] == pytest.approx([0.25 * (20 - u) / 8 for u in range(12, 20)])
    # without it the earlier restart would decay to the new end instead
    drifted = restarted_lr(11, 1.0, 2, 20, restarts=[Restart(8, 0.5, 2)], decay_updates=12)
    assert drifted != pytest.approx(short[11])


def test_scheduler_restart_comes_from_config_on_resume():
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=1e-3)
    plain = polynomial_decay_schedule(opt, 2, 12)
    for _ in range(6):
        opt.step()
        plain.step()
    state = plain.state_dict()
    assert "restarts" not in state
    # a branch: the checkpoint of a plain run resumed with a restart added at update 8
    opt2 = torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=1e-3)
    branch = polynomial_decay_schedule(opt2, 2, 12, restarts=[Restart(8, 0.5, 2)])
    branch.load_state_dict(state)
    seen = []
    for _ in range(4):
        opt2.step()
        branch.step()
        seen.append(opt2.param_groups[0]["lr"])
    assert seen == pytest.approx([polynomial_decay_lr(7, 1e-3, 2, 12), 0.0, 2.5e-4, 5e-4])
    with pytest.raises(ValueError, match="restart updates"):
        polynomial_decay_schedule(opt2, 2, 12, restarts=[Restart(8, 1.0, 0), Restart(8, 1.0, 0)])
    with pytest.raises(ValueError, match="restart updates"):
        polynomial_decay_schedule(opt2, 2, 12, restarts=[Restart(12, 1.0, 0)])


def test_scheduler_length_comes_from_config_on_resume():
    # a finished 6-update run resumed with max_updates 10 and a restart at 6 (training longer):
    # the checkpoint's old length must not leave the new updates at lr 0
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=1e-3)
    short = polynomial_decay_schedule(opt, 2, 6)
    for _ in range(6):
        opt.step()
        short.step()
    assert opt.param_groups[0]["lr"] == 0.0
    opt2 = torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=1e-3)
    longer = polynomial_decay_schedule(opt2, 2, 10, restarts=[Restart(6, 0.5, 0)])
    longer.load_state_dict(short.state_dict())
    assert longer.last_epoch == 6 and longer.total_updates == 10
    assert longer.get_lr() == pytest.approx([5e-4])
    opt2.step()
    longer.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(5e-4 * 3 / 4)


def test_groups_cover_trainable_parameters_once():
    model = tiny_model()
    frozen = freeze(model, embeddings=True)
    assert frozen == model.embed_tokens.weight.numel()
    opt = build_optimizer(model, lr=1e-4, weight_decay=0.01)
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(ids) == len(set(ids)) and set(ids) == trainable
    assert id(model.embed_tokens.weight) not in ids
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert opt.param_groups[0]["betas"] == (0.9, 0.999) and opt.param_groups[0]["eps"] == 1e-8


def test_decay_split():
    model = tiny_model()
    decay, no_decay = ({id(p) for p in g["params"]} for g in param_groups(model, 0.1))
    names = dict(model.named_parameters())
    for name, p in names.items():
        expect_decay = p.ndim > 1  # Linear/Conv/Embedding weights: the only >1-D parameters
        assert (id(p) in decay) == expect_decay, name
        assert (id(p) in no_decay) == (not expect_decay), name
    assert id(model.embed_tokens.weight) in decay
    assert id(names["encoder.layers.0.self_attn.c_attn"]) in no_decay
    assert id(names["encoder.embed_images.bn1.weight"]) in no_decay
    assert id(names["encoder.layer_norm.weight"]) in no_decay


def test_frozen_parameters_do_not_move():
    model = tiny_model()
    backbone = model.encoder.embed_images
    n_resnet = sum(p.numel() for p in backbone.parameters())
    assert freeze(model, embeddings=True, resnet=True) == (
        n_resnet + model.embed_tokens.weight.numel())
    before = {k: v.clone() for k, v in model.named_parameters()}
    opt = build_optimizer(model, lr=1e-2)
    train_step(model, opt)
    for name, p in model.named_parameters():
        moved = not torch.equal(p, before[name])
        frozen = name.startswith("encoder.embed_images.") or "embed_tokens" in name
        if frozen:
            assert not moved, name
    assert not torch.equal(model.encoder.image_proj.weight, before["encoder.image_proj.weight"])


def test_freeze_batchnorm_only():
    model = tiny_model()
    bns = [m for m in model.encoder.embed_images.modules() if isinstance(m, nn.BatchNorm2d)]
    count = freeze(model, batchnorm=True)
    assert count == sum(p.numel() for m in bns for p in m.parameters())
    assert model.encoder.embed_images.conv1.weight.requires_grad
    model.train()
    assert set_batchnorm_eval(model) == len(bns)
    assert not any(m.training for m in bns) and model.encoder.embed_images.conv1.training


def test_clip_grad_norm():
    a, b = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(4))
    a.grad, b.grad = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 4.0, 0.0, 0.0])
    assert clip_grad_norm([a, b], 0.0) == pytest.approx(5.0)
    assert a.grad[0].item() == 3.0  # max_norm 0: measured, not clipped
    assert clip_grad_norm([a, b], 1.0) == pytest.approx(5.0)
    total = torch.cat([a.grad, b.grad]).norm().item()
    assert total == pytest.approx(1.0, rel=1e-5)
    assert clip_grad_norm([nn.Parameter(torch.zeros(2))], 1.0) == 0.0


def test_first_decay_can_end_before_the_restarts():
    # decay_updates (fairseq --total-num-update) shapes the decay before the first restart;
    # the restarts decay to total_updates
    restart = [Restart(update=6, scale=0.5, warmup_updates=0)]
    lrs = [restarted_lr(u, 1.0, 2, 10, restarts=restart, decay_updates=8) for u in range(10)]
    assert lrs[:6] == pytest.approx([polynomial_decay_lr(u, 1.0, 2, 8) for u in range(6)])
    assert lrs[6:] == pytest.approx([0.5, 0.375, 0.25, 0.125])
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=1.0)
    sched = polynomial_decay_schedule(opt, 2, 10, restarts=restart, decay_updates=8)
    seen = []
    for _ in range(9):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx(lrs[:9])
