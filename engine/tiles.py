"""Weight layouts of the AVX-512 VNNI matmul kernels (engine/csrc/qgemm.cpp), built from codes and read back.

Those kernels quantize each row's activations to int8 per block of features and load each tile of 16 output
columns x 8 input features once for all the rows of a call, so a decode step of 16 rows costs far less than 16
steps of one (torch's int4/int8 CPU kernels decode per row), and a row's result is bit-identical whatever rows
share the call. They are built where the CPU has AVX-512 VNNI; elsewhere the linears keep torch's kernels
(engine/quantize.py chooses).
"""

from __future__ import annotations

from typing import Any

import torch

from engine.native import kernels

TILE = 16  # output columns per tile
ACT_BLOCK = 32  # int8 weights: activation features per int8 scale (passed to int8_matmul)


def tile_kernels() -> Any | None:
    """The compiled module when it has the tile kernels (AVX-512 BF16 at build time), else None."""
    native = kernels()
    if native is None or not hasattr(native, "qgemm_available") or not native.qgemm_available():
        return None
    return native


def fits_int4(out_features: int, group: int) -> bool:
    # the kernel quantizes activations per group, 16 features at a time
    return out_features % TILE == 0 and group % 16 == 0


def fits_int8(out_features: int, in_features: int) -> bool:
    return out_features % TILE == 0 and in_features % ACT_BLOCK == 0


def pack_int4(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """codes q [N, K] in 0..15, scale/zero [N, K/G] (w = (q - 8) * scale + zero) -> (codes [N/16, K/8, 64] uint8:
    byte 4j+i of octet o holds column j's feature 8o+i in its low nibble and 8o+4+i in its high one;
    scales_zeros [N/16, K/G, 2, 16] bf16)."""
    n, k = q.shape
    octets = q.to(torch.uint8).reshape(n // TILE, TILE, k // 8, 2, 4)  # tile, column, octet, half, feature
    codes = (octets[..., 0, :] | (octets[..., 1, :] << 4)).permute(0, 2, 1, 3).reshape(n // TILE, k // 8, 64)
    groups = scale.shape[1]

    def tiled(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(n // TILE, TILE, groups).permute(0, 2, 1)

    scales_zeros = torch.stack([tiled(scale), tiled(zero)], dim=2).to(torch.bfloat16).contiguous()
    return codes.contiguous(), scales_zeros


def unpack_int4(codes: torch.Tensor, scales_zeros: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The inverse of pack_int4: (q [N, K] uint8, scale [N, K/G], zero [N, K/G] fp32, as the kernel reads them)."""
    tiles, octets, _ = codes.shape
    grid = codes.reshape(tiles, octets, TILE, 4)
    q = torch.stack([grid & 0x0F, grid >> 4], dim=3)  # [N/16, K/8, 16, half, 4]
    q = q.permute(0, 2, 1, 3, 4).reshape(tiles * TILE, octets * 8)
    sz = scales_zeros.float().permute(0, 3, 1, 2).reshape(tiles * TILE, -1, 2)  # [N, K/G, 2]
    return q, sz[..., 0], sz[..., 1]


def pack_int8(q: torch.Tensor) -> torch.Tensor:
    """int8 codes [N, K] -> [N/16, K/4, 64] uint8 q + 128: byte 4j+i of quad p is column j's feature 4p+i."""
    n, k = q.shape
    shifted = q.view(torch.uint8) ^ 0x80  # q + 128 in 0..255 (the kernel's unsigned operand)
    return (
        shifted.reshape(n // TILE, TILE, k // 4, 4)
        .permute(0, 2, 1, 3)
        .reshape(n // TILE, k // 4, 64)
        .contiguous()
    )


def int8_rows(codes: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Rows `rows` (any shape) of the [N, K] matrix held as tiles -> [*rows.shape, K] int8 (the token lookup)."""
    tiles, quads, _ = codes.shape
    grid = codes.view(tiles, quads, TILE, 4)
    picked = grid[rows // TILE, :, rows % TILE]  # [*rows.shape, K/4, 4]
    return (picked.reshape(*rows.shape, quads * 4) ^ 0x80).view(torch.int8)


def unpack_int8(codes: torch.Tensor) -> torch.Tensor:
    tiles = codes.shape[0]
    return int8_rows(codes, torch.arange(tiles * TILE))
