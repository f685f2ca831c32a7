"""The Provider protocol over any OpenAI-compatible endpoint (our engine, vLLM, a remote API) through the official
`openai` client: chat, stream, score a continuation, perplexity, with retries on 429/5xx. Decoding extras travel
as vLLM-style extra body fields, only where the capabilities say they are understood. Where a local model is
served is decided by the caller (services/engines.py), which hands the provider a base URL or a function that
returns one. Keys are read from the environment variable a provider names, at call time, and never stored."""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prompting.providers import (
    LOCAL_CAPABILITIES,
    REMOTE_CAPABILITIES,
    CannotScore,
    Capabilities,
    Completion,
    ProviderError,
    ProviderSpec,
    Scored,
    StreamChunk,
    Usage,
    price,
)

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
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
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
    "response_format",
    "tools",
    "tool_choice",
)
RETRY_STATUSES = (429, 500, 502, 503, 504)


def token_entries(logprobs: Any) -> list[dict[str, Any]]:
    """The openai client's per-token logprob objects as plain dicts (with the token's bytes, so a view can
    rebuild characters that span several tokens)."""
    return (
        [
            {
                "token": i.token,
                "logprob": i.logprob,
                "bytes": list(i.bytes) if i.bytes is not None else None,
                "top": [
                    {
                        "token": t.token,
                        "logprob": t.logprob,
                        "bytes": list(t.bytes) if t.bytes is not None else None,
                    }
                    for t in (i.top_logprobs or [])
                ],
            }
            for i in (logprobs.content or [])
        ]
        if logprobs
        else []
    )


class HttpProvider:
    """A chat model behind an OpenAI-compatible endpoint, reached with the official `openai` client."""

    def __init__(
        self,
        spec: ProviderSpec,
        base_url: str | Callable[[], str] | None = None,
        *,
        timeout: float = 120.0,
        max_retries: int = 4,
        capabilities: Capabilities | None = None,
    ):
        self.spec = spec
        self._base_url = base_url if base_url is not None else spec.base_url
        if self._base_url is None:
            raise ProviderError(f"provider {spec.label}: no base URL")
        self.timeout, self.max_retries = timeout, max_retries
        self.capabilities = capabilities or (
            LOCAL_CAPABILITIES if spec.kind == "local" else REMOTE_CAPABILITIES
        )
        self._client = None
        self._lock = threading.Lock()

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    def base_url(self) -> str:
        return self._base_url() if callable(self._base_url) else self._base_url

    def client(self):
        with self._lock:
            if self._client is None:
                import openai

                key = "local"
                if self.spec.kind == "remote":
                    key = os.environ.get(self.spec.api_key_env or "", "")
                    if not key:
                        raise ProviderError(
                            f"provider {self.label}: the environment variable {self.spec.api_key_env} is not set"
                        )
                self._client = openai.OpenAI(
                    base_url=self.base_url(), api_key=key, timeout=self.timeout, max_retries=0
                )
            return self._client

    def _relocate(self) -> None:
        """Forget the client of a located endpoint (a local engine): the engine may have been stopped (idle, the
        engine cap) or restarted on another port, so the next attempt asks where, or for a new one, again."""
        with self._lock:
            self._client = None

    def request_body(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        """The Chat Completions body for these messages: OpenAI fields at the top, extras in `extra_body`."""
        if not self.capabilities.system_role:
            from prompting.guardrails import fold_system_into_user

            messages = fold_system_into_user(messages)
        body: dict[str, Any] = {"model": self.model_id, "messages": messages}
        extra: dict[str, Any] = {}
        for key, value in {**self.spec.params, **params}.items():
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

    def chat(self, messages: list[dict[str, Any]], **params: Any) -> Completion:
        body = self.request_body(messages, params)
        if body.get("n", 1) > 1 and not self.capabilities.n:
            parts = [self.chat(messages, **{**params, "n": 1}) for _ in range(body["n"])]
            total = sum((p.usage for p in parts), Usage())
            return Completion(
                [p.text for p in parts], total, finish_reasons=[p.finish_reasons[0] for p in parts]
            )
        start = time.perf_counter()
        response = self._with_retries(lambda: self.client().chat.completions.create(**body))
        latency = (time.perf_counter() - start) * 1000
        tokens_in = response.usage.prompt_tokens if response.usage else 0
        tokens_out = response.usage.completion_tokens if response.usage else 0
        usage = Usage(tokens_in, tokens_out, latency, self.cost(tokens_in, tokens_out), 1)
        logprobs = [token_entries(c.logprobs) for c in response.choices] if body.get("logprobs") else None
        calls = [[t.model_dump() for t in c.message.tool_calls or []] for c in response.choices]
        texts = [
            c.message.content or (json.dumps(calls[i]) if calls[i] else "")
            for i, c in enumerate(response.choices)
        ]
        return Completion(
            texts,
            usage,
            logprobs,
            [c.finish_reason for c in response.choices],
            tool_calls=calls if any(calls) else None,
        )

    def stream(self, messages: list[dict[str, Any]], **params: Any) -> Iterator[StreamChunk]:
        """The answer as it is generated (one choice); the last chunk has the finish reason and the usage."""
        body = {
            **self.request_body(messages, params),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        start = time.perf_counter()
        stream = self._with_retries(lambda: self.client().chat.completions.create(**body))
        finish, usage = None, None
        for chunk in stream:
            if chunk.usage is not None:
                t_in, t_out = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
                usage = Usage(t_in, t_out, 0.0, self.cost(t_in, t_out), 1)
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            finish = choice.finish_reason or finish
            tokens = token_entries(choice.logprobs) if choice.logprobs else None
            if choice.delta.content or tokens:
                yield StreamChunk(choice.delta.content or "", tokens)
        usage = usage or Usage(calls=1)
        usage.latency_ms = (time.perf_counter() - start) * 1000
        yield StreamChunk(finish_reason=finish, usage=usage)

    def score(self, messages: list[dict[str, Any]], continuation: str) -> Scored:
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
        start = time.perf_counter()
        response = self._with_retries(lambda: self.client().chat.completions.create(**body))
        latency = (time.perf_counter() - start) * 1000
        entries = (response.model_extra or {}).get("prompt_logprobs")
        if not entries:
            raise CannotScore(f"provider {self.label} returned no prompt log-probabilities")
        tokens_in = response.usage.prompt_tokens if response.usage else 0
        return Scored(
            _tail_logprob(entries, continuation), Usage(tokens_in, 0, latency, self.cost(tokens_in, 0), 1)
        )

    def perplexity(self, text: str) -> float:
        """exp(mean negative log-likelihood) of a text, from the endpoint's echoed prompt log-probabilities."""
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
        return 0.0 if self.spec.kind == "local" else price(self.spec.model, tokens_in, tokens_out)

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
                if isinstance(exc, openai.APIConnectionError) and callable(self._base_url):
                    self._relocate()
                if attempt == self.max_retries:
                    raise ProviderError(f"provider {self.label}: {type(exc).__name__}: {exc}") from None
            time.sleep(delay * (1 + random.random() * 0.25))
            delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")


def _tail_logprob(entries: list[dict | None], continuation: str) -> float:
    """Walk back from the end of the prompt log-probabilities until the decoded tokens cover the continuation."""
    total, covered = 0.0, ""
    for entry in reversed(entries):
        if entry is None:
            break
        _, info = next(iter(entry.items()))
        covered = info["decoded_token"] + covered
        total += info["logprob"]
        if len(covered) >= len(continuation):
            break
    return total


def _message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error", {}).get("message") or body)
    return str(exc)
