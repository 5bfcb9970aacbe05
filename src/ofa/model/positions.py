"""Position ids and relative-position buckets (OFA-Sys/OFA ``models/ofa/unify_transformer.py``:
``make_token_bucket_position``, ``make_image_bucket_position``).

The official code precomputes full (1024 x 1024) and (1765 x 1765) bucket tables and indexes
them; here the same integers are computed only for the (query, key) pairs a forward pass needs.
"""

from __future__ import annotations

import torch
from torch import nn


def token_rel_buckets(q_pos: torch.Tensor, k_pos: torch.Tensor, bucket_size: int,
                      max_position: int) -> torch.Tensor:
    """Bucket index (0 .. 2*bucket_size-2) of every text (query, key) pair: log-spaced beyond
    bucket_size // 2, exactly as fairseq-OFA's ``make_token_bucket_position`` (float32 math)."""
    rel = q_pos[:, None] - k_pos[None, :]
    mid = bucket_size // 2
    sign = torch.sign(rel)
    abs_pos = torch.where((rel < mid) & (rel > -mid), torch.full_like(rel, mid - 1), rel.abs())
    # float32 like the reference, so bucket boundaries round identically
    log_pos = torch.ceil(
        torch.log(abs_pos.float() / mid)
        / torch.log(torch.tensor((max_position - 1) / mid, dtype=torch.float32))
        * (mid - 1)
    ) + mid
    bucket = torch.where(abs_pos <= mid, rel, log_pos.long() * sign)
    return bucket + bucket_size - 1


def image_position_ids(height: int, width: int, bucket_size: int,
                       device: torch.device | None = None) -> torch.Tensor:
    """Ids ``r * bucket_size + c + 1`` of an (height x width) patch grid, row-major."""
    r = torch.arange(height, device=device)[:, None]
    c = torch.arange(width, device=device)[None, :]
    return (r * bucket_size + c + 1).flatten()


def image_rel_buckets(q_ids: torch.Tensor, k_ids: torch.Tensor, bucket_size: int) -> torch.Tensor:
    """Bucket index of every image (query, key) position-id pair, 2-D relative offsets.

    Id 0 is the special position of the decoder's BOS in code mode: row 0 -> n-3, column 0 ->
    n-2, both -> n-1, with n = (2*bucket_size-1)**2 + 3 buckets (``make_image_bucket_position``).
    """
    span = 2 * bucket_size - 1
    n = span * span + 3
    rq, cq = torch.div(q_ids - 1, bucket_size, rounding_mode="floor"), (q_ids - 1) % bucket_size
    rk, ck = torch.div(k_ids - 1, bucket_size, rounding_mode="floor"), (k_ids - 1) % bucket_size
    idx = (rq[:, None] - rk[None, :] + bucket_size - 1) * span + (cq[:, None] - ck[None, :]
                                                                  + bucket_size - 1)
    q0, k0 = (q_ids == 0)[:, None], (k_ids == 0)[None, :]
    idx = torch.where(q0, n - 3, idx)
    idx = torch.where(k0, n - 2, idx)
    return torch.where(q0 & k0, n - 1, idx)


def decoder_image_position_ids(code_image_size: int, bucket_size: int,
                               max_target_positions: int = 1024) -> torch.Tensor:
    """Position ids of decoder code tokens: BOS (0), the (size/8)^2 grid, then filler 1024.

    fairseq-OFA builds ``[0] + grid + [1024] * 769``; released checkpoints hold 1025 entries,
    so this buffer is always rebuilt, never loaded.
    """
    window = code_image_size // 8
    grid = [r * bucket_size + c + 1 for r in range(window) for c in range(window)]
    # the official filler is a fixed 769 entries of id 1024, whatever the grid size
    return torch.tensor([0] + grid + [max_target_positions] * 769)


def relative_bias_tables(num_layers: int, token_bucket_size: int, num_image_buckets: int,
                         num_heads: int) -> tuple[nn.ModuleList, nn.ModuleList]:
    """Per-layer (text, image) relative-bias tables: [2*bucket-1, H] and [image buckets, H]."""
    text = nn.ModuleList(nn.Embedding(2 * token_bucket_size - 1, num_heads)
                         for _ in range(num_layers))
    image = nn.ModuleList(nn.Embedding(num_image_buckets, num_heads) for _ in range(num_layers))
    return text, image
