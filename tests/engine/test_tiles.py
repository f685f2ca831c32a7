"""The tile kernels' weight layouts (engine/tiles.py) hold exactly the codes they were built from, and their
matmuls compute the dequantized weights times the activations quantized to int8 per block (a reference written
here in torch), and so what the fp32 weights give up to that rounding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine import tiles
from engine.quantize import Int4Linear, Int8Linear, absmax_int8, int4_groups


@pytest.fixture
def native():
    module = tiles.tile_kernels()
    if module is None:
        pytest.skip("the tile kernels are not built here (no AVX-512 VNNI or no compiler)")
    return module


def int8_activations(x: torch.Tensor, block: int) -> torch.Tensor:
    """x quantized to int8 per row and block of features (absmax, round half to even) and dequantized."""
    rows, k = x.shape
    blocks = x.reshape(rows, k // block, block)
    amax = blocks.abs().amax(-1, keepdim=True)
    codes = torch.round(blocks * torch.where(amax > 0, 127 / amax, 0.0))
    return (codes * (amax / 127)).reshape(rows, k)


def test_int4_tiles_round_trip():
    torch.manual_seed(0)
    q = torch.randint(0, 16, (48, 64), dtype=torch.uint8)
    scale, zero = torch.rand(48, 2), torch.randn(48, 2)
    codes, scales_zeros = tiles.pack_int4(q, scale, zero)
    assert codes.shape == (3, 8, 64) and codes.dtype == torch.uint8  # two codes a byte: no memory added
    q_back, scale_back, zero_back = tiles.unpack_int4(codes, scales_zeros)
    assert torch.equal(q_back, q)
    assert torch.equal(scale_back, scale.bfloat16().float()) and torch.equal(
        zero_back, zero.bfloat16().float()
    )


def test_int8_tiles_round_trip_and_row_lookup():
    q = torch.randint(-127, 128, (32, 64), dtype=torch.int8)
    codes = tiles.pack_int8(q)
    assert codes.shape == (2, 16, 64) and codes.dtype == torch.uint8  # one byte a code
    assert torch.equal(tiles.unpack_int8(codes), q)
    ids = torch.tensor([[0, 17], [31, 5]])
    assert torch.equal(tiles.int8_rows(codes, ids), q[ids])


@pytest.mark.parametrize("group", [32, 128])
def test_int4_tile_matmul_equals_the_dequantized_weights(native, group):
    torch.manual_seed(1)
    linear = nn.Linear(576, 96, bias=True)
    module = Int4Linear(linear, group)
    assert module.layout == "tiles"
    x = torch.randn(5, 576)
    weights, bias = module.dequantize(), linear.bias.detach()
    # the kernel's arithmetic: (q - 8) * scale meets the int8 activations, the zeros meet each group's exact sum
    q, scale, zero = tiles.unpack_int4(module.packed, module.scales_zeros)
    centered = ((q.float() - 8).reshape(96, -1, group) * scale[..., None]).reshape(96, module.padded)
    padded = torch.nn.functional.pad(x, (0, module.padded - 576))  # groups of 128 do not divide 576
    group_sums = padded.reshape(5, -1, group).sum(-1)
    expected = int8_activations(padded, group) @ centered.t() + group_sums @ zero.t() + bias
    assert (module(x) - expected).abs().max() <= 1e-5 * expected.abs().max()
    exact = x @ weights.t() + bias  # int8 activations cost well under 1 % of the output's scale
    assert (module(x) - exact).abs().max() <= 0.01 * exact.abs().max()
    # the codes are the method's: dequantizing gives the group-wise min-max grid (bf16 scale and zero)
    if group == 32:
        q, scale, lo = int4_groups(linear.weight.detach().float(), group)
        grid = (q.float().reshape(96, -1, group) * scale[..., None] + lo[..., None]).reshape(96, 576)
        assert (module.dequantize() - grid).abs().max() <= 0.02 * grid.abs().max()


def test_int8_tile_matmul_equals_the_dequantized_weights(native):
    torch.manual_seed(2)
    linear = nn.Linear(64, 4096, bias=False)
    module = Int8Linear(linear)
    assert module.tiled
    q, _ = absmax_int8(linear.weight.detach().float(), dim=1)
    assert torch.equal(module.codes(), q)
    x = torch.randn(3, 64)
    expected = int8_activations(x, tiles.ACT_BLOCK) @ module.dequantize().t()
    assert (module(x) - expected).abs().max() <= 1e-5 * expected.abs().max()
    exact = x @ module.dequantize().t()
    assert (module(x) - exact).abs().max() <= 0.01 * exact.abs().max()


def test_a_block_of_zero_activations_adds_nothing(native):
    torch.manual_seed(3)
    module = Int4Linear(nn.Linear(64, 32, bias=False), 32)
    x = torch.randn(2, 64)
    x[:, :32] = 0.0  # a zero block has no absmax to scale by
    expected = x @ module.dequantize().t()
    assert torch.isfinite(module(x)).all()
    assert (module(x) - expected).abs().max() <= 0.01 * expected.abs().max()


def test_without_the_tile_kernels_torch_kernels_run_the_same_methods(monkeypatch):
    monkeypatch.setattr(tiles, "tile_kernels", lambda: None)
    linear = nn.Linear(64, 32)
    int4, int8 = Int4Linear(linear, 32), Int8Linear(linear)
    assert int4.layout == "aten" and not int8.tiled
    x = torch.randn(2, 64)
    for module in (int4, int8):
        expected = x.bfloat16().float() @ module.dequantize().t() + linear.bias.detach()
        assert (module(x) - expected).abs().max() <= 0.02 * expected.abs().max()
