"""Inception-v3 for FID and the Inception Score, without torchvision.

Two networks share this module; the weights file says which one it holds (its classifier has
1008 or 1000 rows), and each comes with the input handling of the evaluation it belongs to:

``tf-fid`` -- the FID Inception (TensorFlow's ``inception-2015-12-05`` graph ported to PyTorch)
    The network every standard FID / IS number uses: bioinf-jku/TTUR's FID, openai/improved-gan's
    IS, and their PyTorch ports mseitzer/pytorch-fid (``src/pytorch_fid/inception.py``) and
    toshas/torch-fidelity (``torch_fidelity/feature_extractor_inceptionv3.py``, the extractor
    torchmetrics uses by default). It differs from torchvision's Inception-v3 in three places
    that this module reproduces: average pools that leave padding out of the mean
    (TensorFlow's ``count_include_pad=False``) in the A, C and first E blocks, a max pool in
    the second E block, and 1008 classes. Input as torch-fidelity feeds it: uint8 pixels
    resized to 299 x 299 by TensorFlow 1.x's bilinear resize (``align_corners=False``: source
    coordinate = output index x in/out, no half-pixel offset, no antialiasing), then
    ``(x - 128) / 128``. Features: the 2048-d average pool (FID) and the class logits without
    the classifier's bias (IS; improved-gan multiplies by the weight matrix only, torch-fidelity
    calls them ``logits_unbiased``).

    Weights: either file of the same network (same key layout, strict check):
    torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``
    (https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth)
    or pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``
    (https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth).

``imagenet`` -- torchvision's ImageNet Inception-v3, the network of OFA's published FID / IS
    OFA-Sys/OFA ``run_scripts/image_gen/fid_score.py`` (features from
    ``eval_utils/inceptionV3.py``) and ``inception_score.py`` build torchvision's
    ``inception_v3(pretrained=True)``, with their own inputs, reproduced here:
    every image resized to 299 x 299 by ``transforms.Resize((299, 299))`` on the PIL image
    (Pillow's bilinear filter), scaled to [0, 1]; for FID then mapped channel-wise by
    ``x * std / 0.5 + (mean - 0.5) / 0.5`` with ImageNet's mean and std (a formula meant for
    already-normalised input, applied to [0, 1] pixels: kept as they ran it), 2048-d average
    pool; for IS the [0, 1] pixels as they are (``transform_input=False``) and the full
    classifier, bias included.

    Weights: torchvision's ``inception_v3_google-0cc3c7bd.pth``
    (https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth; torchvision before
    0.13 named it ``inception_v3_google-1a9a5a14.pth``). Its auxiliary classifier is ignored.

Nothing is downloaded: the weights come from the file the user gives.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..errors import CheckpointError, InputError

__all__ = ["INCEPTION_KINDS", "INPUT_SIZE", "InceptionV3", "check_inception_state",
           "load_inception", "resize_bilinear_tf1", "resize_pil_bilinear"]

InceptionKind = Literal["tf-fid", "imagenet"]
INCEPTION_KINDS: dict[str, int] = {"tf-fid": 1008, "imagenet": 1000}  # kind -> classes
INPUT_SIZE = 299
POOL_FEATURES = 2048
# torchvision's ImageNet statistics, as OFA's eval_utils/inceptionV3.py uses them
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- blocks
# Module and attribute names follow the published weights' keys (torchvision's Inception3
# layout, which pytorch-fid and torch-fidelity keep), so the files load with a strict check.
class _Conv(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, TensorFlow's), ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _pool3(x: torch.Tensor, how: str) -> torch.Tensor:
    """The 3x3 stride-1 pool of a branch_pool: ``avg`` (zeros of the padding counted, as
    torchvision), ``avg_tf`` (padding left out of the mean, as TensorFlow) or ``max``."""
    if how == "max":
        return F.max_pool2d(x, 3, stride=1, padding=1)
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=how == "avg")


class _MixedA(nn.Module):
    def __init__(self, cin: int, pool_features: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1 = _Conv(cin, 48, 1)
        self.branch5x5_2 = _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_pool3(x, self.pool))
        return torch.cat([self.branch1x1(x), b5, b3, bp], 1)


class _MixedB(nn.Module):  # grid reduction 35 -> 17
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], 1)


class _MixedC(nn.Module):  # factorised 7x7
    def __init__(self, cin: int, c7: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1 = _Conv(cin, c7, 1)
        self.branch7x7_2 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(cin, c7, 1)
        self.branch7x7dbl_2 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        bp = self.branch_pool(_pool3(x, self.pool))
        return torch.cat([self.branch1x1(x), b7, d, bp], 1)


class _MixedD(nn.Module):  # grid reduction 17 -> 8
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(cin, 192, 1)
        self.branch3x3_2 = _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class _MixedE(nn.Module):  # expanded filter bank, 8 x 8
    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(cin, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        bp = self.branch_pool(_pool3(x, self.pool))
        return torch.cat([self.branch1x1(x), b3, d, bp], 1)


# ----------------------------------------------------------------------------- resizing
def resize_bilinear_tf1(x: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Bilinear resize of float ``x`` [N, C, H, W] to ``size`` x ``size`` the way TensorFlow
    1.x's ``resize_bilinear(align_corners=False)`` does, which the FID reference runs inside
    its graph: output pixel i samples the input at i x in/out (no half-pixel shift), the
    upper neighbour clamped to the edge, and no antialiasing when shrinking. The interpolation
    runs along the width first, then the height, in float32 (the order torch-fidelity's
    ``interpolate_bilinear_2d_like_tensorflow1x`` uses, which its authors checked bit-exact
    against TensorFlow on CPU)."""
    def taps(n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pos = torch.arange(size, dtype=x.dtype, device=x.device) * torch.tensor(
            n_in / size, dtype=torch.float32, device=x.device)
        lo = pos.long()
        hi = (lo + 1).clamp_max(n_in - 1)
        return lo, hi, pos - lo.to(pos.dtype)

    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x  # scale 1: every tap lands on a pixel
    x_lo, x_hi, dx = taps(w)
    y_lo, y_hi, dy = taps(h)

    def along_width(rows: torch.Tensor) -> torch.Tensor:
        left, right = rows.index_select(3, x_lo), rows.index_select(3, x_hi)
        return left + (right - left) * dx.view(1, 1, 1, size)

    top = along_width(x.index_select(2, y_lo))
    bottom = along_width(x.index_select(2, y_hi))
    return top + (bottom - top) * dy.view(1, 1, size, 1)


def resize_pil_bilinear(x: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """uint8 ``x`` [N, 3, H, W] resized image by image with Pillow's bilinear filter, as
    torchvision's ``transforms.Resize((size, size))`` does to the PIL images OFA's
    ``fid_score.py`` and ``inception_score.py`` read (Pillow widens the filter when
    shrinking, i.e. antialiases)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    out = []
    for im in x.permute(0, 2, 3, 1).cpu().numpy():
        pil = Image.fromarray(np.ascontiguousarray(im)).resize((size, size), Image.BILINEAR)
        out.append(torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1))
    return torch.stack(out).to(x.device)


# ----------------------------------------------------------------------------- network
class InceptionV3(nn.Module):
    """Inception-v3 returning what FID and IS use: ``pool_features`` (2048-d) and
    ``class_logits`` (1008 or 1000 classes), from uint8 images [N, 3, H, W] of any size,
    prepared as the evaluation the weights belong to prepared them (module docstring)."""

    def __init__(self, kind: InceptionKind = "tf-fid") -> None:
        super().__init__()
        if kind not in INCEPTION_KINDS:
            raise InputError(f"unknown Inception kind {kind!r}; choose one of "
                             f"{list(INCEPTION_KINDS)}")
        self.kind = kind
        tf = kind == "tf-fid"
        pool_a = pool_c = pool_e1 = "avg_tf" if tf else "avg"
        pool_e2 = "max" if tf else "avg"  # the TF graph's second E block max-pools
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b = _MixedA(192, 32, pool_a)
        self.Mixed_5c = _MixedA(256, 64, pool_a)
        self.Mixed_5d = _MixedA(288, 64, pool_a)
        self.Mixed_6a = _MixedB(288)
        self.Mixed_6b = _MixedC(768, 128, pool_c)
        self.Mixed_6c = _MixedC(768, 160, pool_c)
        self.Mixed_6d = _MixedC(768, 160, pool_c)
        self.Mixed_6e = _MixedC(768, 192, pool_c)
        self.Mixed_7a = _MixedD(768)
        self.Mixed_7b = _MixedE(1280, pool_e1)
        self.Mixed_7c = _MixedE(2048, pool_e2)
        self.fc = nn.Linear(POOL_FEATURES, INCEPTION_KINDS[kind])
        self.eval()
        self.requires_grad_(False)

    @property
    def num_classes(self) -> int:
        return self.fc.out_features

    @property
    def device(self) -> torch.device:
        return self.fc.weight.device

    def train(self, mode: bool = True) -> InceptionV3:
        """Always in evaluation mode: batch norm must use the stored statistics."""
        return super().train(False)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 2048]: the network up to its global average pool, on prepared input."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a,
                      self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e,
                      self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        """float32 [N, 3, 299, 299] in 0..255 from uint8 images of any size."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"Inception takes images [N, 3, H, W], got {tuple(images.shape)}")
        if images.dtype != torch.uint8:
            raise InputError(f"Inception takes uint8 pixels, got {images.dtype}")
        if self.kind == "tf-fid":
            return resize_bilinear_tf1(images.to(self.device, torch.float32))
        return resize_pil_bilinear(images).to(self.device, torch.float32)

    def _fid_input(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.kind == "tf-fid":
            return (pixels - 128) / 128
        x = pixels / 255
        scale = torch.tensor([s / 0.5 for s in _IMAGENET_STD], device=x.device)
        shift = torch.tensor([(m - 0.5) / 0.5 for m in _IMAGENET_MEAN], device=x.device)
        return x * scale.view(1, 3, 1, 1) + shift.view(1, 3, 1, 1)

    def _logits(self, pool: torch.Tensor) -> torch.Tensor:
        if self.kind == "tf-fid":  # improved-gan's IS: pool @ W, without the bias
            return pool @ self.fc.weight.T
        return self.fc(pool)

    @torch.inference_mode()
    def pool_features(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 2048] float32: the features FID compares."""
        return self._pool(self._fid_input(self._pixels(images)))

    @torch.inference_mode()
    def class_logits(self, images: torch.Tensor) -> torch.Tensor:
        """[N, classes] float32: the logits the Inception Score turns into class
        probabilities."""
        pixels = self._pixels(images)
        x = self._fid_input(pixels) if self.kind == "tf-fid" else pixels / 255
        return self._logits(self._pool(x))

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pool_features, class_logits)`` of uint8 images [N, 3, H, W]; one pass through
        the network for ``tf-fid``, two for ``imagenet`` (its FID and IS inputs differ)."""
        if self.kind == "imagenet":
            return self.pool_features(images), self.class_logits(images)
        pool = self._pool(self._fid_input(self._pixels(images)))
        return pool, self._logits(pool)


# ----------------------------------------------------------------------------- loading
def _skipped(key: str, kind: str) -> bool:
    """Keys a published file may hold that the features do not use."""
    return key.endswith(".num_batches_tracked") or (
        kind == "imagenet" and key.startswith("AuxLogits."))


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")


def check_inception_state(state: Mapping[str, object], where: str) -> InceptionKind:
    """The kind of Inception ``state`` holds; CheckpointError unless its keys and shapes are
    exactly one of the two networks' (bar batch-norm counters and torchvision's auxiliary
    classifier)."""
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{where}: not a state dict of tensors (Inception-v3 weights "
                              "are a flat dict of tensors)")
    fc = state.get("fc.weight")
    if not isinstance(fc, torch.Tensor) or fc.dim() != 2 or fc.shape[1] != POOL_FEATURES:
        raise CheckpointError(f"{where}: not Inception-v3 weights (no fc.weight of shape "
                              f"[classes, {POOL_FEATURES}])")
    kinds = {n: k for k, n in INCEPTION_KINDS.items()}
    kind = kinds.get(int(fc.shape[0]))
    if kind is None:
        raise CheckpointError(f"{where}: an Inception-v3 with {fc.shape[0]} classes; expected "
                              "the FID Inception (1008) or torchvision's ImageNet one (1000)")
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in InceptionV3(kind).state_dict().items()
                    if not _skipped(k, kind)}
    found = {k: tuple(v.shape) for k, v in state.items()  # type: ignore[union-attr]
             if not _skipped(k, kind)}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(f"{k} {found[k]} (expected {expected[k]})"
                   for k in set(expected) & set(found) if found[k] != expected[k])
    if missing or unexpected or wrong:
        parts = [f"missing {_few(missing)}" if missing else "",
                 f"unexpected {_few(unexpected)}" if unexpected else "",
                 f"wrong shape {_few(wrong)}" if wrong else ""]
        raise CheckpointError(f"{where}: not {kind} Inception-v3 weights: "
                              + "; ".join(p for p in parts if p))
    return kind


def load_inception(path: str | os.PathLike[str], *,
                   device: str | torch.device = "cpu") -> InceptionV3:
    """The Inception-v3 in the weights file ``path`` (see the module docstring for the files
    and where to download them), on ``device``, in float32 evaluation mode.

    The file is read without running code from it (:func:`ofa.checkpoints.read_weights_file`:
    a pickled state dict, legacy or zip format, or ``.safetensors``) and must match one of the
    two networks exactly.
    """
    from ..checkpoints import read_weights_file

    p = Path(path)
    if not p.is_file():
        raise InputError(f"Inception weights not found: {p}" if not p.exists()
                         else f"Inception weights {p}: a folder, not a file")
    state = read_weights_file(p)
    kind = check_inception_state(state, str(p))
    net = InceptionV3(kind)
    net.load_state_dict({k: v.float() for k, v in state.items() if not _skipped(k, kind)},
                        strict=False)
    return net.to(device)
