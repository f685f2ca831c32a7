"""A recording fake provider: queued or computed replies, and a history of every call (simonw/llm's MockModel)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from prompting.providers import Capabilities, Completion, Provider, ProviderSpec


class FakeProvider(Provider):
    def __init__(
        self,
        reply: Callable[[list[dict], dict], str | list[str]] | list[str] | str = "ok",
        label: str = "fake:model",
        scores: dict[str, float] | None = None,
        fail: Callable[[list[dict]], bool] | None = None,
        capabilities: Capabilities | None = None,
        latency_ms: float = 5.0,
    ):
        super().__init__(
            ProviderSpec(label=label, kind="remote", model="fake-model", base_url="http://fake"),
            capabilities=capabilities or Capabilities(continuation_scoring=scores is not None),
        )
        self._reply, self._scores, self._fail = reply, scores or {}, fail
        self.calls: list[dict[str, Any]] = []
        self.score_calls: list[tuple[list[dict], str]] = []
        self._queue = list(reply) if isinstance(reply, list) else None
        self._lock = threading.Lock()
        self.latency_ms = latency_ms

    def chat(self, messages, **params) -> Completion:
        with self._lock:
            self.calls.append({"messages": messages, "params": params})
            if self._fail and self._fail(messages):
                from prompting.providers import ProviderError

                raise ProviderError("fake: connection reset")
            n = int(params.get("n", 1))
            if self._queue is not None:
                texts = [self._queue.pop(0) for _ in range(n)]
            elif callable(self._reply):
                out = self._reply(messages, params)
                texts = out if isinstance(out, list) else [out] * n
            else:
                texts = [self._reply] * n
        logprobs = (
            [[{"token": w, "logprob": -0.5, "top": []} for w in t.split()] for t in texts]
            if params.get("logprobs")
            else None
        )
        return Completion(
            texts=texts,
            tokens_in=sum(len(m["content"].split()) for m in messages),
            tokens_out=sum(len(t.split()) for t in texts),
            latency_ms=self.latency_ms,
            cost=0.001,
            logprobs=logprobs,
        )

    def score(self, messages, continuation: str) -> float:
        self.score_calls.append((messages, continuation))
        if not self.capabilities.continuation_scoring:
            return super().score(messages, continuation)
        return self._scores[continuation]
