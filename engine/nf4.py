"""NF4 (QLoRA's 4-bit NormalFloat) with double quantization of its absmax constants, and its runtime module.

The code book holds the 16 quantiles of N(0, 1) normalised to [-1, 1]; weights are quantized in blocks of 64 by
their absmax, and the absmax constants themselves to int8 in blocks of 256 around their mean. There is no CPU
kernel: see `NF4Linear` for how a decode step avoids materialising the weights.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from engine.quantize import QuantError, QuantLinear, _pack_nibbles, absmax_int8

# The 16 NF4 levels of QLoRA (quantiles of N(0, 1), normalised to [-1, 1]).
NF4_CODE_BOOK = torch.tensor(
    [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ]
)
NF4_BLOCK = 64
NF4_ABSMAX_BLOCK = 256


def nf4_quantize(w: torch.Tensor) -> dict[str, torch.Tensor]:
    """NF4 with double quantization; returns the quantized state (codes packed two per byte)."""
    flat = w.reshape(-1).float()
    if flat.numel() % NF4_BLOCK:
        raise QuantError(f"nf4 needs a multiple of {NF4_BLOCK} weights, got {flat.numel()}")
    blocks = flat.reshape(-1, NF4_BLOCK)
    absmax = blocks.abs().amax(-1).clamp(min=1e-12)
    normalised = blocks / absmax[:, None]
    codes = (normalised[..., None] - NF4_CODE_BOOK).abs().argmin(-1).to(torch.uint8)
    # Double quantization of the absmax constants: subtract their mean, int8 per block of 256.
    mean = absmax.mean()
    centred = absmax - mean
    pad = (-centred.numel()) % NF4_ABSMAX_BLOCK
    padded = F.pad(centred, (0, pad)).reshape(-1, NF4_ABSMAX_BLOCK)
    q_absmax, absmax_scale = absmax_int8(padded, dim=1)
    return {
        "codes": _pack_nibbles(codes),
        "absmax_q": q_absmax.reshape(-1)[: absmax.numel()].contiguous(),
        "absmax_scale": absmax_scale.float(),
        "absmax_mean": mean.reshape(1).float(),
    }


@lru_cache(maxsize=1)
def _nf4_byte_table() -> torch.Tensor:
    """Both code-book values of every possible packed byte: one gather decodes two weights."""
    byte = torch.arange(256)
    return torch.stack([NF4_CODE_BOOK[byte & 0x0F], NF4_CODE_BOOK[byte >> 4]], dim=1)  # [256, 2]


def nf4_dequantize(state: dict[str, torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
    numel = math.prod(shape)
    n_blocks = numel // NF4_BLOCK
    absmax_q = F.pad(state["absmax_q"].float(), (0, (-n_blocks) % NF4_ABSMAX_BLOCK)).reshape(
        -1, NF4_ABSMAX_BLOCK
    )
    absmax = (absmax_q * state["absmax_scale"][:, None]).reshape(-1)[:n_blocks] + state["absmax_mean"]
    values = _nf4_byte_table().index_select(0, state["codes"].int()).reshape(n_blocks, NF4_BLOCK)
    return (values * absmax[:, None]).reshape(shape)


class NF4Linear(QuantLinear):
    """NF4 has no CPU kernel. For a few rows (decode) we never build the weight: per row of activations, a table
    P[j, byte] = x[2j] * code(low nibble) + x[2j+1] * code(high nibble) is gathered by the packed codes, summed
    per block and scaled by the block's absmax. Larger batches (prefill) dequantize the layer once and matmul."""

    TABLE_ROWS = 4

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self._init(linear)
        if linear.in_features % NF4_BLOCK:
            raise QuantError(f"nf4 needs in_features divisible by {NF4_BLOCK}, got {linear.in_features}")
        for key, value in nf4_quantize(linear.weight.detach()).items():
            self.register_buffer(key, value)
        self.register_buffer(
            "byte_offsets", torch.arange(linear.in_features // 2, dtype=torch.int32) * 256, persistent=False
        )

    def weight_bytes(self) -> int:
        return sum(
            getattr(self, k).numel() * getattr(self, k).element_size()
            for k in ("codes", "absmax_q", "absmax_scale", "absmax_mean")
        )

    def _state(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k) for k in ("codes", "absmax_q", "absmax_scale", "absmax_mean")}

    def dequantize(self) -> torch.Tensor:
        return nf4_dequantize(self._state(), (self.out_features, self.in_features))

    def _absmax(self) -> torch.Tensor:
        n_blocks = self.out_features * self.in_features // NF4_BLOCK
        q = F.pad(self.absmax_q.float(), (0, (-n_blocks) % NF4_ABSMAX_BLOCK)).reshape(-1, NF4_ABSMAX_BLOCK)
        absmax = (q * self.absmax_scale[:, None]).reshape(-1)[:n_blocks] + self.absmax_mean
        return absmax.reshape(self.out_features, self.in_features // NF4_BLOCK)

    def _table_matvec(self, x: torch.Tensor) -> torch.Tensor:
        # x: [K] -> y: [N]. One bag per NF4 block (32 bytes): embedding_bag gathers and sums without
        # materialising the weights.
        table = _nf4_byte_table()
        pairs = x.float().reshape(-1, 2)
        products = pairs[:, :1] * table[:, 0][None, :] + pairs[:, 1:] * table[:, 1][None, :]  # [K/2, 256]
        index = self.codes.reshape(self.out_features, -1).int() + self.byte_offsets
        per_block = F.embedding_bag(index.reshape(-1, NF4_BLOCK // 2), products.reshape(-1, 1), mode="sum")
        return (per_block.reshape(self.out_features, -1) * self._absmax()).sum(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        if flat.shape[0] <= self.TABLE_ROWS:
            y = torch.stack([self._table_matvec(row) for row in flat])
        else:
            y = F.linear(flat.float(), self.dequantize())
        return self._add_bias(y.reshape(*shape[:-1], self.out_features))
