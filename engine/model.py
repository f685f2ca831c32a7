"""The transformer forward of Llama-family models, with a slot-based KV cache. Token ids in, logits out.

One forward serves prefill and decode: every call takes `rows` (which cache rows the batch writes to),
`positions` [B, S] (where each token sits in its sequence) and attends over each row's own cache. Rows of one
batch may hold sequences of different lengths; the mask is built from `positions`, so padding never leaks in.
Weights use transformers' layout (HF rotate-half RoPE), with q/k/v and gate/up fused into single matmuls.
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


class KVCache:
    """Keys and values per layer, `[rows, kv_heads, capacity, head_dim]`; capacity grows by doubling."""

    def __init__(self, args: ModelArgs, rows: int, capacity: int = 256, dtype: torch.dtype = torch.float32):
        self.args, self.rows, self.dtype = args, rows, dtype
        self.capacity = min(capacity, args.max_seq_len)
        shape = (rows, args.n_kv_heads, self.capacity, args.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype) for _ in range(args.n_layers)]
        self.v = [torch.zeros(shape, dtype=dtype) for _ in range(args.n_layers)]

    @torch.inference_mode()
    def ensure(self, length: int) -> None:
        if length <= self.capacity:
            return
        if length > self.args.max_seq_len:
            raise ValueError(
                f"sequence of {length} tokens exceeds the context window of {self.args.max_seq_len}"
            )
        new = self.capacity
        while new < length:
            new *= 2
        new = min(new, self.args.max_seq_len)
        for store in (self.k, self.v):
            for i, old in enumerate(store):
                grown = torch.zeros(old.shape[0], old.shape[1], new, old.shape[3], dtype=self.dtype)
                grown[:, :, : self.capacity] = old
                store[i] = grown
        self.capacity = new

    @torch.inference_mode()
    def copy_rows(self, src: torch.Tensor | list[int], dst: torch.Tensor | list[int], length: int) -> None:
        """Copy the first `length` positions of rows `src` into rows `dst` (shared prefill, beam reordering)."""
        src_t = torch.as_tensor(src, dtype=torch.long)
        dst_t = torch.as_tensor(dst, dtype=torch.long)
        for store in (self.k, self.v):
            for layer in store:
                layer[dst_t, :, :length] = layer[src_t, :, :length]

    def bytes_per_token(self) -> int:
        element = torch.finfo(self.dtype).bits // 8
        return 2 * self.args.n_layers * self.args.n_kv_heads * self.args.head_dim * element


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
    # x: [B, H, S, hd]; cos/sin: [B, 1, S, hd]
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        q_out, kv_out = args.n_heads * args.head_dim, args.n_kv_heads * args.head_dim
        self.wqkv = nn.Linear(args.dim, q_out + 2 * kv_out, bias=args.qkv_bias)
        self.wo = nn.Linear(q_out, args.dim, bias=False)
        self.split = (q_out, kv_out, kv_out)

    def forward(self, x, cos, sin, k_cache, v_cache, rows, positions, mask) -> torch.Tensor:
        # x: [B, S, D]; positions: [B, S]; mask: [B, 1, S, L]
        B, S, _ = x.shape
        a = self.args
        q, k, v = self.wqkv(x).split(self.split, dim=-1)
        q = q.view(B, S, a.n_heads, a.head_dim).transpose(1, 2)
        k = k.view(B, S, a.n_kv_heads, a.head_dim).transpose(1, 2)
        v = v.view(B, S, a.n_kv_heads, a.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        L = mask.shape[-1]
        if isinstance(rows, slice):
            # Contiguous rows: write in place and read views, no gather.
            k_cache[rows].transpose(1, 2)[torch.arange(B)[:, None], positions] = k.transpose(1, 2).to(
                k_cache.dtype
            )
            v_cache[rows].transpose(1, 2)[torch.arange(B)[:, None], positions] = v.to(v_cache.dtype)
            keys, values = k_cache[rows, :, :L], v_cache[rows, :, :L]
        else:
            k_cache.transpose(1, 2)[rows[:, None], positions] = k.transpose(1, 2).to(k_cache.dtype)
            v_cache.transpose(1, 2)[rows[:, None], positions] = v.to(v_cache.dtype)
            keys, values = k_cache[rows, :, :L], v_cache[rows, :, :L]
        gqa = a.n_heads != a.n_kv_heads
        if S == 1:
            # Decode: attend row by row over exactly each row's own length. A padded, masked batch would change
            # the order of the softmax and value reductions, so a sequence's tokens would depend on its
            # neighbours; this way a greedy request gets the same tokens alone or in any batch.
            lengths = (positions[:, 0] + 1).tolist()
            out = torch.cat([
                F.scaled_dot_product_attention(q[b : b + 1], keys[b : b + 1, :, :n].to(q.dtype),
                                               values[b : b + 1, :, :n].to(q.dtype), enable_gqa=gqa)
                for b, n in enumerate(lengths)
            ])  # fmt: skip
        else:
            out = F.scaled_dot_product_attention(
                q, keys.to(q.dtype), values.to(q.dtype), attn_mask=mask, enable_gqa=gqa
            )
        return self.wo(out.transpose(1, 2).reshape(B, S, a.n_heads * a.head_dim))


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
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.attention = Attention(args)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        self.feed_forward = FeedForward(args)

    def forward(self, x, cos, sin, k_cache, v_cache, rows, positions, mask):
        x = x + self.attention(self.attention_norm(x), cos, sin, k_cache, v_cache, rows, positions, mask)
        return x + self.feed_forward(self.ffn_norm(x))


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(Block(args) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        cos, sin = rope_tables(args.head_dim, args.max_seq_len, args.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        # Activations' dtype: fp32 by default; quantized runtimes may set bf16 (see quantize.py).
        self.compute_dtype = torch.float32

    @torch.inference_mode()
    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache,
        rows: slice | torch.Tensor,
        logits_for: str = "all",
    ) -> torch.Tensor:
        """tokens, positions: [B, S]. Returns logits [B, S, V] ("all") or [B, V] for each row's last token ("last")."""
        B, S = tokens.shape
        L = int(positions.max()) + 1
        cache.ensure(L)
        x = self.tok_embeddings(tokens).to(self.compute_dtype)
        cos = self.rope_cos[positions].unsqueeze(1).to(self.compute_dtype)  # [B, 1, S, hd]
        sin = self.rope_sin[positions].unsqueeze(1).to(self.compute_dtype)
        key_pos = torch.arange(L)
        mask = (key_pos[None, None, :] <= positions[:, :, None]).unsqueeze(1)  # [B, 1, S, L]
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, cache.k[i], cache.v[i], rows, positions, mask)
        if logits_for == "last":
            x = x[:, -1]
        return self.output(self.norm(x)).float()


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
