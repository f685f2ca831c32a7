"""Each method's quantized weights equal a straightforward reference implementation of the method."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from engine.generate import Engine, generate
from engine.model import build_model
from engine.nf4 import NF4_CODE_BOOK, NF4Linear
from engine.quantize import (
    Int4Linear,
    Int8Embedding,
    Int8Linear,
    LLMInt8Linear,
    QuantError,
    SmoothQuantLinear,
    linear_weight_bytes,
    parse_method,
    quantize,
)
from engine.sampling import SamplingParams

from .conftest import ByteTokenizer


def linear(out_f: int = 64, in_f: int = 128, seed: int = 0, bias: bool = False) -> nn.Linear:
    torch.manual_seed(seed)
    layer = nn.Linear(in_f, out_f, bias=bias)
    with torch.no_grad():
        layer.weight.normal_(0, 0.05)
    return layer


def test_int8_is_per_channel_absmax_round_to_nearest():
    layer = linear()
    w = layer.weight.detach()
    q = Int8Linear(layer)
    for row in range(w.shape[0]):
        scale = w[row].abs().max().item() / 127
        expected = [round(v / scale) * scale for v in w[row].tolist()]
        got = q.dequantize()[row].tolist()
        bf16_scale = float(torch.tensor(scale).bfloat16())  # the kernel takes bf16 scales
        assert got == pytest.approx([e / scale * bf16_scale for e in expected], abs=1e-7)


@pytest.mark.parametrize("group", [32, 64, 128])
def test_int4_is_groupwise_asymmetric_min_max(group):
    layer = linear(64, 256)
    w = layer.weight.detach()
    q = Int4Linear(layer, group)
    assert q.use_kernel
    ref = torch.empty_like(w)
    for row in range(w.shape[0]):
        for start in range(0, w.shape[1], group):
            block = w[row, start : start + group].tolist()
            lo, hi = min(block), max(block)
            step = (hi - lo) / 15
            ref[row, start : start + group] = torch.tensor(
                [min(15, max(0, round((v - lo) / step))) * step + lo for v in block]
            )
    got = q.dequantize()
    # scale and zero are bf16 at run time: allow that rounding (8 bits of mantissa) on each group's range
    tolerance = (w.max() - w.min()).item() * 2**-7
    assert (got - ref).abs().max() <= tolerance
    assert (got - w).abs().max() <= (w.max() - w.min()).item() / 15


def test_int4_fallback_for_shapes_the_kernel_refuses():
    layer = linear(40, 64)  # 40 output features: not a multiple of 16
    q = Int4Linear(layer, 32)
    assert not q.use_kernel
    x = torch.randn(3, 64)
    assert torch.allclose(q(x), x @ q.dequantize().t(), atol=1e-5)
    assert (q.dequantize() - layer.weight).abs().max() <= (layer.weight.max() - layer.weight.min()) / 15


def test_int4_kernel_matmul_equals_dequantized_matmul():
    layer = linear(64, 128)
    q = Int4Linear(layer, 32)
    x = torch.randn(5, 128)
    assert torch.allclose(q(x), x @ q.dequantize().t(), atol=0.05)


def test_nf4_with_double_quantization_matches_reference():
    layer = linear(64, 256, seed=2)  # 16384 weights: 256 blocks of 64, one absmax block of 256
    w = layer.weight.detach().reshape(-1)
    blocks = w.reshape(-1, 64)
    absmax = blocks.abs().max(dim=1).values
    mean = absmax.mean()
    c = absmax - mean
    c_scale = c.abs().max() / 127
    absmax_dq = torch.round(c / c_scale) * c_scale + mean
    codes = torch.tensor(
        [
            [min(range(16), key=lambda i: abs(v / a - NF4_CODE_BOOK[i].item())) for v in row.tolist()]
            for row, a in zip(blocks, absmax.tolist(), strict=True)
        ]
    )
    ref = NF4_CODE_BOOK[codes] * absmax_dq[:, None]
    q = NF4Linear(layer)
    assert torch.allclose(q.dequantize().reshape(-1, 64), ref, atol=1e-6)
    bits = q.weight_bytes() * 8 / w.numel()
    assert bits == pytest.approx(4 + 8 / 64 + 32 / (64 * 256) + 32 / w.numel(), abs=1e-9)


def test_llm_int8_decomposes_outlier_features():
    layer = linear(32, 64, seed=3, bias=True)
    q = LLMInt8Linear(layer)
    x = torch.randn(4, 64)
    x[:, 5] = 9.0  # an outlier feature
    x[2, 17] = -7.5  # an outlier in one token only: the whole feature goes to high precision
    w_q = torch.round(layer.weight / (layer.weight.abs().amax(1, keepdim=True) / 127))
    w_scale = layer.weight.abs().amax(1) / 127
    outlier = [5, 17]
    regular = x.clone()
    regular[:, outlier] = 0
    x_scale = regular.abs().amax(1) / 127
    x_q = torch.round(regular / x_scale[:, None])
    ref = (x_q @ w_q.t()) * x_scale[:, None] * w_scale[None, :]
    ref += x[:, outlier] @ (w_q[:, outlier] * w_scale[:, None]).t()
    ref += layer.bias
    assert torch.allclose(q(x), ref, atol=1e-4)
    # without the decomposition the outliers would dominate the activation scale
    assert (q(x) - layer(x)).abs().max() < 0.05


def test_smoothquant_migrates_scale_and_quantizes_both_sides():
    layer = linear(32, 64, seed=4)
    act_max = torch.rand(64) * 10 + 0.1
    q = SmoothQuantLinear(layer, act_max, alpha=0.5)
    w = layer.weight.detach()
    s = act_max.sqrt() / w.abs().amax(0).sqrt()
    ws = w * s
    w_scale = ws.abs().amax(1) / 127
    ref_w = torch.round(ws / w_scale[:, None]) * w_scale[:, None] / s
    assert torch.allclose(q.dequantize(), ref_w, atol=1e-6)
    x = torch.randn(3, 64) * act_max
    xs = x / s
    x_scale = xs.abs().amax(1) / 127
    ref = (
        (torch.round(xs / x_scale[:, None]) @ torch.round(ws / w_scale[:, None]).t())
        * x_scale[:, None]
        * w_scale
    )
    assert torch.allclose(q(x), ref, rtol=1e-4, atol=1e-4)


def test_method_names():
    assert parse_method("int4").group_size == 32
    assert parse_method("int4-g128").label == "int4-g128"
    with pytest.raises(
        QuantError, match="unknown quantization method 'int3'; supported: none, bf16, int8, int4"
    ):
        parse_method("int3")
    with pytest.raises(QuantError, match="group size 16 is not supported"):
        parse_method("int4-g16")


@pytest.mark.parametrize("method", ["bf16", "int8", "int4", "nf4", "llm_int8", "smoothquant"])
def test_quantized_tiny_model_stays_close(tiny_pair, method):
    hf, _ = tiny_pair
    reference = Engine(build_model(hf.config, hf.state_dict()), ByteTokenizer())
    model = build_model(hf.config, hf.state_dict())
    calibration = torch.arange(0, 250, 3)
    quantize(model, method, calibration_ids=calibration)
    bytes_, params = linear_weight_bytes(model)
    assert bytes_ * 8 / params < 17
    engine = Engine(model, ByteTokenizer())
    prompt = list(range(40, 80))
    ref = generate(reference, prompt, SamplingParams(max_new_tokens=0, prompt_logprobs=0)).prompt_logprobs[1:]
    got = generate(engine, prompt, SamplingParams(max_new_tokens=0, prompt_logprobs=0)).prompt_logprobs[1:]
    ref_nll = -sum(x.logprob for x in ref) / len(ref)
    got_nll = -sum(x.logprob for x in got) / len(got)
    assert math.isfinite(got_nll) and abs(got_nll - ref_nll) / ref_nll < 0.1


def test_tied_head_shares_the_int8_table(tiny_pair):
    hf, _ = tiny_pair
    for method in ("int8", "int4", "nf4"):
        model = quantize(build_model(hf.config, hf.state_dict()), method)
        assert isinstance(model.output, Int8Linear), method
        assert isinstance(model.tok_embeddings, Int8Embedding)
        assert model.tok_embeddings.weight.data_ptr() == model.output.weight.data_ptr()
