"""The engine's user-facing serving choices (KV cache, speculative decoding), without importing torch (the CLI's
options and help are built from them)."""

from __future__ import annotations

KV_DTYPE_NAMES = ("fp32", "bf16", "int8")  # what a pool stores
# `auto` (the default) picks by method: fp32 for the unquantized fp32 reference (`none`), whose outputs stay
# transformers' token for token; bf16 for every other method, as llama.cpp (f16) and vLLM (the model's dtype) do:
# half of fp32's bytes for +0.05 % perplexity with int4 weights, and a many-row decode step reads every row's
# cache in every layer, so those bytes bound it.
AUTO_KV_DTYPE = "auto"
KV_DTYPE_CHOICES = (AUTO_KV_DTYPE, *KV_DTYPE_NAMES)
DEFAULT_KV_DTYPE = AUTO_KV_DTYPE
DEFAULT_BLOCK_SIZE = 16
BLOCK_SIZES = (16, 32, 64)  # what the C++ kernel is built for
# The KV memory the engine may use when not told otherwise; the pool is never larger than max_batch + 1
# sequences of a full context window would need. Pages of the pool are touched only as blocks are used.
DEFAULT_KV_MEMORY_MB = 2048
# Prompt-lookup speculative decoding (engine/speculative.py): the most draft tokens a greedy row verifies in one
# step where verification is exact (int8/int4-family methods with the C++ attention kernel), and the most a
# caller may ask for.
DEFAULT_DRAFT_TOKENS = 4
MAX_DRAFT_TOKENS = 16
