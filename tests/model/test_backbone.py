"""The ResNet backbone's channels-last max-pool changes nothing, ties included."""

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
