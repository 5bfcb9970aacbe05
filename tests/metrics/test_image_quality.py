"""Text-to-image metrics: the CLIP score, FID / IS through torchmetrics against their formulas
in numpy, FID statistics files, and the Inception-v3 network (weights checks, TensorFlow's
resize, one forward pass). Feature parity with torch-fidelity and with OFA's torchvision-based
scripts is measured by benchmarks/inception_parity.py (bit-identical)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ofa.errors import CheckpointError, InputError
from ofa.metrics.image_quality import (
    FIDStats,
    clip_score,
    frechet_distance,
    inception_features,
    inception_score,
    list_images,
)
from ofa.metrics.inception import (
    InceptionV3,
    check_inception_state,
    load_inception,
    resize_bilinear_tf1,
    resize_pil_bilinear,
)

from tiny_imagegen import TinyInception, numpy_fid

try:
    import torchmetrics  # noqa: F401
except ImportError:  # the imagegen extra
    HAVE_TORCHMETRICS = False
else:
    HAVE_TORCHMETRICS = True
needs_torchmetrics = pytest.mark.skipif(not HAVE_TORCHMETRICS,
                                        reason="torchmetrics (the imagegen extra) missing")


def test_clip_score_is_mean_best_cosine_x100():
    # per caption: its images' cosines (the best counts) or the best already
    assert clip_score([0.30, [0.10, 0.35, 0.20]]) == pytest.approx(32.5)
    assert clip_score([0.25]) == pytest.approx(25.0)
    for bad in ([], [[]], [float("nan")], ["0.3"]):
        with pytest.raises(InputError):
            clip_score(bad)


@needs_torchmetrics
def test_fid_matches_its_formula_and_statistics(tmp_path):
    g = np.random.default_rng(0)
    a = g.normal(size=(40, 8))
    b = g.normal(size=(30, 8)) * 1.5 + 0.3
    fid = frechet_distance(torch.from_numpy(a), torch.from_numpy(b))
    assert fid == pytest.approx(numpy_fid(a, b), rel=1e-9) and fid > 1
    assert abs(frechet_distance(torch.from_numpy(a), torch.from_numpy(a))) < 1e-9
    # statistics instead of features: same number, also after a round trip through a file
    stats = FIDStats.from_features(torch.from_numpy(b), "tf-fid")
    assert frechet_distance(torch.from_numpy(a), stats) == pytest.approx(fid, rel=1e-9)
    back = FIDStats.load(stats.save(tmp_path / "s.npz"))
    assert (back.count, back.kind) == (30, "tf-fid") and np.array_equal(back.sigma, stats.sigma)
    np.savez(tmp_path / "gt_stat.npz", mu=b.mean(0), sigma=np.cov(b, rowvar=False))  # OFA's
    official = FIDStats.load(tmp_path / "gt_stat.npz")
    assert official.count is None and official.kind is None
    assert frechet_distance(torch.from_numpy(a), official) == pytest.approx(fid, rel=1e-9)
    with pytest.raises(InputError, match="at least 2"):
        frechet_distance(torch.from_numpy(a[:1]), stats)
    with pytest.raises(InputError, match="8 features"):
        frechet_distance(torch.from_numpy(a[:, :4]), stats)


def test_fid_statistics_files_are_checked(tmp_path):
    with pytest.raises(InputError, match="not found"):
        FIDStats.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "m.npz", mean=np.zeros(3))
    with pytest.raises(InputError, match="'mu' and 'sigma'"):
        FIDStats.load(tmp_path / "m.npz")
    np.savez(tmp_path / "s.npz", mu=np.zeros(3), sigma=np.eye(4))
    with pytest.raises(InputError, match="do not fit"):
        FIDStats.load(tmp_path / "s.npz")
    (tmp_path / "t.npz").write_text("not a zip")
    with pytest.raises(InputError, match="not a readable"):
        FIDStats.load(tmp_path / "t.npz")


@needs_torchmetrics
def test_inception_score_matches_its_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(30, 10, generator=g, dtype=torch.float64) * 3
    p = logits.softmax(1).numpy()
    expected = np.exp((p * (np.log(p) - np.log(p.mean(0)))).sum(1).mean())
    mean, std = inception_score(logits, splits=1)
    assert mean == pytest.approx(expected, rel=1e-9) and std is None
    ten = inception_score(logits, splits=3)
    assert ten == inception_score(logits, splits=3)  # the shuffle is seeded
    assert ten[1] is not None and ten[1] > 0 and ten[0] != pytest.approx(mean)
    with pytest.raises(InputError, match="splits"):
        inception_score(logits, splits=31)


def test_missing_torchmetrics_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmetrics", None)  # import fails
    monkeypatch.delitem(sys.modules, "torchmetrics.image.fid", raising=False)
    monkeypatch.delitem(sys.modules, "torchmetrics.image.inception", raising=False)
    monkeypatch.delitem(sys.modules, "torchmetrics.image", raising=False)
    with pytest.raises(InputError, match=r"pip install 'ofa-vl\[imagegen\]'"):
        inception_score(torch.zeros(2, 3), splits=1)


def test_inception_features_batch_by_size(tmp_path):
    g = np.random.default_rng(1)
    arrays = [g.integers(0, 256, (h, w, 3), dtype=np.uint8)
              for h, w in ((8, 8), (8, 8), (6, 9), (8, 8))]
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    files = list_images(tmp_path)
    assert [f.name for f in files] == ["0.png", "1.png", "2.png", "3.png"]
    calls = []
    net = TinyInception()
    net.register_forward_hook(lambda m, args, out: calls.append(tuple(args[0].shape)))
    pool, logits = inception_features(net, files, batch_size=3)
    assert calls == [(2, 3, 8, 8), (1, 3, 6, 9), (1, 3, 8, 8)]  # a new size starts a batch
    expected = torch.cat([TinyInception.pool(torch.from_numpy(a).permute(2, 0, 1)[None])
                          for a in arrays])
    assert torch.allclose(pool, expected) and logits.shape == (4, 5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .jpg or .png"):
        list_images(tmp_path / "empty")


# ----------------------------------------------------------------------------- network
def _meta_state(kind: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return InceptionV3(kind).state_dict()


def test_weights_layout_is_checked_strictly():
    fid = _meta_state("tf-fid")
    assert check_inception_state(fid, "w") == "tf-fid" and fid["fc.weight"].shape[0] == 1008
    # torchvision's file: 1000 classes, an auxiliary classifier and batch-norm counters
    tv = {**_meta_state("imagenet"), "AuxLogits.fc.weight": torch.empty(1000, 768),
          "Conv2d_1a_3x3.bn.num_batches_tracked": torch.tensor(0)}
    assert check_inception_state(tv, "w") == "imagenet"
    missing = {k: v for k, v in fid.items() if not k.startswith("Mixed_7c.")}
    with pytest.raises(CheckpointError, match=r"missing Mixed_7c\..*more"):
        check_inception_state(missing, "w")
    with pytest.raises(CheckpointError, match="unexpected AuxLogits"):  # only torchvision's
        check_inception_state({**fid, "AuxLogits.fc.weight": torch.empty(1008, 768)}, "w")
    wrong = {**fid, "Mixed_5b.branch1x1.conv.weight": torch.empty(64, 192, 3, 3)}
    with pytest.raises(CheckpointError, match="wrong shape Mixed_5b"):
        check_inception_state(wrong, "w")
    with pytest.raises(CheckpointError, match="no fc.weight"):
        check_inception_state({"weight": torch.empty(3)}, "w")
    with pytest.raises(CheckpointError, match="1001 classes"):
        check_inception_state({**fid, "fc.weight": torch.empty(1001, 2048)}, "w")


def test_tf1_resize_samples_without_half_pixel_shift():
    x = torch.tensor([[0.0, 10.0], [20.0, 30.0]]).view(1, 1, 2, 2)
    out = resize_bilinear_tf1(x, size=3)
    # output i samples input i * 2/3: 0, 0.667, 1.333 (clamped to the last pixel)
    col = torch.tensor([0.0, 20 / 3, 10.0])
    expected = torch.stack([col, col + 40 / 3, col + 20])
    assert torch.allclose(out[0, 0], expected)
    big = torch.rand(1, 3, 299, 299)
    assert resize_bilinear_tf1(big) is big  # same size: every tap on a pixel


def test_imagenet_kind_resizes_with_pillow():
    a = np.random.default_rng(2).integers(0, 256, (2, 20, 30, 3), dtype=np.uint8)
    out = resize_pil_bilinear(torch.from_numpy(a).permute(0, 3, 1, 2))
    ref = np.array(Image.fromarray(a[1]).resize((299, 299), Image.BILINEAR))
    assert out.dtype == torch.uint8 and torch.equal(out[1].permute(1, 2, 0),
                                                    torch.from_numpy(ref))


def test_load_and_run_the_fid_network(tmp_path):
    torch.manual_seed(0)
    net = InceptionV3("tf-fid")
    path = tmp_path / "pt_inception-random.pth"
    state = net.state_dict()
    torch.save({k: v for k, v in state.items() if "num_batches" not in k}, path)
    loaded = load_inception(path)
    assert loaded.kind == "tf-fid" and not loaded.training
    assert torch.equal(loaded.fc.weight, net.fc.weight)
    x = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (1, 3, 16, 16),
                                                           dtype=np.uint8))
    pool, logits = loaded(x)
    assert pool.shape == (1, 2048) and logits.shape == (1, 1008)
    assert torch.isfinite(pool).all() and (pool >= 0).all()  # an average of ReLUs
    # IS logits are the classifier without its bias (improved-gan's MatMul)
    assert torch.allclose(logits, pool @ net.fc.weight.T)
    with pytest.raises(InputError, match="uint8"):
        loaded(x.float())
    with pytest.raises(InputError, match="not found"):
        load_inception(tmp_path / "none.pth")
    torch.save({"fc.weight": torch.zeros(1008, 2048)}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="not tf-fid Inception-v3 weights: missing"):
        load_inception(tmp_path / "partial.pth")
