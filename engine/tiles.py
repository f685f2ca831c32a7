"""Weight layouts of the AVX-512 BF16 matmul kernels (engine/csrc/qgemm.cpp), built from codes and read back.

Those kernels decode each tile of 16 output columns x 2 input features once for all the rows of a call, so a
decode step of 16 rows costs far less than 16 steps of one (torch's int4/int8 CPU kernels decode per row), and a
row's result is bit-identical whatever rows share the call. They are built where the CPU has AVX-512 BF16;
elsewhere the linears keep torch's kernels (engine/quantize.py chooses).
"""

from __future__ import annotations

from typing import Any

import torch

from engine.native import kernels

TILE = 16  # output columns per tile


def tile_kernels() -> Any | None:
    """The compiled module when it has the tile kernels (AVX-512 BF16 at build time), else None."""
    native = kernels()
    if native is None or not hasattr(native, "qgemm_available") or not native.qgemm_available():
        return None
    return native


def fits_int4(out_features: int, group: int) -> bool:
    return out_features % TILE == 0 and group % 4 == 0


def fits_int8(out_features: int, in_features: int) -> bool:
    return out_features % TILE == 0 and in_features % 2 == 0


def pack_int4(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """codes q [N, K] in 0..15, scale/zero [N, K/G] (w = (q - 8) * scale + zero) -> (codes [N/16, K/2, 16] uint8,
    low nibble feature 2p and high nibble 2p+1; scales_zeros [N/16, K/G, 2, 16] bf16)."""
    n, k = q.shape
    pairs = q.to(torch.uint8).reshape(n // TILE, TILE, k // 2, 2)
    codes = (pairs[..., 0] | (pairs[..., 1] << 4)).permute(0, 2, 1).contiguous()
    groups = scale.shape[1]

    def tiled(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(n // TILE, TILE, groups).permute(0, 2, 1)

    scales_zeros = torch.stack([tiled(scale), tiled(zero)], dim=2).to(torch.bfloat16).contiguous()
    return codes, scales_zeros


def unpack_int4(codes: torch.Tensor, scales_zeros: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The inverse of pack_int4: (q [N, K] uint8, scale [N, K/G], zero [N, K/G] fp32, as the kernel reads them)."""
    tiles, pairs, _ = codes.shape
    q = torch.stack([codes & 0x0F, codes >> 4], dim=-1)  # [N/16, K/2, 16, 2]
    q = q.permute(0, 2, 1, 3).reshape(tiles * TILE, pairs * 2)
    sz = scales_zeros.float().permute(0, 3, 1, 2).reshape(tiles * TILE, -1, 2)  # [N, K/G, 2]
    return q, sz[..., 0], sz[..., 1]


def pack_int8(q: torch.Tensor) -> torch.Tensor:
    """int8 codes [N, K] -> [N/16, K/2, 32]: column j's features 2p, 2p+1 at bytes 2j, 2j+1 of pair p."""
    n, k = q.shape
    return q.reshape(n // TILE, TILE, k // 2, 2).permute(0, 2, 1, 3).reshape(n // TILE, k // 2, 2 * TILE)


def int8_rows(codes: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Rows `rows` (any shape) of the [N, K] matrix held as tiles -> [*rows.shape, K] int8 (the token lookup)."""
    tiles, pairs, _ = codes.shape
    grid = codes.view(tiles, pairs, TILE, 2)
    picked = grid[rows // TILE, :, rows % TILE]  # [*rows.shape, K/2, 2]
    return picked.reshape(*rows.shape, pairs * 2)


def unpack_int8(codes: torch.Tensor) -> torch.Tensor:
    tiles = codes.shape[0]
    return int8_rows(codes, torch.arange(tiles * TILE))
