"""Weight quantization of our Transformer: every method is a pair of verbs, as in gpt-fast:
build a quantized state from an fp32 `nn.Linear` (`from_linear`) and swap in the runtime module (`quantize`).

Methods (the `--quant` names):
  none         fp32 weights.
  bf16         bf16 weights, bf16 matmul.
  int8         per-output-channel absmax, symmetric, round-to-nearest. Through our tile kernel (engine/tiles.py,
               where AVX-512 VNNI is built) activations are int8 too, per row and block of 32 features; through
               torch's `_weight_int8pack_mm` (elsewhere) they are bf16.
  int4         group-wise asymmetric min-max (group 32; `int4-g64`, `int4-g128`). Our tile kernel takes int8
               activations per row and group (as llama.cpp's Q8 activations; KLD 0.0018 -> 0.0048 against bf16
               activations, one decode step 8.4 -> 5.9 ms), torch's `_weight_int4pack_mm_for_cpu` bf16 ones;
               plain dequantize-and-matmul where neither takes the shape.
  nf4          QLoRA NF4 code book, blocks of 64, absmax constants double-quantized (int8, blocks of 256, mean
               offset); dequantized per call (there is no CPU kernel).
  llm_int8     LLM.int8(): input features holding any |x| >= 6.0 go through fp32, the rest vector-wise int8
               (per-token x per-output-channel scales) through `torch._int_mm`.
  smoothquant  W8A8: s = max|X|^a / max|W|^(1-a) per input channel (a = 0.5) from a shipped calibration text,
               W*s quantized per output channel, X/s quantized per token at run time, `torch._int_mm`.
The tied embedding/output head is handled deliberately. It is the largest matmul per token here (49152 x 576),
and in the shipped GGUF it is stored at 8 bits (Q8_0) while every other matrix is 4-bit (Q4_1): squeezing it to
4 bits costs ~6 % perplexity on its own. So the 4-bit methods (int4, nf4) keep the head at int8, and under
int8/int4/nf4 the token lookup reads rows of that same int8 table: one copy serves both roles and no fp32 copy
of the 28M-parameter table stays resident. The other methods quantize the head like any linear and look tokens
up in an int8 per-row table.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import quant_methods
from engine import tiles
from engine.calibrated import Codes, load_or_calibrate, rtn

# Methods whose output head stays at int8 (see the module docstring).
HEAD_AT_INT8 = ("int4", "nf4", "gptq", "awq", "rtn")
METHODS = quant_methods.METHODS
INT4_GROUPS = quant_methods.INT4_GROUPS
LLM_INT8_THRESHOLD = 6.0
SMOOTHQUANT_ALPHA = 0.5


class QuantError(ValueError):
    pass


@dataclass(frozen=True)
class Method:
    name: str
    group_size: int = 32
    bits: int = 4  # gptq, awq, rtn: 3 or 4

    @property
    def label(self) -> str:
        if self.name == "int4":
            return "int4" if self.group_size == 32 else f"int4-g{self.group_size}"
        if self.name in quant_methods.CALIBRATED:
            bits = "" if self.bits == quant_methods.CALIBRATED_DEFAULT[0] else f"-{self.bits}b"
            group = "" if self.group_size == quant_methods.CALIBRATED_DEFAULT[1] else f"-g{self.group_size}"
            return f"{self.name}{bits}{group}"
        return self.name


def parse_method(spec: str) -> Method:
    """`int4`, `int4-g64`, `nf4`, `gptq-3b-g64` ... -> Method; anything else names what is supported
    (quant_methods.py holds the one list of names, shared with the app)."""
    try:
        name, group, bits = quant_methods.parse_bits(spec)
    except quant_methods.UnknownMethod as exc:
        raise QuantError(str(exc)) from None
    return Method(name, group or 32, bits or 4)


# --- reference-free building blocks ------------------------------------------------------------------------


def absmax_int8(w: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric round-to-nearest int8 along `dim`; returns (q, scale) with w ~ q * scale."""
    scale = w.abs().amax(dim=dim, keepdim=True).clamp(min=1e-12) / 127.0
    q = torch.round(w / scale).clamp(-127, 127).to(torch.int8)
    return q, scale.squeeze(dim)


def _pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    flat = codes.reshape(-1).to(torch.uint8)
    return flat[0::2] | (flat[1::2] << 4)


def _unpack_nibbles(packed: torch.Tensor, numel: int) -> torch.Tensor:
    out = torch.empty(packed.numel() * 2, dtype=torch.uint8)
    out[0::2] = packed & 0x0F
    out[1::2] = packed >> 4
    return out[:numel]


