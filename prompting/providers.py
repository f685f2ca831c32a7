"""One Provider interface over any OpenAI-compatible endpoint: our engine, vLLM, or a remote API.

Everything goes through the official `openai` client with a `base_url`. Decoding extras (top_k, min_p,
repetition_penalty, beam search...) travel as vLLM-style extra body fields, and only where the provider's
capabilities say they are understood. A local provider names a model and a quantization method; when nothing
at WORKBENCH_ENGINE_URL serves that pair, it starts `workbench serve` itself on a free loopback port, reuses it
for the rest of the process and stops it at exit. Keys are read from the environment variable a provider names,
at call time, and are never stored or logged.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prompting.errors import PromptingError

EXTRA_BODY_FIELDS = (
    "top_k",
    "min_p",
    "repetition_penalty",
    "length_penalty",
    "use_beam_search",
    "min_tokens",
    "ignore_eos",
    "stop_token_ids",
    "skip_special_tokens",
    "echo",
    "prompt_logprobs",
)
OPENAI_FIELDS = (
    "temperature",
    "top_p",
    "max_tokens",
    "n",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
)
# USD per million tokens (input, output) for known remote models; local models cost nothing.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o4-mini": (1.10, 4.40),
}
RETRY_STATUSES = (429, 500, 502, 503, 504)


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


LOCAL_CAPABILITIES = Capabilities(logprobs=True, top_k=True, beam_search=True, continuation_scoring=True)
REMOTE_CAPABILITIES = Capabilities()


@dataclass
class Completion:
    texts: list[str]
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    cost: float = 0.0
    logprobs: list[list[dict[str, Any]]] | None = None  # per choice: [{token, logprob, top: [...]}]
    finish_reasons: list[str | None] = field(default_factory=list)
    cached: bool = False

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "texts": self.texts,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "latency_ms": self.latency_ms,
            "cost": self.cost,
            "logprobs": self.logprobs,
            "finish_reasons": self.finish_reasons,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], cached: bool = False) -> Completion:
        return cls(**data, cached=cached)


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

    @classmethod
    def parse(cls, ident: str, config: dict[str, Any] | None = None) -> ProviderSpec:
        """`local:MODEL` (config: quant) or `openai:chat:MODEL` / `openai:MODEL` (config: base_url/apiBaseUrl,
        api_key_env/apiKeyEnvar, and default parameters)."""
        config = dict(config or {})
        if ident.startswith("local:"):
            model = ident[len("local:") :]
            if "@" in model:
                model, quant = model.split("@", 1)
                config.setdefault("quant", quant)
            quant = str(config.pop("quant", None) or _default_quant())
            return cls(label=f"local:{model}@{quant}", kind="local", model=model, quant=quant, params=config)
        if ident.startswith("openai:"):
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
        raise PromptingError(f"unknown provider id '{ident}'; use local:MODEL or openai:chat:MODEL")


def _default_quant() -> str:
    from settings import get_settings

    return get_settings().default_quant


class Provider:
    """A chat model behind an OpenAI-compatible endpoint."""

    def __init__(
        self,
        spec: ProviderSpec,
        *,
        timeout: float = 120.0,
        max_retries: int = 4,
        capabilities: Capabilities | None = None,
    ):
        self.spec = spec
        self.timeout, self.max_retries = timeout, max_retries
        self.capabilities = capabilities or (
            LOCAL_CAPABILITIES if spec.kind == "local" else REMOTE_CAPABILITIES
        )
        self._client = None
        self._lock = threading.Lock()

    # connection -----------------------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def model_id(self) -> str:
        return f"{self.spec.model}@{self.spec.quant}" if self.spec.kind == "local" else self.spec.model

    def base_url(self) -> str:
        if self.spec.kind == "local":
            return local_engine_url(self.spec.model, self.spec.quant)
        return self.spec.base_url

    def client(self):
        with self._lock:
            if self._client is None:
                import openai

                key = "local"
                if self.spec.kind == "remote":
                    key = os.environ.get(self.spec.api_key_env or "", "")
                    if not key:
                        raise ProviderError(
                            f"provider {self.label}: the environment variable "
                            f"{self.spec.api_key_env} is not set"
                        )
                self._client = openai.OpenAI(
                    base_url=self.base_url(), api_key=key, timeout=self.timeout, max_retries=0
                )
            return self._client

    # calls ------------------------------------------------------------------------------------------------

    def request_body(self, messages: list[dict[str, str]], params: dict[str, Any]) -> dict[str, Any]:
        merged = {**self.spec.params, **params}
        body: dict[str, Any] = {"model": self.model_id, "messages": messages}
        extra: dict[str, Any] = {}
        for key, value in merged.items():
            if value is None:
                continue
            if key in OPENAI_FIELDS:
                body[key] = value
            elif key in EXTRA_BODY_FIELDS:
                if key == "top_k" and not self.capabilities.top_k:
                    continue
                if key == "use_beam_search" and not self.capabilities.beam_search:
                    raise ProviderError(f"provider {self.label} does not support beam search")
                extra[key] = value
        if not self.capabilities.logprobs:
            body.pop("logprobs", None)
            body.pop("top_logprobs", None)
        if extra:
            body["extra_body"] = extra
        return body

    def chat(self, messages: list[dict[str, str]], **params: Any) -> Completion:
        if not self.capabilities.system_role:
            from prompting.guardrails import fold_system_into_user

            messages = fold_system_into_user(messages)
        body = self.request_body(messages, params)
        n = body.get("n", 1)
        if n > 1 and not self.capabilities.n:
            parts = [self.chat(messages, **{**params, "n": 1}) for _ in range(n)]
            return Completion(
                texts=[p.text for p in parts],
                tokens_in=sum(p.tokens_in for p in parts),
                tokens_out=sum(p.tokens_out for p in parts),
                latency_ms=sum(p.latency_ms for p in parts),
                cost=sum(p.cost for p in parts),
            )
        start = time.perf_counter()
        response = self._with_retries(lambda: self.client().chat.completions.create(**body))
        latency = (time.perf_counter() - start) * 1000
        usage = response.usage
        tokens_in = usage.prompt_tokens if usage else 0
        tokens_out = usage.completion_tokens if usage else 0
        logprobs = None
        if body.get("logprobs"):
            logprobs = [[{"token": i.token, "logprob": i.logprob,
                          "top": [{"token": t.token, "logprob": t.logprob} for t in (i.top_logprobs or [])]}
                         for i in (c.logprobs.content or [])] if c.logprobs else []
                        for c in response.choices]  # fmt: skip
        return Completion(
            texts=[c.message.content or "" for c in response.choices],
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            latency_ms=latency,
            cost=self.cost(tokens_in, tokens_out),
            logprobs=logprobs,
            finish_reasons=[c.finish_reason for c in response.choices],
        )

    def score(self, messages: list[dict[str, str]], continuation: str) -> float:
        """log P(continuation | messages), the continuation being the start of the assistant's answer."""
        if not self.capabilities.continuation_scoring:
            raise CannotScore(
                f"provider {self.label} cannot score a given continuation (it returns no prompt "
                "log-probabilities); use a local model for the verbalizer strategy"
            )
        body = {
            "model": self.model_id,
            "messages": [*messages, {"role": "assistant", "content": continuation}],
            "max_tokens": 0,
            "extra_body": {
                "prompt_logprobs": 0,
                "add_generation_prompt": False,
                "continue_final_message": True,
            },
        }
        response = self._with_retries(lambda: self.client().chat.completions.create(**body))
        entries = (response.model_extra or {}).get("prompt_logprobs")
        if not entries:
            raise CannotScore(f"provider {self.label} returned no prompt log-probabilities")
        # Walk back from the end until the decoded tokens cover the continuation text.
        total, covered = 0.0, ""
        for entry in reversed(entries):
            if entry is None:
                break
            token_id, info = next(iter(entry.items()))
            covered = info["decoded_token"] + covered
            total += info["logprob"]
            if len(covered) >= len(continuation):
                break
        return total

    def perplexity(self, text: str) -> float:
        """exp(mean negative log-likelihood) of a text, from the endpoint's echoed prompt log-probabilities."""
        import math

        if not self.capabilities.continuation_scoring:
            raise CannotScore(f"provider {self.label} cannot score text (no prompt log-probabilities)")
        response = self._with_retries(
            lambda: self.client().completions.create(
                model=self.model_id, prompt=text, max_tokens=0, echo=True, logprobs=0
            )
        )
        values = [v for v in response.choices[0].logprobs.token_logprobs if v is not None]
        return math.exp(-sum(values) / len(values))

    def model_card(self) -> dict[str, Any]:
        """The endpoint's /models entry for this model (our engine adds weight bytes and bits per parameter)."""
        for model in self._with_retries(lambda: self.client().models.list()).data:
            if model.id == self.model_id:
                return model.model_dump()
        return {}

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        if self.spec.kind == "local":
            return 0.0
        price = PRICES.get(self.spec.model)
        if price is None:
            return 0.0
        return (tokens_in * price[0] + tokens_out * price[1]) / 1_000_000

    def _with_retries(self, call):
        import openai

        delay = 0.5
        for attempt in range(self.max_retries + 1):
            try:
                return call()
            except openai.APIStatusError as exc:
                if exc.status_code not in RETRY_STATUSES or attempt == self.max_retries:
                    raise ProviderError(
                        f"provider {self.label}: HTTP {exc.status_code}: {_message(exc)}"
                    ) from None
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                if attempt == self.max_retries:
                    raise ProviderError(f"provider {self.label}: {type(exc).__name__}: {exc}") from None
            time.sleep(delay * (1 + random.random() * 0.25))
            delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")


