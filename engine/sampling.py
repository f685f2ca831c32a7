"""Logits processing and token choice for one sequence: penalties, top-k, top-p, min-p, temperature, sampling.

The order is fixed and documented: penalties -> top-k -> top-p -> min-p -> temperature -> sample.
So top-k and top-p select from the model's own (penalised) distribution, and temperature only reshapes what
survives the filters. Temperature 0 (or top-k 1) is greedy. Repetition penalty follows transformers (divide a
positive logit, multiply a negative one, for every token already in prompt or output); presence and frequency
penalties follow OpenAI (subtract, from the output tokens' counts only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from engine.errors import EngineError

NEG_INF = float("-inf")
MAX_LENGTH_PENALTY = (
    100.0  # beam scores divide by length**penalty: beyond this it under/overflows to 0 or inf
)


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_k: int = 0  # 0 or -1: off
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    n: int = 1
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    min_tokens: int = 0
    logprobs: int | None = None  # None: none; N: the chosen token's logprob and the top N alternatives
    prompt_logprobs: int | None = None
    use_beam_search: bool = False
    length_penalty: float = 1.0
    early_stopping: bool = False
    skip_special_tokens: bool = True

    def validate(self) -> SamplingParams:
        """Raise EngineError (a ValueError) naming the first bad parameter."""
        checks = [
            ("max_new_tokens", self.max_new_tokens >= 0, "must be >= 0"),
            ("temperature", 0.0 <= self.temperature <= 100.0, "must be between 0 and 100"),
            ("top_k", self.top_k >= -1, "must be -1, 0 (off) or a positive integer"),
            ("top_p", 0.0 < self.top_p <= 1.0, "must be in (0, 1]"),
            ("min_p", 0.0 <= self.min_p <= 1.0, "must be in [0, 1]"),
            ("repetition_penalty", 0.0 < self.repetition_penalty <= 10.0, "must be in (0, 10]"),
            ("presence_penalty", -2.0 <= self.presence_penalty <= 2.0, "must be between -2 and 2"),
            ("frequency_penalty", -2.0 <= self.frequency_penalty <= 2.0, "must be between -2 and 2"),
            ("n", 1 <= self.n <= 64, "must be between 1 and 64"),
            ("min_tokens", self.min_tokens >= 0, "must be >= 0"),
            (
                "length_penalty",
                -MAX_LENGTH_PENALTY <= self.length_penalty <= MAX_LENGTH_PENALTY,
                f"must be between -{MAX_LENGTH_PENALTY} and {MAX_LENGTH_PENALTY}",
            ),
            ("logprobs", self.logprobs is None or 0 <= self.logprobs <= 20, "must be between 0 and 20"),
            (
                "prompt_logprobs",
                self.prompt_logprobs is None or 0 <= self.prompt_logprobs <= 20,
                "must be between 0 and 20",
            ),
        ]
        for name, ok, why in checks:
            if not ok:
                raise EngineError(f"{name} {why}, got {getattr(self, name)!r}", param=name)
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1

    @property
    def has_penalties(self) -> bool:
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0


def apply_penalties(
    logits: torch.Tensor, params: SamplingParams, seen_ids: torch.Tensor, output_ids: torch.Tensor
) -> torch.Tensor:
    """logits: [V]; seen_ids: prompt + output token ids; output_ids: output only."""
    if params.repetition_penalty != 1.0 and seen_ids.numel():
        ids = seen_ids.unique()
        picked = logits[ids]
        logits = logits.clone()
        logits[ids] = torch.where(
            picked > 0, picked / params.repetition_penalty, picked * params.repetition_penalty
        )
    if (params.presence_penalty or params.frequency_penalty) and output_ids.numel():
        counts = torch.bincount(output_ids, minlength=logits.shape[-1])[: logits.shape[-1]].to(logits.dtype)
        logits = (
            logits
            - params.frequency_penalty * counts
            - params.presence_penalty * (counts > 0).to(logits.dtype)
        )
    return logits


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability adds up to at least p (at least one)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True)
    probs = sorted_logits.softmax(-1)
    before = probs.cumsum(-1) - probs  # mass of the tokens ranked above each one
    drop_sorted = before >= p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


def filter_min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    if min_p <= 0.0:
        return logits
    probs = logits.softmax(-1)
    threshold = min_p * probs.max(-1, keepdim=True).values
    return logits.masked_fill(probs < threshold, NEG_INF)


def process(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """The distribution (as logits) that sampling draws from, after the filters and temperature."""
    logits = filter_top_k(logits, params.top_k)
    logits = filter_top_p(logits, params.top_p)
    logits = filter_min_p(logits, params.min_p)
    if params.temperature not in (0.0, 1.0):
        logits = logits / params.temperature
    return logits


def argmax(logits: torch.Tensor) -> int:
    """The first index of the largest of logits [V] (fp32). numpy's argmax, not torch's: on CPU torch's takes
    ~45 µs for a 49k vocabulary and numpy's ~6, which is most of a greedy row's per-step Python cost in a batch.
    Both return the first maximum, so every path (decode, verification, beams) picks the same token."""
    return int(np.argmax(logits.numpy()))


def choose(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """One token from penalised logits [V]."""
    if params.greedy:
        return argmax(logits.float())
    probs = process(logits, params).float().softmax(-1)
    if not torch.isfinite(probs).all():
        # Extreme values (temperature or repetition_penalty near 0) overflow to inf/inf; their limit is greedy.
        return argmax(logits.float())
    return int(torch.multinomial(probs, 1, generator=generator))


def top_logprobs(logprobs: torch.Tensor, n: int) -> list[tuple[int, float]]:
    if n <= 0:
        return []
    values, ids = torch.topk(logprobs, n)
    # Under an output constraint forbidden tokens sit at -inf: they are not alternatives (nor valid JSON).
    return [(int(i), float(v)) for i, v in zip(ids, values, strict=True) if v != float("-inf")]
