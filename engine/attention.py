"""Where a forward's tokens write their keys and values, and what they attend over.

A forward takes T query tokens, flattened across sequences (`tokens [T]`, `positions [T]`). Its context says,
for every layer, where each token's K/V go (`write`) and computes attention (`attend`), each token over its own
sequence's positions up to and including its own. Two contexts:

- `PagedContext`: sequences in the paged pool (engine/kv.py). A segment is one sequence's run of consecutive
  query tokens (a decode row: one; a prefill chunk; a row being verified speculatively: 1 + draft). With the C++
  kernel built (engine/native.py) every segment goes through it in one call: its arithmetic per query token is
  independent of every other token and of the chunking, so a token's attention is bit-identical whether it is
  decoded, prefilled in any chunk, reused from the prefix cache or verified speculatively. This matters more
  than it seems: the int8/int4 kernels round activations to bf16, so a last-bit difference anywhere can move a
  logit by ~0.1 and flip a near-tie. Without the kernel each segment gathers its K/V and uses torch's SDPA per
  segment: the same result up to rounding.
- `ContiguousContext`: one sequence in plain tensors; the reference the paged cache is tested against, and what
  calibration passes (SmoothQuant, GPTQ, AWQ) run on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.kv import KVPool
from engine.native import kernels

# What the C++ kernel is compiled for (engine/csrc/paged_attention.cpp); other shapes take the torch path.
NATIVE_HEAD_DIMS = (16, 32, 64, 128)
NATIVE_BLOCK_SIZES = (16, 32, 64)


@dataclass
class Segment:
    """Query tokens [start, start + count) of one sequence, at positions [first, first + count)."""

    start: int
    count: int
    first: int
    blocks: list[int]


def native_for(pool: KVPool):
    """The C++ kernels, when built and compiled for this pool's head size and block size; else None."""
    supported = pool.head_dim in NATIVE_HEAD_DIMS and pool.block_size in NATIVE_BLOCK_SIZES
    return kernels() if supported else None


class PagedContext:
    def __init__(self, pool: KVPool, segments: list[Segment], slots: torch.Tensor, positions: torch.Tensor):
        # slots, positions: [T]; segments cover the T tokens in order
        self.pool, self.segments = pool, segments
        self.slots, self.positions = slots, positions
        self.native = native_for(pool)
        if self.native is not None:
            width = max(len(s.blocks) for s in segments)
            self.tables = torch.tensor(
                [s.blocks + [0] * (width - len(s.blocks)) for s in segments], dtype=torch.int32
            )
            self.row_of = torch.repeat_interleave(
                torch.arange(len(segments), dtype=torch.int32), torch.tensor([s.count for s in segments])
            )
            self.lengths = (positions + 1).to(torch.int32)
        else:
            bs = pool.block_size
            self.context_slots = []
            for s in segments:
                pos = torch.arange(s.first + s.count)
                self.context_slots.append(torch.tensor(s.blocks, dtype=torch.long)[pos // bs] * bs + pos % bs)

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        self.pool.write(layer, self.slots, k, v)

    def attend(self, layer: int, q: torch.Tensor) -> torch.Tensor:
        """q: [T, H, D] -> [T, H, D]."""
        pool = self.pool
        if self.native is not None:
            return self.native.paged_attention(
                q.float().contiguous(),
                pool.k[layer],
                pool.v[layer],
                pool.k_scale[layer],
                pool.v_scale[layer],
                self.tables,
                self.row_of,
                self.lengths,
                pool.block_size,
                1.0 / math.sqrt(q.shape[-1]),
            ).to(q.dtype)
        outs = []
        for segment, slots in zip(self.segments, self.context_slots, strict=True):
            k, v = pool.read(layer, slots, q.dtype)  # [L, KVH, D]
            query = q[segment.start : segment.start + segment.count]
            outs.append(sdpa(query, k, v, segment.first))
        return torch.cat(outs) if len(outs) > 1 else outs[0]


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, first: int) -> torch.Tensor:
    """Query tokens at positions [first, first + S) over keys at positions [0, L): q [S, H, D], k/v [L, KVH, D]."""
    S, L = q.shape[0], k.shape[0]
    mask = None
    if S > 1:
        mask = torch.arange(L)[None, :] <= torch.arange(first, first + S)[:, None]  # [S, L]
    out = F.scaled_dot_product_attention(
        q.transpose(0, 1).unsqueeze(0),
        k.transpose(0, 1).unsqueeze(0),
        v.transpose(0, 1).unsqueeze(0),
        attn_mask=mask,
        enable_gqa=q.shape[1] != k.shape[1],
    )
    return out[0].transpose(0, 1)  # [S, H, D]


class ContiguousContext:
    """One sequence in contiguous per-layer tensors that grow as needed; call `at(positions)` before a forward."""

    def __init__(self, n_layers: int, dtype: torch.dtype = torch.float32):
        self.k: list[torch.Tensor | None] = [None] * n_layers
        self.v: list[torch.Tensor | None] = [None] * n_layers
        self.dtype = dtype
        self.first = 0

    def at(self, positions: torch.Tensor) -> ContiguousContext:
        self.positions = positions
        self.first = int(positions[0])
        return self

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        old_k, old_v = self.k[layer], self.v[layer]
        kept = self.first
        self.k[layer] = k.to(self.dtype) if old_k is None else torch.cat([old_k[:kept], k.to(self.dtype)])
        self.v[layer] = v.to(self.dtype) if old_v is None else torch.cat([old_v[:kept], v.to(self.dtype)])

    def attend(self, layer: int, q: torch.Tensor) -> torch.Tensor:
        return sdpa(q, self.k[layer].to(q.dtype), self.v[layer].to(q.dtype), self.first)