def _message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error", {}).get("message") or body)
    return str(exc)


# --- local engines: reuse one that answers, or start our own ------------------------------------------------

_local_servers: dict[tuple[str, str], tuple[str, subprocess.Popen | None]] = {}
_local_lock = threading.Lock()
START_TIMEOUT_S = 180


def _serves(base_url: str, model_id: str) -> bool:
    import httpx

    try:
        response = httpx.get(f"{base_url}/models", timeout=2.0)
        return response.status_code == 200 and any(
            m.get("id") == model_id for m in response.json().get("data", [])
        )
    except (httpx.HTTPError, ValueError):
        return False


def local_engine_url(model: str, quant: str) -> str:
    """Base URL of an engine serving `model@quant`: WORKBENCH_ENGINE_URL if it does, else a child we start."""
    from settings import get_settings

    model_id = f"{model}@{quant}"
    with _local_lock:
        known = _local_servers.get((model, quant))
        if known and (known[1] is None or known[1].poll() is None):
            return known[0]
        configured = get_settings().engine_url.rstrip("/")
        if _serves(configured, model_id):
            _local_servers[(model, quant)] = (configured, None)
            return configured
        url, proc = _start_engine(model, quant)
        _local_servers[(model, quant)] = (url, proc)
        return url


def _start_engine(model: str, quant: str) -> tuple[str, subprocess.Popen]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = shutil.which("workbench") or str(Path(sys.executable).parent / "workbench")
    cmd = [exe, "serve", "--model", model, "--quant", quant, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    atexit.register(_stop, proc)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + START_TIMEOUT_S
    while time.time() < deadline:
        if proc.poll() is not None:
            raise ProviderError(
                f"the local engine for {model}@{quant} exited: {proc.stderr.read().strip()[-500:]}"
            )
        if _serves(url, f"{model}@{quant}"):
            return url, proc
        time.sleep(0.25)
    _stop(proc)
    raise ProviderError(f"the local engine for {model}@{quant} did not become ready in {START_TIMEOUT_S} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def stop_local_engines() -> None:
    with _local_lock:
        for _, proc in _local_servers.values():
            if proc is not None:
                _stop(proc)
        _local_servers.clear()
