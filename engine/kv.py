"""The paged KV cache: every sequence's keys and values live in fixed-size blocks of one pool, and full blocks are
shared between sequences whose tokens agree (automatic prefix caching).

Contract. `KVPool` holds the tensors: per layer, `blocks * block_size` slots of `[kv_heads, head_dim]` in fp32,
bf16 or int8 (int8 with one fp32 scale per token and head). `BlockManager` hands out block numbers: a block is owned
by the sequences that reference it (a reference count); a block whose tokens are all committed is registered
under a digest of its content chained to its predecessors' (so equal digests mean equal prefixes, computed by
this model and method: the namespace is part of the root digest). A registered block no sequence references
stays in the pool as *evictable*: a later request with the same prefix takes it back; a request that needs room
evicts the least recently used one. `BlockTable` is one sequence's list of blocks; a shared block is copied
before it is written (copy on write), so `n > 1` samples and beams share their prompt without copying it.
Nothing here knows about requests or sampling.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict

import torch

from engine.kv_options import DEFAULT_KV_DTYPE, KV_DTYPE_NAMES

KV_DTYPES = dict(zip(KV_DTYPE_NAMES, (torch.float32, torch.bfloat16, torch.int8), strict=True))


class OutOfBlocks(RuntimeError):
    """No free or evictable block is left; the caller preempts a sequence or waits."""


class KVPool:
    """The K/V tensors of all layers. Slot s is position s % block_size of block s // block_size.

    Keys are stored transposed within a block, `[blocks, kv_heads, head_dim, block_size]`, so attention computes
    a block's scores as block_size-wide vector FMAs with no transpose at run time; values are slot-major,
    `[slots, kv_heads, head_dim]`, so the weighted sum runs along head_dim. int8 keeps one fp32 scale per token
    and head for each (`[slots, kv_heads]`)."""

    def __init__(
        self,
        n_layers: int,
        kv_heads: int,
        head_dim: int,
        num_blocks: int,
        block_size: int,
        kv_dtype: str = DEFAULT_KV_DTYPE,
    ):
        if kv_dtype not in KV_DTYPES:
            raise ValueError(f"unknown KV dtype '{kv_dtype}'; supported: {', '.join(KV_DTYPES)}")
        self.kv_dtype, self.dtype = kv_dtype, KV_DTYPES[kv_dtype]
        self.num_blocks, self.block_size = num_blocks, block_size
        self.n_layers, self.kv_heads, self.head_dim = n_layers, kv_heads, head_dim
        slots = num_blocks * block_size
        # torch.empty: pages become resident only when a block is first written.
        self.k = torch.empty(n_layers, num_blocks, kv_heads, head_dim, block_size, dtype=self.dtype)
        self.v = torch.empty(n_layers, slots, kv_heads, head_dim, dtype=self.dtype)
        self.quantized = kv_dtype == "int8"
        if self.quantized:
            self.k_scale = torch.empty(n_layers, slots, kv_heads, dtype=torch.float32)
            self.v_scale = torch.empty(n_layers, slots, kv_heads, dtype=torch.float32)
        else:
            self.k_scale = self.v_scale = torch.empty(n_layers, 0, 0)

    def bytes_per_token(self) -> int:
        element = 1 if self.quantized else torch.finfo(self.dtype).bits // 8
        per_head = self.head_dim * element + (4 if self.quantized else 0)
        return 2 * self.n_layers * self.kv_heads * per_head

    def block_bytes(self) -> int:
        return self.bytes_per_token() * self.block_size

    def _keys(self, layer: int) -> torch.Tensor:
        """Layer `layer`'s keys as a [blocks, block_size, kv_heads, head_dim] view."""
        return self.k[layer].permute(0, 3, 1, 2)

    def write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k, v [T, kv_heads, head_dim] at `slots` [T]."""
        where = (slots // self.block_size, slots % self.block_size)
        if self.quantized:
            qk, k_scale = quantize_int8(k)
            qv, v_scale = quantize_int8(v)
            self._keys(layer).index_put_(where, qk)
            self.v[layer].index_copy_(0, slots, qv)
            self.k_scale[layer].index_copy_(0, slots, k_scale)
            self.v_scale[layer].index_copy_(0, slots, v_scale)
        else:
            self._keys(layer).index_put_(where, k.to(self.dtype))
            self.v[layer].index_copy_(0, slots, v.to(self.dtype))

    def read(self, layer: int, slots: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """K, V [n, kv_heads, head_dim] of `slots` [n], dequantized to `dtype`."""
        k = self._keys(layer)[slots // self.block_size, slots % self.block_size]
        v = self.v[layer].index_select(0, slots)
        if self.quantized:
            k = k.to(dtype) * self.k_scale[layer].index_select(0, slots).unsqueeze(-1).to(dtype)
            v = v.to(dtype) * self.v_scale[layer].index_select(0, slots).unsqueeze(-1).to(dtype)
            return k, v
        return k.to(dtype), v.to(dtype)

    def copy_block(self, src: int, dst: int) -> None:
        bs = self.block_size
        self.k[:, dst] = self.k[:, src]
        for store in (self.v,) + ((self.k_scale, self.v_scale) if self.quantized else ()):
            store[:, dst * bs : (dst + 1) * bs] = store[:, src * bs : (src + 1) * bs]


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per token and head: x [T, H, D] -> (q int8 [T, H, D], scale fp32 [T, H])."""
    scale = x.abs().amax(-1).float().clamp(min=1e-8) / 127.0
    q = torch.round(x.float() / scale.unsqueeze(-1)).clamp(-127, 127).to(torch.int8)
    return q, scale


