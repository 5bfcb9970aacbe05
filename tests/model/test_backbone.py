"""The ResNet backbone: the channels-last max-pool changes nothing, ties included; inference
folds each BatchNorm into its convolution."""

import torch

from ofa.model.backbone import ResNet


def test_forward_and_gradients_equal_the_plain_stem():
    torch.manual_seed(0)
    net = ResNet((1, 1, 1), width=8)
    # coarse pixel values: many tied maxima inside the pooling windows
    images = (torch.rand(4, 3, 64, 64) * 4).round() / 4

    def plain(x):
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        return net.layer3(net.layer2(net.layer1(x)))

    outputs, grads = [], []
    for forward in (net, plain):
        net.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = forward(images)
        out.float().square().sum().backward()
        outputs.append(out)
        grads.append([p.grad.clone() for p in net.parameters()])
    assert outputs[0].is_contiguous() and torch.equal(outputs[0], outputs[1])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


def _random_batchnorms(net: ResNet) -> None:
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_(1.0, 0.1)
            m.bias.data.normal_(0.0, 0.1)


def test_inference_folds_batchnorm_and_follows_changed_statistics(monkeypatch):
    from ofa.model import backbone

    torch.manual_seed(0)
    net = ResNet((1, 2, 1), width=8).eval()
    _random_batchnorms(net)
    images = torch.randn(2, 3, 64, 64)

    def unfolded():
        with monkeypatch.context() as m:
            m.setattr(backbone, "_folds", lambda module, x: False)
            return net(images)

    with torch.no_grad():
        folded, plain = net(images), unfolded()
        assert folded.is_contiguous() and folded.shape == plain.shape
        torch.testing.assert_close(folded, plain, rtol=1e-5, atol=1e-5)
        assert "folded_bn" in net.layer2[0].downsample[0].__dict__["_ofa_packed"]
        # statistics changed in place (a training step) and a weight swapped: folded again
        net.layer1[0].bn2.running_var.mul_(4.0)
        net.layer3[0].conv3.weight = torch.nn.Parameter(net.layer3[0].conv3.weight * 2)
        folded, plain = net(images), unfolded()
        torch.testing.assert_close(folded, plain, rtol=1e-5, atol=1e-5)
        # bf16: folded in fp32, within bf16's rounding of the unfolded bf16 network
        net.to(torch.bfloat16)
        images = images.bfloat16()
        folded, plain = net(images), unfolded()
    assert folded.dtype == torch.bfloat16
    torch.testing.assert_close(folded.float(), plain.float(), rtol=0.05, atol=0.05)


def test_training_and_autograd_keep_the_batchnorm_layers():
    from ofa.model.backbone import _folds

    net = ResNet((1, 1, 1), width=8)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert not _folds(net, x)  # train mode: batch statistics
        assert _folds(net.eval(), x)
    assert not _folds(net, x)  # autograd records
