"""Multitask batches: shares by ratio, curriculum phases, deterministic epochs and ranks."""

from __future__ import annotations

import pytest

from ofa.errors import InputError
from ofa.train.data import StepBatches, phases, shares


def test_shares_follow_ratios():
    assert shares([1, 1], 4) == [2, 2]
    assert shares([0.25, 0.25, 0.25, 0.15, 0.10], 64) == [16, 16, 16, 10, 6]
    assert sum(shares([3, 1, 1], 7)) == 7
    with pytest.raises(InputError, match="cannot hold"):
        shares([1, 1000], 8)


def test_step_batches_deterministic_epochs_and_ranks(tokenizer, image):
    recs = [{"task": "summarize", "id": f"s{i}", "source": f"text number {i}",
             "summary": f"n {i}"} for i in range(10)]
    caps = [{"task": "caption", "id": f"c{i}", "image": image, "caption": f"cap {i}"}
            for i in range(3)]
    one = StepBatches([recs, caps], [2, 1], tokenizer, batch_size=6, seed=4)
    again = StepBatches([recs, caps], [2, 1], tokenizer, batch_size=6, seed=4)
    assert one.phase_counts == [[4, 2]]
    assert one.global_indices(7) == again.global_indices(7)
    assert one.global_indices(7) != one.global_indices(8)
    # dataset 0 is read in epoch order: 10 records over steps 0..4 (4 per step), each once
    seen = [i for step in range(5) for d, i in one.global_indices(step) if d == 0][:10]
    assert sorted(seen) == list(range(10))
    # two ranks with half the batch read exactly the single-process samples
    ranks = [StepBatches([recs, caps], [2, 1], tokenizer, batch_size=3, seed=4, rank=r,
                         world_size=2) for r in (0, 1)]
    whole = one[3][0]
    parts = [r[3][0] for r in ranks]
    assert parts[0].tasks + parts[1].tasks == whole.tasks
    assert sum(p.ntokens for p in parts) == whole.ntokens


def test_phases_share_the_batch_among_active_datasets():
    starts, counts = phases([0.5, 0.5, 0.5], [(0, 4), (0, None), (4, None)], 8)
    assert starts == [0, 4] and counts == [[4, 4, 0], [0, 4, 4]]
    # phases at or after the last update are never trained: no error for an empty tail
    assert phases([1.0], [(0, 10)], 8, num_updates=10) == ([0], [[8]])
    with pytest.raises(InputError, match="no training dataset is active from update 10"):
        phases([1.0], [(0, 10)], 8, num_updates=20)
    with pytest.raises(InputError, match="no training dataset is active from update 0"):
        phases([1.0], [(3, None)], 8)


def test_curriculum_reads_each_dataset_on_across_phases(tokenizer):
    def records(name: str, n: int) -> list[dict]:
        return [{"task": "summarize", "id": f"{name}{i}", "source": f"{name} {i}",
                 "summary": name} for i in range(n)]

    data = [records("a", 12), records("b", 12), records("c", 12)]
    batches = StepBatches(data, [1, 1, 1], tokenizer, batch_size=4, seed=2,
                          windows=[(0, 3), (0, None), (3, None)])
    per_step = [[d for d, _ in batches.global_indices(s)] for s in range(6)]
    assert all(sorted(p) == [0, 0, 1, 1] for p in per_step[:3])
    assert all(sorted(p) == [1, 1, 2, 2] for p in per_step[3:])
    # dataset 1 runs through both phases: its 12 records are each read once over 6 updates
    read_b = [i for s in range(6) for d, i in batches.global_indices(s) if d == 1]
    assert sorted(read_b) == list(range(12))
    # dataset 2 starts at its first record when it joins
    read_c = [i for s in range(3, 9) for d, i in batches.global_indices(s) if d == 2]
    assert sorted(read_c) == list(range(12))
    assert batches[4][0].tasks == ["summarize"] * 4