class QuantLinear(nn.Module):
    """Common face of the runtime modules: `dequantize()` gives the fp32 weight the method represents."""

    in_features: int
    out_features: int
    # Whether a row's output is bit-identical however many rows are multiplied with it (checked per class in
    # tests/engine/test_speculative.py); speculative decoding is exact only when every linear is (speculative.py).
    rows_independent = False

    def dequantize(self) -> torch.Tensor:
        raise NotImplementedError

    def weight_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for n, t in self.named_buffers() if n != "bias")

    def _add_bias(self, y: torch.Tensor) -> torch.Tensor:
        return y + self.bias if self.bias is not None else y

    def _init(self, linear: nn.Linear) -> None:
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())


class Bf16Linear(QuantLinear):
    def __init__(self, linear: nn.Linear):
        super().__init__()
        self._init(linear)
        self.register_buffer("weight", linear.weight.detach().to(torch.bfloat16))

    def dequantize(self) -> torch.Tensor:
        return self.weight.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._add_bias(F.linear(x.to(torch.bfloat16), self.weight).float())


class Int8Linear(QuantLinear):
    """int8 weights per output channel. Where the tile kernels are built (engine/tiles.py) the codes are held in
    their layout (`tiled`) and the kernel quantizes activations to int8 per block; else [N, K] for torch's kernel,
    which takes bf16 activations."""

    rows_independent = True

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self._init(linear)
        q, scale = absmax_int8(linear.weight.detach().float(), dim=1)
        self.tiles = tiles.tile_kernels() if tiles.fits_int8(self.out_features, self.in_features) else None
        self.register_buffer("weight", tiles.pack_int8(q) if self.tiled else q)
        bf16_scales = scale.to(torch.bfloat16)  # the scales both kernels apply: bf16-rounded
        self.register_buffer("scales", bf16_scales.float() if self.tiled else bf16_scales)

    @property
    def tiled(self) -> bool:
        return self.tiles is not None

    def codes(self) -> torch.Tensor:
        """The int8 codes as [N, K]."""
        return tiles.unpack_int8(self.weight) if self.tiled else self.weight

    def dequantize(self) -> torch.Tensor:
        return self.codes().float() * self.scales.float()[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        if self.tiled:
            y = self.tiles.int8_matmul(flat, self.weight, self.scales, tiles.ACT_BLOCK)
        else:
            y = torch.ops.aten._weight_int8pack_mm(flat.to(torch.bfloat16), self.weight, self.scales).float()
        return self._add_bias(y.reshape(*shape[:-1], self.out_features))


def int4_groups(w: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric min-max per group of `group` input features: w ~ q * scale + minimum, q in 0..15."""
    n, k = w.shape
    groups = w.reshape(n, k // group, group)
    lo, hi = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
    scale = ((hi - lo) / 15.0).clamp(min=1e-8)
    q = torch.round((groups - lo) / scale).clamp(0, 15).to(torch.uint8)
    return q.reshape(n, k), scale.squeeze(-1), lo.squeeze(-1)


class Int4Linear(QuantLinear):
    """4-bit codes in the layout of the kernel that runs them (`layout`: our tile kernel's, torch's int4 kernel's,
    or plain nibbles dequantized per call where neither takes the shape). Without `codes`, group-wise min-max
    round-to-nearest (the `int4` method); with them (engine/calibrated.py: GPTQ, AWQ, RTN at 3 or 4 bits), those
    codes. Where in_features is not a multiple of the group (576 with groups of 128), the weight is padded with
    zero-activation columns to the kernel's shape and the activations with zeros at run time."""

    def __init__(self, linear: nn.Linear, group: int = 32, codes: Codes | None = None):
        super().__init__()
        self._init(linear)
        w = linear.weight.detach().float()
        n, k = w.shape
        self.group, self.padded = group, -(-k // group) * group
        if codes is None and k % group == 0:
            q, scale, lo = int4_groups(w, group)
            zero = lo + 8 * scale  # the kernel's convention is w = (q - 8) * scale + zero
        else:
            codes = codes or rtn(w, 4, group)
            q, scale, zero = codes.q, codes.scale, codes.zero
        q = F.pad(q, (0, self.padded - k), value=8)
        self.tiles = tiles.tile_kernels() if tiles.fits_int4(n, group) else None
        if self.tiles is not None:  # engine/tiles.py: the rows of a call share each decoded tile
            self.layout = "tiles"
            codes_tiled, scales_zeros = tiles.pack_int4(q, scale, zero)
            self.register_buffer("packed", codes_tiled)
            self.register_buffer("scales_zeros", scales_zeros)
            return
        packed = None
        if n % 16 == 0:  # the CPU packing kernel refuses other shapes
            try:
                packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1)
            except RuntimeError:
                packed = None
        self.layout = "aten" if packed is not None else "plain"
        if self.use_kernel:
            self.register_buffer("packed", packed)
            sz = torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous()  # [k/group, n, 2]
            self.register_buffer("scales_zeros", sz.to(torch.bfloat16))
        else:
            self.register_buffer("packed", _pack_nibbles(q))
            self.register_buffer("scales_zeros", torch.stack([scale, zero], dim=-1).to(torch.bfloat16))

    @property
    def use_kernel(self) -> bool:
        """A CPU kernel (ours or torch's) runs it; "plain" is dequantize-and-matmul."""
        return self.layout != "plain"

    @property
    def rows_independent(self) -> bool:  # the plain path is an fp32 matmul, whose blocking depends on rows
        return self.use_kernel

    def dequantize(self) -> torch.Tensor:
        n, k, g, kp = self.out_features, self.in_features, self.group, self.padded
        if self.layout == "aten":
            # Ask the kernel itself (fp32 path) for W^T: exactly what the runtime multiplies by.
            eye = torch.eye(kp, dtype=torch.float32)
            sz = self.scales_zeros.float()
            return torch.ops.aten._weight_int4pack_mm_for_cpu(eye, self.packed, g, sz).t()[:, :k].contiguous()
        if self.layout == "tiles":
            q, scale, zero = tiles.unpack_int4(self.packed, self.scales_zeros)
        else:
            q = _unpack_nibbles(self.packed, n * kp)
            sz = self.scales_zeros.float()  # [n, k/group, 2]
            scale, zero = sz[..., 0], sz[..., 1]
        q = q.float().reshape(n, kp // g, g)
        return ((q - 8) * scale[..., None] + zero[..., None]).reshape(n, kp)[:, :k]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        if self.padded != self.in_features:
            flat = F.pad(flat, (0, self.padded - self.in_features))
        if self.layout == "tiles":
            y = self.tiles.int4_matmul(flat, self.packed, self.scales_zeros, self.group)
        elif self.layout == "aten":
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(
                flat.to(torch.bfloat16), self.packed, self.group, self.scales_zeros
            ).float()
        else:
            y = flat[:, : self.in_features] @ self.dequantize().t()
        return self._add_bias(y.reshape(*shape[:-1], self.out_features))


def _int8_matmul(xq: torch.Tensor, wq_t: torch.Tensor) -> torch.Tensor:
    """int8 [M, K] x int8 [K, N] -> int32; `_int_mm` wants M > 16 on some builds, so pad small batches."""
    m = xq.shape[0]
    if m <= 16:
        xq = F.pad(xq, (0, 0, 0, 17 - m))
    return torch._int_mm(xq, wq_t)[:m]


def quantize_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q, scale = absmax_int8(x, dim=-1)
    return q, scale


class LLMInt8Linear(QuantLinear):
    def __init__(self, linear: nn.Linear, threshold: float = LLM_INT8_THRESHOLD):
        super().__init__()
        self._init(linear)
        self.threshold = threshold
        q, scale = absmax_int8(linear.weight.detach().float(), dim=1)
        self.register_buffer("weight", q)
        self.register_buffer("scales", scale.float())

    def dequantize(self) -> torch.Tensor:
        return self.weight.float() * self.scales[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1]).float()
        outliers = (flat.abs() >= self.threshold).any(dim=0)  # input features with an outlier in any token
        regular = flat.masked_fill(outliers, 0.0) if outliers.any() else flat
        xq, xs = quantize_per_token(regular)
        y = _int8_matmul(xq, self.weight.t()).float() * xs[:, None] * self.scales[None, :]
        if outliers.any():
            cols = outliers.nonzero().squeeze(1)
            w_cols = self.weight[:, cols].float() * self.scales[:, None]
            y = y + flat[:, cols] @ w_cols.t()
        return self._add_bias(y.reshape(*shape[:-1], self.out_features))


class SmoothQuantLinear(QuantLinear):
    rows_independent = True  # per-token activation scales, an integer matmul

    def __init__(self, linear: nn.Linear, act_max: torch.Tensor, alpha: float = SMOOTHQUANT_ALPHA):
        super().__init__()
        self._init(linear)
        w = linear.weight.detach().float()
        w_max = w.abs().amax(dim=0).clamp(min=1e-5)
        smooth = (act_max.clamp(min=1e-5) ** alpha) / (w_max ** (1 - alpha))
        self.register_buffer("inv_smooth", (1.0 / smooth).float())
        q, scale = absmax_int8(w * smooth[None, :], dim=1)
        self.register_buffer("weight", q)
        self.register_buffer("scales", scale.float())
        self.register_buffer("smooth", smooth.float())

    def weight_bytes(self) -> int:
        return self.weight.numel() + 4 * (self.scales.numel() + self.smooth.numel())

    def dequantize(self) -> torch.Tensor:
        """The effective weight: int8(W*s) * scale / s."""
        return self.weight.float() * self.scales[:, None] / self.smooth[None, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1]).float() * self.inv_smooth
        xq, xs = quantize_per_token(flat)
        y = _int8_matmul(xq, self.weight.t()).float() * xs[:, None] * self.scales[None, :]
        return self._add_bias(y.reshape(*shape[:-1], self.out_features))


class Int8Embedding(nn.Module):
    """Token lookup from an int8 per-row table (rows are tokens, so per-row = per-output-channel of the head);
    `tiled`: the table is held in the tile kernels' layout (the head's own codes)."""

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor, tiled: bool = False):
        super().__init__()
        self.tiled = tiled
        self.register_buffer("weight", weight)
        self.register_buffer("scales", scales)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = tiles.int8_rows(self.weight, ids) if self.tiled else self.weight[ids]
        return rows.float() * self.scales[ids].float()[..., None]