class BlockManager:
    """Block numbers, their reference counts, and the prefix cache (digest -> block, LRU of unreferenced ones)."""

    def __init__(self, num_blocks: int, block_size: int, namespace: str, caching: bool = True):
        self.num_blocks, self.block_size, self.caching = num_blocks, block_size, caching
        self.root = hashlib.blake2b(namespace.encode(), digest_size=16).digest()
        self.reset()

    def reset(self) -> None:
        """Forget every reference and cached block (after an engine failure left tables unaccounted for)."""
        num_blocks = self.num_blocks
        self.refs = [0] * num_blocks
        self.free = list(
            range(num_blocks - 1, -1, -1)
        )  # a stack: recently freed (warm) blocks are reused first
        self.by_digest: dict[bytes, int] = {}
        self.digest_of: dict[int, bytes] = {}
        self.evictable: OrderedDict[int, None] = OrderedDict()  # registered, unreferenced; oldest first
        self.stats = {"hit_tokens": 0, "queried_tokens": 0, "evictions": 0, "peak_used": 0}

    # --- accounting --------------------------------------------------------------------------------------

    def available(self) -> int:
        """Blocks a sequence could get now: free ones plus cached ones nobody references."""
        return len(self.free) + len(self.evictable)

    def used(self) -> int:
        """Blocks referenced by at least one sequence."""
        return self.num_blocks - self.available()

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    # --- references --------------------------------------------------------------------------------------

    def allocate(self) -> int:
        if self.free:
            block = self.free.pop()
        elif self.evictable:
            block, _ = self.evictable.popitem(last=False)  # least recently used first
            del self.by_digest[self.digest_of.pop(block)]
            self.stats["evictions"] += 1
        else:
            raise OutOfBlocks("the KV cache has no free block")
        self.refs[block] = 1
        self.stats["peak_used"] = max(self.stats["peak_used"], self.used())
        return block

    def share(self, blocks: list[int]) -> None:
        for block in blocks:
            if self.refs[block] == 0:
                self.evictable.pop(block, None)
            self.refs[block] += 1
        self.stats["peak_used"] = max(self.stats["peak_used"], self.used())

    def release(self, blocks: list[int]) -> None:
        for block in blocks:
            self.refs[block] -= 1
            if self.refs[block] == 0:
                if block in self.digest_of:
                    self.evictable[block] = None  # kept for a later prefix hit until room is needed
                else:
                    self.free.append(block)

    # --- the prefix cache --------------------------------------------------------------------------------

    def digest(self, previous: bytes | None, tokens: list[int]) -> bytes:
        data = (previous or self.root) + array("q", tokens).tobytes()
        return hashlib.blake2b(data, digest_size=16).digest()

    def match(self, tokens: list[int], max_blocks: int) -> tuple[list[int], list[bytes]]:
        """The cached blocks of the longest prefix of `tokens` (at most `max_blocks`), now referenced by the caller.
        The hit statistics are the caller's to count (`count_lookup`), once the request really starts."""
        blocks: list[int] = []
        digests: list[bytes] = []
        if not self.caching:
            return blocks, digests
        bs = self.block_size
        for i in range(max_blocks):
            digest = self.digest(digests[-1] if digests else None, tokens[i * bs : (i + 1) * bs])
            block = self.by_digest.get(digest)
            if block is None:
                break
            blocks.append(block)
            digests.append(digest)
        self.share(blocks)  # referenced again: no longer evictable
        return blocks, digests

    def count_lookup(self, tokens: int, hit_blocks: int) -> None:
        self.stats["queried_tokens"] += tokens
        self.stats["hit_tokens"] += hit_blocks * self.block_size

    def register(self, block: int, digest: bytes) -> None:
        """A full block of committed tokens becomes findable by its digest (the first block with it wins)."""
        if self.caching and digest not in self.by_digest and block not in self.digest_of:
            self.by_digest[digest] = block
            self.digest_of[block] = digest

    def snapshot(self) -> dict[str, int]:
        return {
            "kv_blocks_total": self.num_blocks,
            "kv_blocks_used": self.used(),
            "kv_blocks_free": len(self.free),
            "kv_blocks_cached": len(self.evictable),
            "kv_block_size": self.block_size,
            "kv_blocks_peak_used": self.stats["peak_used"],
            "prefix_cache_hit_tokens": self.stats["hit_tokens"],
            "prefix_cache_queried_tokens": self.stats["queried_tokens"],
            "prefix_cache_evictions": self.stats["evictions"],
        }


