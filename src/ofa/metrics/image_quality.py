"""Text-to-image metrics: OFA's CLIP score, and FID / Inception Score on Inception-v3 features.

* **CLIP score** (:func:`clip_score`): OFA-Sys/OFA ``tasks/mm_tasks/image_gen.py``
  ``valid_step`` keeps, per caption, the largest cosine between CLIP's image and text features
  over the caption's samples (``similarity_score.max()``), and reports their mean
  (``_score_sum / _score_cnt``); the README quotes it x 100 ("~32.5+ CLIP Score" after stage 1,
  "~34.0+" after stage 2), as this function does.
* **FID** and **IS** (:func:`frechet_distance`, :func:`inception_score`): the statistics are
  torchmetrics' (``FrechetInceptionDistance``, ``InceptionScore``), fed features computed once
  by :class:`ofa.metrics.inception.InceptionV3` (see there for the two networks and the input
  handling each evaluation used). torchmetrics is an optional dependency
  (``pip install 'ofa-vl[imagegen]'``), imported only when FID or IS is computed.

FID compares the generated images with reference images, or with the statistics (mean and
covariance of the pool features) of reference images saved earlier: :class:`FIDStats`, read
from and written to ``.npz`` files holding ``mu`` and ``sigma`` (pytorch-fid's and OFA's
``gt_stat.npz`` layout), plus ``count`` and ``kind`` when this module wrote them.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .inception import INPUT_SIZE, InceptionV3, resize_pil_bilinear

__all__ = ["FIDStats", "IMAGE_EXTENSIONS", "clip_score", "frechet_distance",
           "inception_features", "inception_score", "list_images"]

INSTALL_HINT = "pip install 'ofa-vl[imagegen]'"
# OFA's fid_score.py / inception_score.py Dataset: every .jpg and .png under the folder
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def clip_score(cosines: Sequence[float] | Sequence[Sequence[float]]) -> float:
    """OFA's CLIP score: the mean over captions of the best CLIP cosine among each caption's
    images, x 100. ``cosines`` holds, per caption, either its images' cosines (the best is
    taken) or one number (already the best, e.g. ``Imagined.scores[0]`` when ranked by CLIP).
    """
    best = []
    for i, c in enumerate(cosines):
        values = [c] if isinstance(c, int | float) else list(c)
        if not values or not all(isinstance(v, int | float) and math.isfinite(v)
                                 for v in values):
            raise InputError(f"caption {i}: CLIP cosines must be finite numbers, got {c!r}")
        best.append(max(values))
    if not best:
        raise InputError("the CLIP score needs at least one caption")
    return 100.0 * float(np.mean(best))


def _torchmetrics() -> tuple[Any, Any]:
    """torchmetrics' FID and IS classes; an InputError saying how to install them."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.inception import InceptionScore
    except ImportError:
        raise InputError(f"FID and IS need torchmetrics: {INSTALL_HINT}") from None
    return FrechetInceptionDistance, InceptionScore


class _Given(torch.nn.Module):
    """A "feature extractor" handing torchmetrics features computed beforehand: the network
    runs once per image for both metrics, and torchmetrics does the statistics."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


# ----------------------------------------------------------------------------- features
def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Every .jpg/.jpeg/.png file under ``folder`` (recursively), sorted; an InputError when
    there is none or the folder is missing."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"reference image folder not found: {root}")
    files = sorted(p for p in root.rglob("*")
                   if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise InputError(f"{root}: no .jpg or .png images")
    return files


def _uint8(image: Any, kind: str) -> torch.Tensor:
    """[3, H, W] uint8 of an image input; for the ``imagenet`` kind already at 299 x 299,
    resized the way OFA's scripts resize each file (so differently sized files batch)."""
    from ..preprocess import load_image

    pil = load_image(image)
    x = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)
    if kind == "imagenet":
        x = resize_pil_bilinear(x[None], INPUT_SIZE)[0]
    return x


def _batches(images: Iterable[Any], kind: str, batch_size: int) -> Iterator[torch.Tensor]:
    """uint8 batches of consecutive images of one size (a size change starts a batch)."""
    batch: list[torch.Tensor] = []
    for image in images:
        x = _uint8(image, kind)
        if batch and (len(batch) == batch_size or x.shape != batch[0].shape):
            yield torch.stack(batch)
            batch = []
        batch.append(x)
    if batch:
        yield torch.stack(batch)


