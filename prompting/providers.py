"""The Provider protocol and the values it speaks in: what a provider can do (`Capabilities`), what its calls
cost (`Usage`), completions, scores and stream chunks, and how a provider is named (`ProviderSpec`). Its
implementation over any OpenAI-compatible endpoint is prompting/http_provider.py.

A provider chats, streams with per-token log-probabilities, scores a given continuation, measures perplexity and
says what it can do (`Capabilities`). Every call reports one `Usage` value (tokens, latency, cost, calls), the
same type strategies and cells add up. Decoding extras (top_k, min_p, repetition_penalty, beam search...) travel
as vLLM-style extra body fields, only where the capabilities say they are understood. This module starts no
process: where a local model is served is decided by the caller (services/engines.py), which hands the provider a
base URL or a function that returns one. Keys are read from the environment variable a provider names, at call
time, and are never stored or logged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from prompting.errors import PromptingError

# USD per million tokens (input, output) for known remote models; local models cost nothing.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o4-mini": (1.10, 4.40),
}


class ProviderError(PromptingError):
    """A provider call that failed for a reason outside the prompt (network, timeout, bad response)."""


class CannotScore(PromptingError):
    pass


@dataclass(frozen=True)
class Capabilities:
    logprobs: bool = True
    top_k: bool = False
    beam_search: bool = False
    continuation_scoring: bool = False
    system_role: bool = True
    n: bool = True
    structured_output: bool = (
        False  # decoding constrained to a JSON schema, regex or choices (and tool calls)
    )


LOCAL_CAPABILITIES = Capabilities(
    logprobs=True, top_k=True, beam_search=True, continuation_scoring=True, structured_output=True
)
REMOTE_CAPABILITIES = Capabilities()


@dataclass
class Usage:
    """What calls cost: summed over every call a completion, a strategy or a cell made."""

    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    cost: float = 0.0
    calls: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.tokens_in + other.tokens_in,
            self.tokens_out + other.tokens_out,
            self.latency_ms + other.latency_ms,
            self.cost + other.cost,
            self.calls + other.calls,
        )


@dataclass
class Completion:
    texts: list[str]
    usage: Usage = field(default_factory=Usage)
    logprobs: list[list[dict[str, Any]]] | None = None  # per choice: [{token, logprob, bytes, top: [...]}]
    finish_reasons: list[str | None] = field(default_factory=list)
    cached: bool = False
    tool_calls: list[list[dict[str, Any]]] | None = (
        None  # per choice: [{id, type, function: {name, arguments}}]
    )

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""

    def to_dict(self) -> dict[str, Any]:
        u = self.usage
        return {
            "texts": self.texts,
            "tokens_in": u.tokens_in,
            "tokens_out": u.tokens_out,
            "latency_ms": u.latency_ms,
            "cost": u.cost,
            "logprobs": self.logprobs,
            "finish_reasons": self.finish_reasons,
            "tool_calls": self.tool_calls,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], cached: bool = False) -> Completion:
        usage = Usage(
            data.get("tokens_in", 0),
            data.get("tokens_out", 0),
            data.get("latency_ms", 0.0),
            data.get("cost", 0.0),
            1,
        )
        return cls(
            list(data["texts"]),
            usage,
            data.get("logprobs"),
            list(data.get("finish_reasons") or []),
            cached,
            data.get("tool_calls"),
        )


@dataclass
class Scored:
    """log P(continuation | messages) and what the scoring request cost."""

    logprob: float
    usage: Usage = field(default_factory=Usage)


@dataclass
class StreamChunk:
    """One piece of a streamed answer; the last one carries the finish reason and the usage."""

    text: str = ""
    tokens: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None


@runtime_checkable
class Provider(Protocol):
    """What strategies, the runner and the pages need from a model."""

    spec: ProviderSpec
    capabilities: Capabilities

    @property
    def label(self) -> str: ...
    @property
    def model_id(self) -> str: ...
    def chat(self, messages: list[dict[str, Any]], **params: Any) -> Completion: ...
    def stream(self, messages: list[dict[str, Any]], **params: Any) -> Iterator[StreamChunk]: ...
    def score(self, messages: list[dict[str, Any]], continuation: str) -> Scored: ...
    def perplexity(self, text: str) -> float: ...
    def model_card(self) -> dict[str, Any]: ...


@dataclass
class ProviderSpec:
    """What a provider is, without secrets: stored as a provider configuration."""

    label: str
    kind: str  # "local" | "remote"
    model: str
    base_url: str | None = None
    quant: str | None = None
    api_key_env: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return f"{self.model}@{self.quant}" if self.kind == "local" else self.model

    @classmethod
    def parse(cls, ident: str, config: dict[str, Any] | None = None) -> ProviderSpec:
        """`local:MODEL[@QUANT]` (config: quant) or `openai:chat:MODEL` / `openai:MODEL` (config: base_url or
        apiBaseUrl, api_key_env or apiKeyEnvar, and default parameters)."""
        config = dict(config or {})
        if ident.startswith("local:"):
            model = ident[len("local:") :]
            if "@" in model:
                model, quant = model.split("@", 1)
                config.setdefault("quant", quant)
            quant = str(config.pop("quant", None) or _default_quant())
            return cls(label=f"local:{model}@{quant}", kind="local", model=model, quant=quant, params=config)
        if ident.startswith("openai:"):
            return cls._remote(ident, config)
        raise PromptingError(f"unknown provider id '{ident}'; use local:MODEL or openai:chat:MODEL")

    @classmethod
    def _remote(cls, ident: str, config: dict[str, Any]) -> ProviderSpec:
        model = ident.split(":", 2)[-1] if ident.startswith("openai:chat:") else ident[len("openai:") :]
        base_url = (
            config.pop("base_url", None) or config.pop("apiBaseUrl", None) or "https://api.openai.com/v1"
        )
        key_env = config.pop("api_key_env", None) or config.pop("apiKeyEnvar", None) or "OPENAI_API_KEY"
        for secret in ("api_key", "apiKey"):
            if secret in config:
                raise PromptingError(
                    f"provider {ident}: put the key in an environment variable and name it "
                    f"with api_key_env, never in the suite ('{secret}' found)"
                )
        return cls(
            label=ident, kind="remote", model=model, base_url=base_url, api_key_env=key_env, params=config
        )


def _default_quant() -> str:
    from settings import get_settings

    return get_settings().default_quant


def price(model: str, tokens_in: int, tokens_out: int) -> float:
    known = PRICES.get(model)
    return (tokens_in * known[0] + tokens_out * known[1]) / 1_000_000 if known else 0.0
