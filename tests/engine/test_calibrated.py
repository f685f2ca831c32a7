"""GPTQ and AWQ against their definitions and against round-to-nearest on the same grid; the on-disk cache."""

from __future__ import annotations

import pytest
import torch

import quant_methods
from engine.calibrated import awq_scale, cache_path, gptq, rtn
from engine.model import build_model
from engine.quantize import Int4Linear, parse_method, quantize


def correlated_inputs(n: int, k: int, seed: int = 0) -> torch.Tensor:
    """Activations with a few large, correlated channels, like a transformer's."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, k // 4, generator=g) @ torch.randn(k // 4, k, generator=g)
    return base * (1 + 9 * (torch.rand(k, generator=g) > 0.9))


@pytest.mark.parametrize("bits,group", [(4, 32), (3, 64)])
def test_rtn_is_min_max_round_to_nearest_on_the_kernel_grid(bits, group):
    w = torch.randn(16, 128, generator=torch.Generator().manual_seed(1))
    codes = rtn(w, bits, group)
    assert int(codes.q.max()) <= 2**bits - 1
    for g in range(128 // group):
        part = w[:, g * group : (g + 1) * group]
        step = (part.amax(1) - part.amin(1)) / (2**bits - 1)
        assert torch.allclose(codes.scale[:, g], step.bfloat16().float())
    error = (codes.dequantize(group) - w).abs()
    assert error.max() <= codes.scale.max() * 0.51 + 1e-6  # half a step (bf16 zero: a little more)


def test_gptq_with_an_identity_hessian_is_round_to_nearest():
    w = torch.randn(32, 128, generator=torch.Generator().manual_seed(2))
    assert torch.equal(gptq(w, torch.eye(128), 4, 32).q, rtn(w, 4, 32).q)


@pytest.mark.parametrize("bits,group", [(4, 128), (3, 64)])
def test_gptq_and_awq_beat_round_to_nearest_on_the_layer_output(bits, group):
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(3)) * 0.05
    x = correlated_inputs(512, 256)
    reference = x @ w.t()

    def error(dequantized: torch.Tensor) -> float:
        return float((x @ dequantized.t() - reference).pow(2).mean())

    plain = error(rtn(w, bits, group).dequantize(group))
    assert error(gptq(w, x.t() @ x, bits, group).dequantize(group)) < 0.7 * plain
    s = awq_scale([w], x, bits, group)
    assert error(rtn(w * s, bits, group).dequantize(group) / s) < plain


def test_method_names_and_labels():
    assert quant_methods.parse("gptq") == ("gptq", 128) and quant_methods.parse_bits("awq-3b-g64") == (
        "awq",
        64,
        3,
    )
    assert parse_method("gptq-3b-g64").label == "gptq-3b-g64" and parse_method("awq").label == "awq"
    assert parse_method("rtn-4b-g32").label == "rtn-g32"
    with pytest.raises(quant_methods.UnknownMethod, match="supports"):
        quant_methods.parse("gptq-2b")


def test_int4_pads_widths_that_are_not_a_multiple_of_the_group():
    torch.manual_seed(5)
    layer = torch.nn.Linear(96, 32, bias=False)  # 96 = 64 + a last group of 32
    q = Int4Linear(layer, 64)
    x = torch.randn(3, 96)
    assert q.padded == 128 and q.dequantize().shape == (32, 96)
    expected = x @ q.dequantize().t()  # the tile kernel's int8 activations cost well under 1 % of the scale
    assert (q(x) - expected).abs().max() <= 0.01 * expected.abs().max()


@pytest.mark.parametrize("method", ["gptq-3b-g32", "awq-g32"])
def test_calibrated_model_is_cached_on_disk(tiny_pair, method, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_MODELS", str(tmp_path))  # not the shared model cache
    hf, reference = tiny_pair
    ids = torch.randint(0, 256, (200,), generator=torch.Generator().manual_seed(4))
    first = quantize(build_model(hf.config, hf.state_dict()), method, ids, cache_key="tiny")
    fresh = build_model(hf.config, hf.state_dict())
    assert cache_path("tiny", parse_method(method).label, ids, fresh).is_file()
    changed = build_model(hf.config, {k: v + 0.01 for k, v in hf.state_dict().items()})
    assert not cache_path(
        "tiny", parse_method(method).label, ids, changed
    ).is_file()  # other weights, same name
    again = quantize(build_model(hf.config, hf.state_dict()), method, ids, cache_key="tiny")
    probe = torch.arange(30)
    assert torch.equal(first.forward_sequence(probe), again.forward_sequence(probe))
    fp = reference.forward_sequence(probe).softmax(-1)
    ours = first.forward_sequence(probe).softmax(-1)
    assert (ours - fp).abs().max() < 0.2  # still the same model, roughly


@pytest.mark.parametrize("method", ["gptq-g32", "awq-g32"])
def test_calibrating_leaves_the_loaded_weights_alone(tiny_pair, method):
    """The model is built on the loader's tensors; calibration rewrites block weights as it goes and must not
    reach back into them (a reference model built from the same load would silently be the quantized one)."""
    hf, _ = tiny_pair
    before = {k: v.clone() for k, v in hf.state_dict().items()}
    ids = torch.randint(0, 256, (200,), generator=torch.Generator().manual_seed(5))
    quantize(build_model(hf.config, hf.state_dict()), method, ids)
    assert [k for k, v in hf.state_dict().items() if not torch.equal(v, before[k])] == []
