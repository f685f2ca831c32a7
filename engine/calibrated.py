"""Calibrated weight-only quantization at 3 or 4 bits: GPTQ, AWQ, and their round-to-nearest baseline (RTN).

Contract: `calibrate(model, method, calibration_ids)` returns, for every linear of every block, its integer codes
and per-group scale and zero (`Codes`, the int4 kernel's convention `w = (q - 8) * scale + zero`, with scale and
zero rounded to bf16 first, as the kernel stores them) and changes the model in place where the method folds
something into it (AWQ). engine/quantize.py turns the codes into runtime modules. All three share the grid:
asymmetric min-max per group of `group` input features (a last, shorter group where the width is not a
multiple), 2**bits levels.

- RTN rounds each weight to the nearest level.
- GPTQ (Frantar et al. 2022) quantizes a layer's columns in order and spreads each column's rounding error over
  the columns not yet quantized, weighted by the inverse Hessian of the layer's inputs (H = XᵀX over the
  calibration tokens, 10 % damping as the text is short, blocks of 128 columns, group parameters from the
  error-updated weights).
  Blocks are processed in order, each seeing the outputs of the already-quantized blocks before it.
- AWQ (Lin et al. 2023) scales each input channel by s = mean|x|^α (α from a grid search minimising the
  block's output error on the calibration tokens) before rounding, and folds 1/s into what produces that input
  (the RMSNorm weight before q/k/v and gate/up; the up projection before down). The output projection is left
  alone under grouped-query attention, where its input channels cannot be scaled independently.
The calibration text is engine/data/calibration.txt; results are cached on disk by engine/quantize.py.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

GPTQ_BLOCK = 128
# Damping, as a fraction of the Hessian's mean diagonal. The paper's 1 % assumes far more calibration tokens than
# input features; the shipped text has ~770 tokens for inputs up to 1,536 wide (a rank-deficient Hessian), where
# 1 % lets GPTQ fit the calibration text and do worse than round-to-nearest at 3 bits (ppl 204 vs 153 on the
# default model); 10 % keeps the error feedback to the directions the text really constrains.
GPTQ_DAMP = 0.1
AWQ_GRID = 11  # alpha in 0, 0.1, ..., 1.0
AWQ_TOKENS = 256  # calibration tokens used to score each alpha


@dataclass
class Codes:
    q: torch.Tensor  # uint8 [N, K], 0 .. 2**bits - 1
    scale: torch.Tensor  # fp32 [N, groups] (bf16-representable)
    zero: torch.Tensor  # fp32 [N, groups]

    def dequantize(self, group: int) -> torch.Tensor:
        k = self.q.shape[1]
        scale = self.scale.repeat_interleave(group, dim=1)[:, :k]
        zero = self.zero.repeat_interleave(group, dim=1)[:, :k]
        return (self.q.float() - 8) * scale + zero


def group_params(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero of one group of columns w [N, g] (kernel convention), rounded to bf16."""
    lo, hi = w.amin(-1), w.amax(-1)
    scale = ((hi - lo) / (2**bits - 1)).clamp(min=1e-8).bfloat16().float()
    zero = (lo + 8 * scale).bfloat16().float()
    return scale, zero


