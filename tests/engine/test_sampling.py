"""Each processor draws from the distribution it claims: a chi-square test on a tiny-vocabulary model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from engine.generate import Engine, Request
from engine.model import build_model
from engine.sampling import SamplingParams, apply_penalties

from .conftest import ByteTokenizer, tiny_config, tiny_hf

VOCAB = 12
SAMPLES = 3000


def reference_distribution(logits: np.ndarray, params: SamplingParams) -> np.ndarray:
    """A straightforward reading of the documented order: top-k -> top-p -> min-p -> temperature."""
    logits = logits.astype(np.float64).copy()
    keep = np.ones_like(logits, dtype=bool)
    order = np.argsort(-logits, kind="stable")
    if params.top_k > 0:
        keep[order[params.top_k :]] = False
    probs = np.exp(logits - logits[keep].max()) * keep
    probs /= probs.sum()
    if params.top_p < 1.0:
        mass = 0.0
        for token in order:
            if not keep[token]:
                continue
            if mass >= params.top_p:
                keep[token] = False
            mass += probs[token]
        probs = probs * keep
        probs /= probs.sum()
    if params.min_p > 0.0:
        keep &= probs >= params.min_p * probs.max()
    scaled = np.where(keep, logits / params.temperature, -np.inf)
    out = np.exp(scaled - scaled[keep].max())
    return out / out.sum()


@pytest.fixture(scope="module")
def tiny_vocab():
    hf = tiny_hf(tiny_config(vocab_size=VOCAB, eos_token_id=VOCAB - 1), seed=5)
    with torch.no_grad():
        hf.lm_head.weight.mul_(0.25)  # soften back so the filters have several tokens to choose among
    engine = Engine(build_model(hf.config, hf.state_dict()), ByteTokenizer(), max_batch=64)
    return hf, engine


CASES = [
    SamplingParams(temperature=1.0),
    SamplingParams(temperature=0.5),
    SamplingParams(temperature=1.7),
    SamplingParams(top_k=4),
    SamplingParams(top_p=0.6),
    SamplingParams(min_p=0.08),
    SamplingParams(top_k=6, top_p=0.8, temperature=0.7),
]


@pytest.mark.parametrize("params", CASES, ids=lambda p: f"t{p.temperature}-k{p.top_k}-p{p.top_p}-m{p.min_p}")
def test_first_token_frequencies_match_the_processed_distribution(tiny_vocab, params):
    hf, engine = tiny_vocab
    prompt = [1, 2, 3]
    with torch.no_grad():
        logits = hf(torch.tensor([prompt])).logits[0, -1].numpy()
    expected = reference_distribution(logits, params)
    counts = np.zeros(VOCAB)
    batch = 50
    for seed in range(SAMPLES // batch):
        request = engine.submit(
            Request(
                prompt,
                SamplingParams(
                    max_new_tokens=1,
                    n=batch,
                    seed=seed * batch,
                    ignore_eos=True,
                    temperature=params.temperature,
                    top_k=params.top_k,
                    top_p=params.top_p,
                    min_p=params.min_p,
                ),
            )
        )
        engine.run()
        for choice in request.choices:
            counts[choice.token_ids[0]] += 1
    support = expected > 0
    assert counts[~support].sum() == 0, "a filtered-out token was sampled"
    assert support.sum() >= 2
    result = chisquare(counts[support], expected[support] * SAMPLES)
    assert result.pvalue > 1e-3, (counts, expected * SAMPLES)


def test_repetition_penalty_has_transformers_semantics():
    from transformers import RepetitionPenaltyLogitsProcessor

    logits = torch.tensor([2.0, -1.0, 0.5, -3.0, 1.0])
    seen = torch.tensor([0, 1, 1])
    ours = apply_penalties(
        logits, SamplingParams(repetition_penalty=1.3), seen, torch.tensor([], dtype=torch.long)
    )
    ref = RepetitionPenaltyLogitsProcessor(1.3)(seen[None], logits[None].clone())[0]
    assert torch.allclose(ours, ref)


def test_presence_and_frequency_penalties_have_openai_semantics():
    logits = torch.zeros(4)
    out = torch.tensor([2, 2, 3])
    penalised = apply_penalties(
        logits, SamplingParams(presence_penalty=0.5, frequency_penalty=0.25), out, out
    )
    assert penalised.tolist() == [0.0, 0.0, -(0.5 + 2 * 0.25), -(0.5 + 0.25)]
