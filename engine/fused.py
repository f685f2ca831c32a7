"""The decoder layers in one C++ call (engine/csrc/decoder.cpp), for models whose every layer linear is an
int4 or int8 weight-only kernel (int4, int8, GPTQ, AWQ, RTN) and whose attention runs in the paged C++ kernel.

At this model size a decode step in Python is ~1,200 small PyTorch ops plus their module calls, and their
overhead, not the matmuls, bounds one stream. `FusedLayers` gathers the layers' weights once and runs all layers
of a forward in one call; the Python layers stay the reference (calibration and the contiguous cache use them,
tests compare the two) and the path for every other method. Each token's row is computed from that row alone, as
in the Python path, so batch invariance and exact speculative verification hold here too.
"""

from __future__ import annotations

from typing import Any

import torch

from engine import tiles
from engine.model import Transformer
from engine.native import kernels
from engine.quantize import Int4Linear, Int8Linear

NO_BIAS = torch.empty(0)


# How a linear's weights are held: the `Kind` enum of engine/csrc/decoder.cpp.
ATEN_INT4, ATEN_INT8, TILES_INT4, TILES_INT8 = range(4)


def _linear_args(module: Any) -> tuple[list[torch.Tensor], list[int]] | None:
    """(weight, scales, bias) and (kind, group, padded) of a kernel-backed linear; None for anything else."""
    bias = module.bias if getattr(module, "bias", None) is not None else NO_BIAS
    if isinstance(module, Int4Linear) and module.use_kernel:
        kind = TILES_INT4 if module.layout == "tiles" else ATEN_INT4
        return [module.packed, module.scales_zeros, bias], [kind, module.group, module.padded]
    if isinstance(module, Int8Linear):
        kind, block = (TILES_INT8, tiles.ACT_BLOCK) if module.tiled else (ATEN_INT8, 0)
        return [module.weight, module.scales, bias], [kind, block, module.in_features]
    return None


class FusedLayers:
    def __init__(self, model: Transformer, native: Any, linears: list[torch.Tensor], sizes: list[int]):
        a = model.args
        self.native = native
        self.norms = [
            w for layer in model.layers for w in (layer.attention_norm.weight, layer.ffn_norm.weight)
        ]
        self.linears, self.sizes = linears, sizes
        self.shape = [a.n_heads, a.n_kv_heads, a.head_dim]
        self.eps = a.norm_eps

    def __call__(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, context: Any) -> torch.Tensor:
        pool = context.pool
        return self.native.decoder_layers(
            x.contiguous(),
            cos.reshape(cos.shape[0], -1),
            sin.reshape(sin.shape[0], -1),
            self.norms,
            self.linears,
            self.sizes,
            self.shape,
            self.eps,
            pool.k,
            pool.v,
            pool.k_scale,
            pool.v_scale,
            context.slots,
            context.tables,
            context.row_of,
            context.lengths,
            pool.block_size,
        )


def fuse(model: Transformer) -> FusedLayers | None:
    """The fused layers of `model`, or None where the C++ kernels are not built or a layer linear is not int4 or
    int8 (fp32, bf16, NF4, LLM.int8(), SmoothQuant keep the Python layers)."""
    native = kernels()
    if native is None or model.compute_dtype != torch.float32:
        return None
    linears: list[torch.Tensor] = []
    sizes: list[int] = []
    for layer in model.layers:
        for module in (
            layer.attention.wqkv,
            layer.attention.wo,
            layer.feed_forward.w13,
            layer.feed_forward.w2,
        ):
            args = _linear_args(module)
            if args is None:
                return None
            linears += args[0]
            sizes += args[1]
    return FusedLayers(model, native, linears, sizes)
