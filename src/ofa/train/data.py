"""Multitask batches: a fixed share of every global batch from each dataset, by ratio.

The samples of update ``step`` are a pure function of ``(seed, step)``: dataset ``d`` gives
``c_d`` samples per update (``c_d`` proportional to its ratio), read in epoch order through a
seeded permutation per epoch. So a resumed run reads exactly what the uninterrupted run would
have, and N processes together read what one process reads with an N times larger batch.

A dataset may be active only in a window of updates ``[from_update, until_update)`` (a
curriculum): the updates split into phases at every window edge, and each phase shares the
batch among the datasets active in it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from ..generate import Trie
from ..tokenizer import OFATokenizer
from .featurize import Batch, ResizedImageCache, Sample, build_sample, collate
from .pretrain import PretrainSamples


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


def phases(ratios: Sequence[float], windows: Sequence[tuple[int, int | None]] | None,
           total: int, num_updates: int | None = None) -> tuple[list[int], list[list[int]]]:
    """Phase start updates and each phase's samples per dataset, from the datasets' windows
    ``[from_update, until_update)`` (``None``: no end; no windows: one phase, all active).
    Phases starting at or after ``num_updates`` are never trained and are left out."""
    windows = list(windows) if windows is not None else [(0, None)] * len(ratios)
    edges = sorted({0, *(a for a, _ in windows), *(b for _, b in windows if b is not None)})
    edges = [e for e in edges if num_updates is None or e == 0 or e < num_updates]
    starts, counts = [], []
    for edge in edges:
        active = [i for i, (a, b) in enumerate(windows) if a <= edge and (b is None or edge < b)]
        if not active:
            raise InputError(f"no training dataset is active from update {edge}; "
                             "check the datasets' from_update/until_update")
        slots = dict(zip(active, shares([ratios[i] for i in active], total), strict=True))
        starts.append(edge)
        counts.append([slots.get(i, 0) for i in range(len(ratios))])
    return starts, counts


class StepBatches:
    """``batches[step]`` -> this process's micro-batches of that update (a list of
    ``update_freq`` :class:`Batch`). Map-style, so a DataLoader's workers can build them."""

    def __init__(self, datasets: Sequence[Sequence[dict]], ratios: Sequence[float],
                 tokenizer: OFATokenizer, *, batch_size: int, update_freq: int = 1,
                 rank: int = 0, world_size: int = 1, seed: int = 1,
                 image_size: int | None = None, max_source_length: int = 80,
                 max_target_length: int = 30, num_updates: int | None = None,
                 cache_images: bool = False,
                 windows: Sequence[tuple[int, int | None]] | None = None,
                 tries: Sequence[dict[str, Trie] | None] | None = None,
                 decoder_noise: Sequence[float] | None = None,
                 image_sizes: Sequence[int | None] | None = None,
                 pretrain: PretrainSamples | None = None) -> None:
        if any(len(d) == 0 for d in datasets):
            raise InputError("a training dataset has no records")
        self.datasets = datasets
        self.tokenizer = tokenizer
        self.batch_size, self.update_freq = batch_size, update_freq
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.image_size = image_size
        self.max_source_length, self.max_target_length = max_source_length, max_target_length
        self.global_batch = batch_size * update_freq * world_size
        self.phase_starts, self.phase_counts = phases(ratios, windows, self.global_batch,
                                                           num_updates)
        # samples each dataset has read before each phase starts
        self.phase_offsets = [[0] * len(datasets)]
        for p in range(1, len(self.phase_starts)):
            length = self.phase_starts[p] - self.phase_starts[p - 1]
            self.phase_offsets.append([o + c * length for o, c in
                                       zip(self.phase_offsets[-1], self.phase_counts[p - 1],
                                           strict=True)])
        self.num_updates = num_updates
        self._perms: dict[tuple[int, int], np.ndarray] = {}
        self.image_cache = ResizedImageCache() if cache_images else None
        self.tries = list(tries) if tries is not None else [None] * len(datasets)
        self.decoder_noise = (list(decoder_noise) if decoder_noise is not None
                              else [0.0] * len(datasets))
        # a dataset's own input size (pretraining's extras: 256 px) or the run's
        self.image_sizes = [size or image_size for size in (image_sizes or [None] * len(datasets))]
        self.pretrain = pretrain  # builds the samples of pretraining records

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
        p = bisect.bisect_right(self.phase_starts, step) - 1
        start, offsets = self.phase_starts[p], self.phase_offsets[p]
        pairs = [(d, self._item(d, offsets[d] + (step - start) * c + j))
                 for d, c in enumerate(self.phase_counts[p]) for j in range(c)]
        order = np.random.default_rng([self.seed, 1 << 20, step]).permutation(len(pairs))
        return [pairs[i] for i in order]

    def __getitem__(self, step: int) -> list[Batch]:
        pairs = self.global_indices(step)
        per_rank = self.batch_size * self.update_freq
        mine = pairs[self.rank * per_rank:(self.rank + 1) * per_rank]
        first = self.rank * per_rank  # position in the global batch: seeds the randomness
        micro = []
        for m in range(self.update_freq):
            chunk = mine[m * self.batch_size:(m + 1) * self.batch_size]
            start = first + m * self.batch_size
            samples = [s for j, (d, i) in enumerate(chunk)
                       for s in self._samples(step, start + j, d, i)]
            # one batch per loss group (pretraining: pairs, then extras)
            for group in sorted({s.group for s in samples}):
                micro.append(collate([s for s in samples if s.group == group]))
        return micro

    def _samples(self, step: int, position: int, d: int, i: int) -> list[Sample]:
        record, noise = self.datasets[d][i], self.decoder_noise[d]
        pretrain = "pretrain" in record
        # random choices depend on (seed, step, position) only: resumed and multi-process
        # runs draw the same; a record that draws nothing makes no generator
        rng = (np.random.default_rng([self.seed, 2 << 20, step, position])
               if pretrain or noise > 0 else None)
        if pretrain:
            if self.pretrain is None:
                raise InputError("pretraining records need the trainer's pretraining samples")
            return self.pretrain(record, self.image_sizes[d], rng)
        return [build_sample(record, self.tokenizer, self.image_sizes[d],
                             self.max_source_length, self.max_target_length, self.image_cache,
                             self.tries[d], noise, rng)]