def round_to_grid(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes of w [N, ...] on the grid (scale, zero broadcast along the trailing dims)."""
    return torch.round((w - zero) / scale + 8).clamp(0, 2**bits - 1)


def rtn(w: torch.Tensor, bits: int, group: int) -> Codes:
    scales, zeros, codes = [], [], []
    for start in range(0, w.shape[1], group):
        part = w[:, start : start + group].float()
        scale, zero = group_params(part, bits)
        codes.append(round_to_grid(part, scale[:, None], zero[:, None], bits))
        scales.append(scale)
        zeros.append(zero)
    return Codes(torch.cat(codes, 1).to(torch.uint8), torch.stack(scales, 1), torch.stack(zeros, 1))


def gptq(w: torch.Tensor, hessian: torch.Tensor, bits: int, group: int) -> Codes:
    """GPTQ of w [N, K] given H = XᵀX [K, K] of its inputs."""
    w = w.detach().float().clone()
    n, k = w.shape
    h = hessian.double().clone()
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h.diagonal().add_(GPTQ_DAMP * h.diagonal().mean())
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True).float()
    q = torch.zeros(n, k)
    scales, zeros = [], []
    scale = zero = None
    for i1 in range(0, k, GPTQ_BLOCK):
        i2 = min(i1 + GPTQ_BLOCK, k)
        w1, err1, hinv1 = w[:, i1:i2].clone(), torch.zeros(n, i2 - i1), hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            if (i1 + i) % group == 0:  # groups never straddle a block: 128 is a multiple of every group size
                scale, zero = group_params(w1[:, i : i + group], bits)
                scales.append(scale)
                zeros.append(zero)
            column = w1[:, i]
            q[:, i1 + i] = code = round_to_grid(column, scale, zero, bits)
            error = (column - ((code - 8) * scale + zero)) / hinv1[i, i]
            w1[:, i:] -= error[:, None] * hinv1[i, i:][None, :]
            err1[:, i] = error
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return Codes(q.to(torch.uint8), torch.stack(scales, 1), torch.stack(zeros, 1))


def awq_scale(weights: list[torch.Tensor], x: torch.Tensor, bits: int, group: int) -> torch.Tensor:
    """The per-input-channel scale s [K] for linears sharing input x [S, K] that minimises their output error."""
    x = x[-AWQ_TOKENS:].float()
    w = torch.cat(weights, 0).float()
    reference = x @ w.t()
    mean_abs = x.abs().mean(0).clamp(min=1e-5)
    best, best_error = torch.ones_like(mean_abs), float("inf")
    for step in range(AWQ_GRID):
        s = mean_abs ** (step / (AWQ_GRID - 1))
        s = s / (s.max() * s.min()).sqrt()
        scaled = rtn(w * s, bits, group).dequantize(group) / s
        error = float(((x @ scaled.t()) - reference).pow(2).mean())
        if error < best_error:
            best, best_error = s, error
    return best


def _block_inputs(block: nn.Module, x: torch.Tensor, cos, sin, positions) -> dict[str, torch.Tensor]:
    """Run one block (fp32, contiguous cache) and capture the input of each of its linears."""
    from engine.attention import ContiguousContext

    captured: dict[str, torch.Tensor] = {}
    hooks = [
        module.register_forward_pre_hook(
            lambda mod, args, name=name: captured.__setitem__(name, args[0].detach())
        )
        for name, module in block.named_modules()
        if isinstance(module, nn.Linear)
    ]
    try:
        block(x, cos, sin, ContiguousContext(block.attention.args.n_layers).at(positions))
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def _awq_block(block: nn.Module, inputs: dict[str, torch.Tensor], bits: int, group: int) -> None:
    """Fold AWQ's scales into the block: norms before q/k/v and gate/up, the up projection before down."""
    attn, ffn, args = block.attention, block.feed_forward, block.attention.args
    with torch.no_grad():
        s = awq_scale([attn.wqkv.weight], inputs["attention.wqkv"], bits, group)
        block.attention_norm.weight.div_(s)
        attn.wqkv.weight.mul_(s)
        s = awq_scale([ffn.w13.weight], inputs["feed_forward.w13"], bits, group)
        block.ffn_norm.weight.div_(s)
        ffn.w13.weight.mul_(s)
        s = awq_scale([ffn.w2.weight], inputs["feed_forward.w2"], bits, group)
        ffn.w13.weight[args.hidden_dim :].div_(s[:, None])
        ffn.w2.weight.mul_(s)


@torch.inference_mode()
def calibrate(model: nn.Module, name: str, bits: int, group: int, ids: torch.Tensor) -> dict[str, Codes]:
    """Codes of every block linear (names as in the model) for method `name` (gptq | awq | rtn)."""
    codes: dict[str, Codes] = {}
    ids = ids.reshape(-1)[: model.args.max_seq_len]
    positions = torch.arange(ids.shape[0])
    x = model.tok_embeddings(ids).float()
    cos, sin = model.rope_cos[positions].unsqueeze(1), model.rope_sin[positions].unsqueeze(1)
    for index, block in enumerate(model.layers):
        if name != "rtn":
            inputs = _block_inputs(block, x, cos, sin, positions)
            if name == "awq":
                _awq_block(block, inputs, bits, group)
        for sub, linear in block.named_modules():
            if not isinstance(linear, nn.Linear):
                continue
            if name == "gptq":
                xs = inputs[sub].reshape(-1, linear.in_features).double()
                result = gptq(linear.weight, (xs.t() @ xs).float(), bits, group)
                linear.weight.copy_(result.dequantize(group))  # later blocks see this block quantized
            else:
                result = rtn(linear.weight, bits, group)
            codes[f"layers.{index}.{sub}"] = result
        if name != "rtn":
            from engine.attention import ContiguousContext

            x = block(x, cos, sin, ContiguousContext(model.args.n_layers).at(positions))
    return codes


def weights_fingerprint(model: nn.Module) -> bytes:
    """A cheap digest of the weights (names, shapes, a strided sample of values): a model re-converted or swapped
    under the same name never meets another one's calibration."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(flat[:: max(1, flat.numel() // 512)].float().numpy().tobytes())
    return digest.digest()


def cache_path(cache_key: str, label: str, ids: torch.Tensor, model: nn.Module) -> Path:
    """Where a calibration result lives: keyed by model name and weights, method label, calibration tokens and
    the code that computes it (this module and the forward pass it calibrates through)."""
    from settings import get_settings

    digest = hashlib.sha256(ids.reshape(-1).to(torch.int64).numpy().tobytes())
    digest.update(weights_fingerprint(model))
    for module in ("calibrated.py", "model.py", "attention.py"):
        digest.update((Path(__file__).parent / module).read_bytes())
    return (
        get_settings().models_dir
        / ".calibration"
        / f"{cache_key}@{label}-{digest.hexdigest()[:16]}.safetensors"
    )


def load_or_calibrate(
    model: nn.Module, name: str, bits: int, group: int, ids: torch.Tensor, label: str, cache_key: str | None
) -> dict[str, Codes]:
    """`calibrate`, or its result from disk (codes, and the norm weights AWQ changed) when computed before."""
    from safetensors.torch import load_file, save_file

    path = cache_path(cache_key, label, ids, model) if cache_key else None
    with torch.no_grad():  # GPTQ and AWQ change block weights in place: never the caller's loaded tensors
        for parameter in model.layers.parameters():
            parameter.data = parameter.data.clone()
    if path is not None and path.is_file():
        stored = load_file(str(path))
        with torch.no_grad():
            for key, value in stored.items():
                if key.endswith("norm.weight"):
                    model.get_parameter(key).copy_(value)
        names = {key.rsplit(".", 1)[0] for key in stored if not key.endswith("norm.weight")}
        return {n: Codes(stored[f"{n}.q"], stored[f"{n}.scale"], stored[f"{n}.zero"]) for n in names}
    codes = calibrate(model, name, bits, group, ids)
    if path is not None:
        state = {
            f"{n}.{part}": getattr(c, part).contiguous()
            for n, c in codes.items()
            for part in ("q", "scale", "zero")
        }
        state.update(
            {k: v.detach().clone() for k, v in model.state_dict().items() if k.endswith("norm.weight")}
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")  # concurrent writers never share a file
        save_file(state, str(partial))
        partial.replace(path)
    return codes
