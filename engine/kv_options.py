"""The engine's user-facing serving choices (KV cache, speculative decoding), without importing torch (the CLI's
options and help are built from them)."""

from __future__ import annotations

KV_DTYPE_NAMES = ("fp32", "bf16", "int8")
DEFAULT_KV_DTYPE = "fp32"
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