class BlockTable:
    """One sequence's blocks; `digests[i]` is set once block i is full of committed tokens and registered."""

    def __init__(self, blocks: list[int] | None = None, digests: list[bytes] | None = None):
        self.blocks = blocks or []
        self.digests = digests or []

    def fork(self, manager: BlockManager) -> BlockTable:
        """A second owner of the same blocks (n samples, a beam's children): nothing is copied until written."""
        manager.share(self.blocks)
        return BlockTable(list(self.blocks), list(self.digests))

    def release(self, manager: BlockManager) -> None:
        manager.release(self.blocks)
        self.blocks, self.digests = [], []

    def truncate(self, manager: BlockManager, length: int) -> None:
        """Give back the blocks past the one position `length` is written to (a rejected draft's blocks)."""
        keep = length // manager.block_size + 1
        if len(self.blocks) > keep:
            manager.release(self.blocks[keep:])
            del self.blocks[keep:]

    def prepare(self, manager: BlockManager, pool: KVPool, start: int, count: int) -> torch.Tensor:
        """Make positions [start, start + count) writable (new blocks, copy on write); returns their slots [count].

        Raises OutOfBlocks with the table unchanged in length for blocks it could not get (already-made
        copies and allocations are kept: they belong to this sequence)."""
        bs = manager.block_size
        for index in range(start // bs, (start + count - 1) // bs + 1):
            if index == len(self.blocks):
                self.blocks.append(manager.allocate())
            elif manager.refs[self.blocks[index]] > 1:
                copy = manager.allocate()
                pool.copy_block(self.blocks[index], copy)
                manager.release([self.blocks[index]])
                self.blocks[index] = copy
                del self.digests[index:]  # a shared block being written was never full: nothing to forget
        positions = torch.arange(start, start + count)
        table = torch.tensor(self.blocks, dtype=torch.long)
        return table[positions // bs] * bs + positions % bs

    def commit(self, manager: BlockManager, tokens: list[int], committed: int) -> None:
        """Register every block that is now full of the first `committed` tokens of `tokens`."""
        bs = manager.block_size
        while len(self.digests) < min(committed // bs, len(self.blocks)):
            i = len(self.digests)
            digest = manager.digest(self.digests[-1] if self.digests else None, tokens[i * bs : (i + 1) * bs])
            self.digests.append(digest)
            manager.register(self.blocks[i], digest)

    def slots(self, length: int, block_size: int) -> torch.Tensor:
        """Slots of positions [0, length)."""
        positions = torch.arange(length)
        return torch.tensor(self.blocks, dtype=torch.long)[positions // block_size] * block_size + (
            positions % block_size
        )