def calibrate_activation_max(model: nn.Module, calibration_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """max |x| per input feature of every Linear, over a forward pass of the calibration tokens (fp32)."""
    stats: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):

            def hook(mod, args, name=name):
                x = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0).float()
                stats[name] = torch.maximum(stats[name], x) if name in stats else x

            hooks.append(module.register_forward_pre_hook(hook))
    try:
        model.forward_sequence(calibration_ids.reshape(-1)[: model.args.max_seq_len])
    finally:
        for h in hooks:
            h.remove()
    return stats


def _runtime_module(
    method: Method, name: str, linear: nn.Linear, act_max: dict | None, codes: dict
) -> nn.Module:
    """The runtime module of one Linear under `method`."""
    if name == "output" and method.name in HEAD_AT_INT8:
        return Int8Linear(linear)
    if name in codes:
        return Int4Linear(linear, method.group_size, codes[name])
    if method.name == "bf16":
        return Bf16Linear(linear)
    if method.name == "int8":
        return Int8Linear(linear)
    if method.name == "int4":
        return Int4Linear(linear, method.group_size)
    if method.name == "nf4":
        from engine.nf4 import NF4Linear

        return NF4Linear(linear)
    if method.name == "llm_int8":
        return LLMInt8Linear(linear)
    return SmoothQuantLinear(linear, act_max[name])


