"""Our forward equals transformers' forward on the same weights (fp32, max abs diff <= 1e-4)."""

from __future__ import annotations

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

from engine.attention import ContiguousContext
from engine.model import build_model

from .conftest import tiny_config, tiny_hf

TOL = 1e-4


def hf_logits(hf, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return hf(torch.tensor([ids])).logits[0]


def test_prefill_logits_match_transformers(tiny_pair):
    hf, ours = tiny_pair
    ids = torch.randint(0, 256, (40,), generator=torch.Generator().manual_seed(1))
    assert (ours.forward_sequence(ids) - hf_logits(hf, ids.tolist())).abs().max() <= TOL


def test_decode_with_cache_matches_full_forward(tiny_pair):
    hf, ours = tiny_pair
    ids = list(range(10, 40))
    context = ContiguousContext(ours.args.n_layers)
    steps = [ours(torch.tensor(ids[:12]), *_at(context, 0, 12))]
    for t in range(12, len(ids)):
        steps.append(ours(torch.tensor([ids[t]]), *_at(context, t, 1)))
    assert (torch.cat(steps) - hf_logits(hf, ids)).abs().max() <= TOL


def _at(context: ContiguousContext, first: int, count: int):
    positions = torch.arange(first, first + count)
    return positions, context.at(positions)


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
    assert (ours.forward_sequence(torch.tensor(ids)) - hf_logits(hf, ids)).abs().max() <= TOL


def test_untied_head():
    hf = tiny_hf(tiny_config(tie_word_embeddings=False), seed=4)
    ours = build_model(hf.config, hf.state_dict())
    assert ours.output.weight.data_ptr() != ours.tok_embeddings.weight.data_ptr()
    ids = list(range(20))
    assert (ours.forward_sequence(torch.tensor(ids)) - hf_logits(hf, ids)).abs().max() <= TOL


@pytest.mark.slow
def test_default_model_logits_match_transformers(default_model, default_hf):
    ours = build_model(default_model.config, dict(default_model.state_dict))
    ids = default_model.tokenizer("The quick brown fox jumps over the lazy dog. " * 4)["input_ids"]
    assert (ours.forward_sequence(torch.tensor(ids)) - hf_logits(default_hf, ids)).abs().max() <= TOL
