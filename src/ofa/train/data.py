"""Multitask batches: a fixed share of every global batch from each dataset, by ratio.

The samples of update ``step`` are a pure function of ``(seed, step)``: dataset ``d`` gives
``c_d`` samples per update (``c_d`` proportional to its ratio), read in epoch order through a
seeded permutation per epoch. So a resumed run reads exactly what the uninterrupted run would
have, and N processes together read what one process reads with an N times larger batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.records import Batch, ResizedImageCache, build_sample, collate
from ..errors import InputError
from ..tokenizer import OFATokenizer


def shares(ratios: Sequence[float], total: int) -> list[int]:
    """Split ``total`` slots by ``ratios`` (largest remainder); every dataset gets >= 1."""
    r = np.asarray(ratios, dtype=np.float64)
    exact = r / r.sum() * total
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    if (counts == 0).any():
        raise InputError(f"a global batch of {total} samples cannot hold every dataset at "
                         f"ratios {list(ratios)}; raise batch_size or the small ratios")
    return counts.tolist()


class StepBatches:
    """``batches[step]`` -> this process's micro-batches of that update (a list of
    ``update_freq`` :class:`Batch`). Map-style, so a DataLoader's workers can build them."""

    def __init__(self, datasets: Sequence[Sequence[dict]], ratios: Sequence[float],
                 tokenizer: OFATokenizer, *, batch_size: int, update_freq: int = 1,
                 rank: int = 0, world_size: int = 1, seed: int = 1,
                 image_size: int | None = None, max_source_length: int = 80,
                 max_target_length: int = 30, num_updates: int | None = None,
                 cache_images: bool = False) -> None:
        if any(len(d) == 0 for d in datasets):
            raise InputError("a training dataset has no records")
        self.datasets = datasets
        self.tokenizer = tokenizer
        self.batch_size, self.update_freq = batch_size, update_freq
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.image_size = image_size
        self.max_source_length, self.max_target_length = max_source_length, max_target_length
        self.global_batch = batch_size * update_freq * world_size
        self.counts = shares(ratios, self.global_batch)
        self.num_updates = num_updates
        self._perms: dict[tuple[int, int], np.ndarray] = {}
        self.image_cache = ResizedImageCache() if cache_images else None

    def __len__(self) -> int:
        if self.num_updates is None:
            raise TypeError("StepBatches has no length unless num_updates is given")
        return self.num_updates

    def _item(self, d: int, k: int) -> int:
        n = len(self.datasets[d])
        epoch, pos = divmod(k, n)
        perm = self._perms.get((d, epoch))
        if perm is None:
            if len(self._perms) > 4 * len(self.datasets):
                self._perms.clear()
            perm = np.random.default_rng([self.seed, d, epoch]).permutation(n)
            self._perms[(d, epoch)] = perm
        return int(perm[pos])

    def global_indices(self, step: int) -> list[tuple[int, int]]:
        """(dataset, record) pairs of the whole global batch of ``step``, mixed."""
        pairs = [(d, self._item(d, step * c + j))
                 for d, c in enumerate(self.counts) for j in range(c)]
        order = np.random.default_rng([self.seed, 1 << 20, step]).permutation(len(pairs))
        return [pairs[i] for i in order]

    def __getitem__(self, step: int) -> list[Batch]:
        pairs = self.global_indices(step)
        per_rank = self.batch_size * self.update_freq
        mine = pairs[self.rank * per_rank:(self.rank + 1) * per_rank]
        micro = []
        for m in range(self.update_freq):
            chunk = mine[m * self.batch_size:(m + 1) * self.batch_size]
            micro.append(collate([build_sample(self.datasets[d][i], self.tokenizer,
                                               self.image_size, self.max_source_length,
                                               self.max_target_length, self.image_cache)
                                  for d, i in chunk]))
        return micro