def quantize(
    model: nn.Module,
    spec: str | Method,
    calibration_ids: torch.Tensor | None = None,
    cache_key: str | None = None,
) -> nn.Module:
    """Swap every Linear (the output head included) for the method's runtime module, in place. Calibrated
    methods (smoothquant, gptq, awq) need `calibration_ids`; gptq/awq/rtn results are cached on disk under
    `cache_key` (the model's name) when it is given."""
    method = spec if isinstance(spec, Method) else parse_method(spec)
    if method.name == "none":
        return model
    act_max, codes = None, {}
    if method.name in ("smoothquant", "gptq", "awq") and calibration_ids is None:
        raise QuantError(f"{method.name} needs calibration tokens")
    if method.name == "smoothquant":
        act_max = calibrate_activation_max(model, calibration_ids)
    if method.name in quant_methods.CALIBRATED:
        ids = calibration_ids if calibration_ids is not None else torch.zeros(0, dtype=torch.long)
        codes = load_or_calibrate(
            model, method.name, method.bits, method.group_size, ids, method.label, cache_key
        )

    replacements = [(name, mod) for name, mod in model.named_modules() if isinstance(mod, nn.Linear)]
    for name, linear in replacements:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _runtime_module(method, name, linear, act_max, codes))

    embedding = model.tok_embeddings
    if method.name == "bf16":
        model.tok_embeddings = nn.Embedding.from_pretrained(embedding.weight.detach().to(torch.bfloat16))
    elif isinstance(model.output, Int8Linear) and model.args.tie_embeddings:
        model.tok_embeddings = Int8Embedding(model.output.weight, model.output.scales, model.output.tiled)
    else:
        q, scale = absmax_int8(embedding.weight.detach().float(), dim=1)
        model.tok_embeddings = Int8Embedding(q, scale)
    model.quant_method = method
    return model


def rows_independent(model: nn.Module) -> bool:
    """Every linear computes each row independently of the others in its call (bit for bit)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear | QuantLinear)]
    return all(isinstance(m, QuantLinear) and m.rows_independent for m in linears)


def linear_weight_bytes(model: nn.Module) -> tuple[int, int]:
    """(bytes, parameters) of every linear weight, the output head included."""
    total_bytes = total_params = 0
    for module in model.modules():
        if isinstance(module, QuantLinear):
            total_bytes += module.weight_bytes()
            total_params += module.in_features * module.out_features
        elif isinstance(module, nn.Linear):
            total_bytes += module.weight.numel() * module.weight.element_size()
            total_params += module.weight.numel()
    return total_bytes, total_params


def resident_weight_bytes(model: nn.Module) -> int:
    """Bytes of all distinct parameter and buffer storage (tied tensors counted once)."""
    seen, total = set(), 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        key = tensor.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += tensor.untyped_storage().nbytes()
    return total
