"""Exact token counts of chat messages, with a given tokenizer and its own chat template.

The tokenizer is passed in (any object with a Hugging Face `apply_chat_template`), so this module stays free of
the engine; the count includes the generation prompt, i.e. what the model is actually fed.
"""

from __future__ import annotations

from typing import Any


def count_tokens(messages: list[dict[str, str]], tokenizer: Any) -> int:
    ids = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=True, return_dict=False
    )
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    return len(ids)