def inception_features(inception: InceptionV3, images: Iterable[Any], *,
                       batch_size: int = 32, progress: bool = False, desc: str = "inception"
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pool, logits)`` float64 on CPU ([N, 2048], [N, classes]) of ``images`` (paths,
    PIL images, arrays: anything :func:`ofa.preprocess.load_image` reads)."""
    from tqdm import tqdm

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    pools, logits = [], []
    with tqdm(disable=not progress, unit="img", desc=desc, dynamic_ncols=True) as bar:
        for batch in _batches(images, inception.kind, batch_size):
            pool, logit = inception(batch)
            pools.append(pool.double().cpu())
            logits.append(logit.double().cpu())
            bar.update(len(batch))
    if not pools:
        return torch.zeros(0, 2048, dtype=torch.float64), torch.zeros(
            0, inception.num_classes, dtype=torch.float64)
    return torch.cat(pools), torch.cat(logits)


# ----------------------------------------------------------------------------- FID
@dataclass
class FIDStats:
    """Mean and covariance of reference pool features (what FID needs of the references),
    with the number of images and the Inception kind when known."""

    mu: np.ndarray = field(repr=False)  # [2048] float64
    sigma: np.ndarray = field(repr=False)  # [2048, 2048] float64
    count: int | None = None
    kind: str | None = None

    @classmethod
    def from_features(cls, pool: torch.Tensor, kind: str | None = None) -> FIDStats:
        """Statistics of pool features [N, 2048] (N >= 2): the mean, and the covariance with
        the N - 1 denominator (numpy's ``np.cov``, as pytorch-fid and OFA's fid_score.py)."""
        a = pool.double().cpu().numpy()
        if a.ndim != 2 or a.shape[0] < 2:
            raise InputError(f"FID statistics need at least 2 images, got {a.shape[0]}")
        return cls(a.mean(axis=0), np.cov(a, rowvar=False), a.shape[0], kind)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FIDStats:
        """Read an ``.npz`` holding ``mu`` [D] and ``sigma`` [D, D] (e.g. OFA's
        ``gt_stat.npz``); InputError for a missing or malformed file."""
        p = Path(path)
        if not p.is_file():
            raise InputError(f"FID reference statistics not found: {p}")
        try:
            with np.load(p, allow_pickle=False) as f:
                data = {k: f[k] for k in f.files}
        except (OSError, ValueError, EOFError) as e:
            raise InputError(f"{p}: not a readable .npz file ({e})") from None
        mu, sigma = data.get("mu"), data.get("sigma")
        if mu is None or sigma is None:
            raise InputError(f"{p}: FID statistics need arrays 'mu' and 'sigma', found "
                             f"{sorted(data) or 'none'}")
        mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise InputError(f"{p}: mu {mu.shape} and sigma {sigma.shape} do not fit (expected "
                             "[D] and [D, D])")
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise InputError(f"{p}: mu or sigma holds non-finite values")
        count = int(data["count"]) if "count" in data else None
        kind = str(data["kind"]) if "kind" in data else None
        return cls(mu, sigma, count, kind)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``mu``, ``sigma`` (and ``count``, ``kind`` when known) to ``path`` (.npz)."""
        from ..files import replacing

        p = Path(path)
        extra: dict[str, Any] = {}
        if self.count is not None:
            extra["count"] = np.int64(self.count)
        if self.kind is not None:
            extra["kind"] = np.str_(self.kind)
        with replacing(p) as tmp, open(tmp, "wb") as f:
            np.savez(f, mu=self.mu, sigma=self.sigma, **extra)
        return p


def frechet_distance(generated: torch.Tensor, reference: torch.Tensor | FIDStats) -> float:
    """FID between generated pool features [N, D] and reference features [M, D] or their
    statistics, computed by torchmetrics' ``FrechetInceptionDistance`` (float64). Both sides
    need at least 2 images; FID is biased upwards for small N, so compare numbers made with
    the same number of images (standard: 10k-50k; OFA's COCO test set: one per caption)."""
    fid_cls, _ = _torchmetrics()
    fake = generated.double().cpu()
    if fake.dim() != 2 or fake.shape[0] < 2:
        raise InputError(f"FID needs at least 2 generated images, got {fake.shape[0]}")
    metric = fid_cls(feature=_Given(fake.shape[1]))
    if isinstance(reference, FIDStats):
        if reference.mu.shape[0] != fake.shape[1]:
            raise InputError(f"reference statistics have {reference.mu.shape[0]} features, the "
                             f"Inception gives {fake.shape[1]}")
        # torchmetrics keeps sums; these give back exactly mu and sigma in its compute()
        n = max(2, reference.count or 2)
        mu = torch.from_numpy(reference.mu)
        metric.real_features_sum = mu * n
        metric.real_features_cov_sum = (torch.from_numpy(reference.sigma) * (n - 1)
                                        + n * torch.outer(mu, mu))
        metric.real_features_num_samples = torch.tensor(n)
    else:
        real = reference.double().cpu()
        if real.dim() != 2 or real.shape[0] < 2 or real.shape[1] != fake.shape[1]:
            raise InputError(f"FID needs at least 2 reference images with {fake.shape[1]} "
                             f"features, got {tuple(real.shape)}")
        metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


# ----------------------------------------------------------------------------- IS
def inception_score(logits: torch.Tensor, splits: int = 10, seed: int = 0
                    ) -> tuple[float, float | None]:
    """Inception Score (mean, standard deviation over ``splits``; None for one split) of
    class logits [N, classes], computed by torchmetrics' ``InceptionScore``: exp of the mean
    KL divergence between each image's class distribution and the split's marginal.

    The standard protocol (improved-gan, torch-fidelity) uses 10 splits of the shuffled
    images; OFA's ``inception_score.py`` used one split (``splits=1``). torchmetrics shuffles
    before splitting; ``seed`` fixes that shuffle.
    """
    _, is_cls = _torchmetrics()
    x = logits.double().cpu()
    if x.dim() != 2 or x.shape[0] < 1:
        raise InputError(f"IS needs class logits [N, classes], got {tuple(x.shape)}")
    if isinstance(splits, bool) or not isinstance(splits, int) or not 1 <= splits <= x.shape[0]:
        raise InputError(f"IS splits must be an integer from 1 to the {x.shape[0]} images, "
                         f"got {splits!r}")
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        # "will save all extracted features in buffer" (they are in memory already), and
        # the standard deviation of a single split
        warnings.simplefilter("ignore", UserWarning)
        metric = is_cls(feature=_Given(x.shape[1]), splits=splits)
        metric.update(x)
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), (None if splits == 1 else float(std))
