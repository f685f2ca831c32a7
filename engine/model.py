"""The transformer forward of Llama-family models. Token ids in, logits out.

One forward serves prefill, decode and speculative verification alike: it takes T query tokens flattened across
sequences (`tokens [T]`, `positions [T]`) and an attention context (engine/attention.py) that stores each token's
keys and values and attends each token over its own sequence. There is no padding: rows of different lengths
never see each other. Weights use transformers' layout (HF rotate-half RoPE), with q/k/v and gate/up fused into
single matmuls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelArgs:
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden_dim: int
    norm_eps: float
    rope_theta: float
    max_seq_len: int
    qkv_bias: bool = False
    tie_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()

    @classmethod
    def from_hf(cls, config: Any) -> ModelArgs:
        rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
        rope_type = (
            rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
        )
        if rope_type not in ("default", None):
            raise ValueError(f"unsupported RoPE scaling '{rope_type}'; supported: default")
        theta = rope.get("rope_theta") if isinstance(rope, dict) else None
        theta = theta or getattr(config, "rope_theta", 10000.0)
        eos = config.eos_token_id
        eos_ids = tuple(eos) if isinstance(eos, list | tuple) else ((eos,) if eos is not None else ())
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return cls(
            vocab_size=config.vocab_size,
            dim=config.hidden_size,
            n_layers=config.num_hidden_layers,
            n_heads=config.num_attention_heads,
            n_kv_heads=getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
            head_dim=head_dim,
            hidden_dim=config.intermediate_size,
            norm_eps=config.rms_norm_eps,
            rope_theta=float(theta),
            max_seq_len=config.max_position_embeddings,
            qkv_bias=bool(getattr(config, "attention_bias", False)) or config.model_type == "qwen2",
            tie_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
            bos_token_id=getattr(config, "bos_token_id", None),
            eos_token_ids=eos_ids,
        )


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One fused op (transformers' formula: x * rsqrt(mean(x^2) + eps) * weight); the activations are fp32.
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rope_tables(head_dim: int, length: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin: [length, head_dim], in transformers' rotate-half layout."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: [T, H, hd]; cos/sin: [T, 1, hd]
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, args: ModelArgs, layer: int):
        super().__init__()
        self.args, self.layer = args, layer
        q_out, kv_out = args.n_heads * args.head_dim, args.n_kv_heads * args.head_dim
        self.wqkv = nn.Linear(args.dim, q_out + 2 * kv_out, bias=args.qkv_bias)
        self.wo = nn.Linear(q_out, args.dim, bias=False)
        self.split = (q_out, kv_out, kv_out)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, context: Any) -> torch.Tensor:
        # x: [T, D]
        T, a = x.shape[0], self.args
        q, k, v = self.wqkv(x).split(self.split, dim=-1)
        q = apply_rope(q.view(T, a.n_heads, a.head_dim), cos, sin)
        k = apply_rope(k.view(T, a.n_kv_heads, a.head_dim), cos, sin)
        context.write(self.layer, k, v.view(T, a.n_kv_heads, a.head_dim))
        out = context.attend(self.layer, q)  # [T, H, hd]
        return self.wo(out.reshape(T, a.n_heads * a.head_dim))


class FeedForward(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.hidden = args.hidden_dim
        self.w13 = nn.Linear(args.dim, 2 * args.hidden_dim, bias=False)  # gate and up, fused
        self.w2 = nn.Linear(args.hidden_dim, args.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).split(self.hidden, dim=-1)
        return self.w2(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, args: ModelArgs, layer: int):
        super().__init__()
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.attention = Attention(args, layer)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        self.feed_forward = FeedForward(args)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, context: Any) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin, context)
        return x + self.feed_forward(self.ffn_norm(x))


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(Block(args, i) for i in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        cos, sin = rope_tables(args.head_dim, args.max_seq_len, args.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        # Activations' dtype: fp32 by default; quantized runtimes may set bf16 (see quantize.py).
        self.compute_dtype = torch.float32
        # All layers in one C++ call (engine/fused.py), set by the engine where the method and kernels allow it;
        # used for contexts in the paged pool with the native attention kernel.
        self.fused: Any = None

    @torch.inference_mode()
    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        context: Any,
        logits_at: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """tokens, positions: [T]. Returns logits [T, V], or [len(logits_at), V] for the tokens `logits_at`."""
        x = self.tok_embeddings(tokens).to(self.compute_dtype)  # [T, D]
        cos = self.rope_cos[positions].unsqueeze(1).to(self.compute_dtype)  # [T, 1, hd]
        sin = self.rope_sin[positions].unsqueeze(1).to(self.compute_dtype)
        if self.fused is not None and getattr(context, "native", None) is not None:
            x = self.fused(x, cos, sin, context)
        else:
            for layer in self.layers:
                x = layer(x, cos, sin, context)
        if logits_at is not None:
            x = x[logits_at]
        return self.output(self.norm(x)).float()

    def forward_sequence(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits [S, V] of one whole sequence ids [S] (a contiguous cache): calibration and references."""
        from engine.attention import ContiguousContext

        positions = torch.arange(ids.shape[0])
        return self(ids, positions, ContiguousContext(self.args.n_layers).at(positions))


def fuse_hf_state_dict(state: dict[str, torch.Tensor], args: ModelArgs) -> dict[str, torch.Tensor]:
    """transformers' key names -> ours, fusing q/k/v and gate/up."""
    out: dict[str, torch.Tensor] = {
        "tok_embeddings.weight": state["model.embed_tokens.weight"],
        "norm.weight": state["model.norm.weight"],
        "output.weight": state.get("lm_head.weight", state["model.embed_tokens.weight"]),
    }
    for i in range(args.n_layers):
        p = f"model.layers.{i}."
        out[f"layers.{i}.attention.wqkv.weight"] = torch.cat(
            [state[p + f"self_attn.{n}_proj.weight"] for n in "qkv"], dim=0
        )
        if args.qkv_bias:
            out[f"layers.{i}.attention.wqkv.bias"] = torch.cat(
                [state[p + f"self_attn.{n}_proj.bias"] for n in "qkv"], dim=0
            )
        out[f"layers.{i}.attention.wo.weight"] = state[p + "self_attn.o_proj.weight"]
        out[f"layers.{i}.feed_forward.w13.weight"] = torch.cat(
            [state[p + "mlp.gate_proj.weight"], state[p + "mlp.up_proj.weight"]], dim=0
        )
        out[f"layers.{i}.feed_forward.w2.weight"] = state[p + "mlp.down_proj.weight"]
        out[f"layers.{i}.attention_norm.weight"] = state[p + "input_layernorm.weight"]
        out[f"layers.{i}.ffn_norm.weight"] = state[p + "post_attention_layernorm.weight"]
    return out


def build_model(config: Any, hf_state: dict[str, torch.Tensor]) -> Transformer:
    args = ModelArgs.from_hf(config)
    with torch.device("meta"):
        model = Transformer(args)
    model.load_state_dict(fuse_hf_state_dict(hf_state, args), assign=True, strict=True)
    cos, sin = rope_tables(args.head_dim, args.max_seq_len, args.rope_theta)
    model.rope_cos, model.rope_sin = cos, sin
    return model.eval()
