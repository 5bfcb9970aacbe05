import numpy as np
import pytest
import torch

from ofa.model.positions import (
    decoder_image_position_ids,
    image_position_ids,
    image_rel_buckets,
    token_rel_buckets,
)


def reference_token_table(bucket_size=256, max_position=1024):
    """The full bucket table written from the formula in the reference (numpy, float32)."""
    rel = np.arange(max_position)[:, None] - np.arange(max_position)[None, :]
    mid = bucket_size // 2
    abs_pos = np.where((rel < mid) & (rel > -mid), mid - 1, np.abs(rel))
    with np.errstate(divide="ignore"):
        log_pos = np.ceil(np.log(abs_pos.astype(np.float32) / mid)
                          / np.float32(np.log((max_position - 1) / mid)) * (mid - 1)) + mid
    bucket = np.where(abs_pos <= mid, rel, log_pos.astype(np.int64) * np.sign(rel))
    return bucket + bucket_size - 1


@pytest.mark.parametrize("rel,index", [(0, 255), (1, 256), (-1, 254), (127, 382), (128, 383),
                                       (129, 384), (130, 384), (150, 393), (200, 411),
                                       (300, 436), (500, 467), (1000, 509), (1023, 510),
                                       (-1023, 0)])
def test_token_bucket_verified_values(rel, index):
    q = torch.tensor([max(rel, 0)])
    k = torch.tensor([max(-rel, 0)])
    assert token_rel_buckets(q, k, 256, 1024).item() == index


def test_token_buckets_match_full_table():
    pos = torch.arange(1024)
    ours = token_rel_buckets(pos, pos, 256, 1024).numpy()
    ref = reference_token_table()
    assert np.array_equal(ours, ref)
    assert ours.min() == 0 and ours.max() == 510


def reference_image_table(bucket=42):
    n_rel = (2 * bucket - 1) ** 2 + 3
    coords = np.stack(np.meshgrid(np.arange(bucket), np.arange(bucket), indexing="ij")).reshape(
        2, -1)
    rel = coords[:, :, None] - coords[:, None, :]
    idx = (rel[0] + bucket - 1) * (2 * bucket - 1) + rel[1] + bucket - 1
    table = np.zeros((bucket * bucket + 1,) * 2, dtype=np.int64)
    table[1:, 1:] = idx
    table[0, :] = n_rel - 3
    table[:, 0] = n_rel - 2
    table[0, 0] = n_rel - 1
    return table


def test_image_buckets_match_full_table():
    table = reference_image_table()
    ids = torch.arange(42 * 42 + 1)
    ours = image_rel_buckets(ids, ids, 42).numpy()
    assert np.array_equal(ours, table)
    assert table[0, 5] == 6889 and table[5, 0] == 6890 and table[0, 0] == 6891


def test_image_position_ids_row_major():
    ids = image_position_ids(30, 30, 42)
    assert ids[0] == 1 and ids[29] == 30 and ids[30] == 43 and ids.max() == 29 * 42 + 29 + 1


@pytest.mark.parametrize("size,length", [(128, 1026), (256, 1794)])
def test_decoder_image_position_ids(size, length):
    idx = decoder_image_position_ids(size, 42)
    assert len(idx) == length
    window = size // 8
    assert idx[0] == 0 and idx[1] == 1 and idx[window] == window and idx[window + 1] == 43
    assert (idx[1 + window * window:] == 1024).all()
