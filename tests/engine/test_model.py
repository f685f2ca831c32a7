"""Our forward equals transformers' forward on the same weights (fp32, max abs diff <= 1e-4)."""

from __future__ import annotations

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

from engine.model import KVCache, build_model

from .conftest import tiny_config, tiny_hf

TOL = 1e-4


def hf_logits(hf, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return hf(torch.tensor([ids])).logits[0]


def test_prefill_logits_match_transformers(tiny_pair):
    hf, ours = tiny_pair
    ids = torch.randint(0, 256, (1, 40), generator=torch.Generator().manual_seed(1))
    cache = KVCache(ours.args, rows=1)
    logits = ours(ids, torch.arange(40)[None], cache, slice(0, 1))
    assert (logits[0] - hf_logits(hf, ids[0].tolist())).abs().max() <= TOL


def test_decode_with_cache_matches_full_forward(tiny_pair):
    hf, ours = tiny_pair
    ids = list(range(10, 40))
    cache = KVCache(ours.args, rows=2, capacity=8)  # forces the cache to grow twice
    steps = [ours(torch.tensor([ids[:12]]), torch.arange(12)[None], cache, slice(1, 2))[0]]
    for t in range(12, len(ids)):
        steps.append(ours(torch.tensor([[ids[t]]]), torch.tensor([[t]]), cache, slice(1, 2))[0])
    assert (torch.cat(steps) - hf_logits(hf, ids)).abs().max() <= TOL


def test_batched_rows_of_different_lengths(tiny_pair):
    hf, ours = tiny_pair
    a, b, c = list(range(5, 30)), list(range(100, 107)), list(range(50, 63))
    cache = KVCache(ours.args, rows=3)
    for row, seq in enumerate((a, b, c)):
        ours(torch.tensor([seq[:-1]]), torch.arange(len(seq) - 1)[None], cache, slice(row, row + 1))
    last = torch.tensor([[a[-1]], [b[-1]], [c[-1]]])
    pos = torch.tensor([[len(a) - 1], [len(b) - 1], [len(c) - 1]])
    batched = ours(last, pos, cache, slice(0, 3), logits_for="last")
    for row, seq in enumerate((a, b, c)):
        assert (batched[row] - hf_logits(hf, seq)[-1]).abs().max() <= TOL
    # Non-contiguous rows take the gather path and agree too.
    rows = torch.tensor([2, 0])
    cache2 = KVCache(ours.args, rows=3)
    for row, seq in ((2, a), (0, b)):
        ours(torch.tensor([seq[:-1]]), torch.arange(len(seq) - 1)[None], cache2, slice(row, row + 1))
    out = ours(
        torch.tensor([[a[-1]], [b[-1]]]), torch.tensor([[len(a) - 1], [len(b) - 1]]), cache2, rows, "last"
    )
    assert (out[0] - hf_logits(hf, a)[-1]).abs().max() <= TOL
    assert (out[1] - hf_logits(hf, b)[-1]).abs().max() <= TOL


@pytest.mark.parametrize(
    "config_cls,model_cls",
    [(Qwen2Config, Qwen2ForCausalLM), (MistralConfig, MistralForCausalLM)],
)
def test_other_llama_shaped_architectures(config_cls, model_cls):
    base = tiny_config().to_dict()
    for key in ("architectures", "model_type", "transformers_version"):
        base.pop(key, None)
    torch.manual_seed(3)
    hf = model_cls(config_cls(**base)).eval()
    ours = build_model(hf.config, hf.state_dict())
    ids = list(range(3, 33))
    cache = KVCache(ours.args, rows=1)
    logits = ours(torch.tensor([ids]), torch.arange(len(ids))[None], cache, slice(0, 1))
    assert (logits[0] - hf_logits(hf, ids)).abs().max() <= TOL


def test_untied_head():
    hf = tiny_hf(tiny_config(tie_word_embeddings=False), seed=4)
    ours = build_model(hf.config, hf.state_dict())
    assert ours.output.weight.data_ptr() != ours.tok_embeddings.weight.data_ptr()
    ids = list(range(20))
    logits = ours(torch.tensor([ids]), torch.arange(20)[None], KVCache(ours.args, rows=1), slice(0, 1))
    assert (logits[0] - hf_logits(hf, ids)).abs().max() <= TOL


@pytest.mark.slow
def test_default_model_logits_match_transformers(default_model, default_hf):
    ours = build_model(default_model.config, dict(default_model.state_dict))
    ids = default_model.tokenizer("The quick brown fox jumps over the lazy dog. " * 4)["input_ids"]
    logits = ours(torch.tensor([ids]), torch.arange(len(ids))[None], KVCache(ours.args, rows=1), slice(0, 1))
    assert (logits[0] - hf_logits(default_hf, ids)).abs().max() <= TOL
