"""A recording fake provider: queued or computed replies, and a history of every call (simonw/llm's MockModel).

It implements the Provider protocol itself (it is not an HTTP provider in disguise)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from prompting.providers import (
    CannotScore,
    Capabilities,
    Completion,
    ProviderError,
    ProviderSpec,
    Scored,
    StreamChunk,
    Usage,
)


class FakeProvider:
    def __init__(
        self,
        reply: Callable[[list[dict], dict], str | list[str]] | list[str] | str = "ok",
        label: str = "fake:model",
        scores: dict[str, float] | Callable[[list[dict], str], float] | None = None,
        fail: Callable[[list[dict]], bool] | None = None,
        capabilities: Capabilities | None = None,
        latency_ms: float = 5.0,
    ):
        self.spec = ProviderSpec(label=label, kind="remote", model="fake-model", base_url="http://fake")
        self.capabilities = capabilities or Capabilities(continuation_scoring=scores is not None)
        self._reply, self._scores, self._fail = reply, scores if scores is not None else {}, fail
        self.calls: list[dict[str, Any]] = []
        self.usages: list[Usage] = []  # what every call (chat or score) reported, for accounting checks
        self.score_calls: list[tuple[list[dict], str]] = []
        self._queue = list(reply) if isinstance(reply, list) else None
        self._lock = threading.Lock()
        self.latency_ms = latency_ms

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def model_id(self) -> str:
        return self.spec.model

    def _texts(self, messages, params) -> list[str]:
        n = int(params.get("n", 1))
        if self._queue is not None:
            return [self._queue.pop(0) for _ in range(n)]
        if callable(self._reply):
            out = self._reply(messages, params)
            return out if isinstance(out, list) else [out] * n
        return [self._reply] * n

    def chat(self, messages, **params) -> Completion:
        with self._lock:
            self.calls.append({"messages": messages, "params": params})
            if self._fail and self._fail(messages):
                raise ProviderError("fake: connection reset")
            texts = self._texts(messages, params)
        logprobs = (
            [
                [{"token": w, "logprob": -0.5, "bytes": list(w.encode()), "top": []} for w in t.split()]
                for t in texts
            ]
            if params.get("logprobs")
            else None
        )
        usage = Usage(
            sum(len(m["content"].split()) for m in messages),
            sum(len(t.split()) for t in texts),
            self.latency_ms,
            0.001,
            1,
        )
        with self._lock:
            self.usages.append(usage)
        return Completion(texts=texts, usage=usage, logprobs=logprobs, finish_reasons=["stop"] * len(texts))

    def stream(self, messages, **params) -> Iterator[StreamChunk]:
        completion = self.chat(messages, **params)
        for word in completion.text.split(" "):
            yield StreamChunk(word + " ")
        yield StreamChunk(finish_reason="stop", usage=completion.usage)

    def score(self, messages, continuation: str) -> Scored:
        with self._lock:
            self.score_calls.append((messages, continuation))
        if not self.capabilities.continuation_scoring:
            raise CannotScore(f"provider {self.label} cannot score a given continuation")
        value = (
            self._scores(messages, continuation)
            if callable(self._scores)
            else self._scores[continuation.strip().lower()]
        )
        usage = Usage(len(messages), 0, self.latency_ms, 0.0005, 1)
        with self._lock:
            self.usages.append(usage)
        return Scored(value, usage)

    def perplexity(self, text: str) -> float:
        raise CannotScore("the fake provider has no perplexity")

    def model_card(self) -> dict[str, Any]:
        return {"id": self.model_id}
