"""The engine's data: a request, the sequences decoding for it, and what they produce (choices, events).

Plain objects with no torch work: the scheduler creates requests, the batch and beam search fill them, and a
request's listener hears its events (text deltas, then one "done" per choice) from the engine thread.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from engine.sampling import SamplingParams
from engine.tokens import TokenText


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)
    # the end-of-sequence (or stop) token: its entry has empty text, as the answer has none
    end: bool = False


@dataclass
class Choice:
    index: int
    token_ids: list[int]
    text: str
    finish_reason: str  # "stop" | "length" | "cancelled"
    logprobs: list[TokenLogprob] | None = None
    score: float | None = None  # beam search: the length-normalised sequence score


@dataclass
class Event:
    """What a listener hears: a text delta of one choice, or the request's end."""

    kind: str  # "delta" | "done"
    index: int = 0
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None


_request_ids = itertools.count(1)


class Request:
    """One prompt and its sampling parameters; `constraint` (optional) is a compiled output grammar."""

    def __init__(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        listener: Callable[[Event], None] | None = None,
        constraint: Any | None = None,
    ):
        self.id = next(_request_ids)
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.listener = listener
        self.constraint = constraint  # engine.constraints.Grammar: each sequence gets its own matcher
        self.choices: list[Choice] = []
        self.prompt_logprobs: list[TokenLogprob | None] | None = None
        self.max_tokens_clamped_to: int | None = None
        self.cached_tokens = 0  # prompt tokens whose KV came from the prefix cache
        self.cancelled = False
        self.done = False
        self.error: BaseException | None = None
        self.created = time.time()
        self.first_token_at: float | None = None
        self.started = 0  # order in which requests joined the batch: the newest is preempted first

    def emit(self, event: Event) -> None:
        if self.listener is not None:
            self.listener(event)

    def cancel(self) -> None:
        self.cancelled = True

    def finish(self, choices: list[Choice]) -> None:
        """End the request with these choices (none when cancelled before it ran)."""
        self.choices = choices
        self.done = True
        for choice in choices:
            self.emit(Event("done", choice.index, finish_reason=choice.finish_reason))


class Sequence:
    """One sampled continuation (or one beam) living in one decode row, its KV in the blocks of `table`."""

    def __init__(
        self,
        request: Request,
        index: int,
        row: int,
        generator: torch.Generator | None,
        text: TokenText,
        matcher: Any | None = None,
    ):
        self.request, self.index, self.row = request, index, row
        self.table: Any = None  # engine.kv.BlockTable
        self.generator = generator
        self.matcher = matcher  # this row's own constraint state (None: unconstrained)
        self.tokens: list[int] = []
        self.logprobs: list[TokenLogprob] = []
        self.text = text
        self.emitted = 0  # characters of text already sent to the listener
        self.unsent: list[TokenLogprob] = []  # logprobs of tokens whose text is still held back
        self.finished: str | None = None
        self.lookup: Any = None  # engine.speculative.PromptLookup, once the row drafts

    @property
    def cache_length(self) -> int:
        """Tokens in this row's cache; the last generated token is fed at this position."""
        return len(self.request.prompt_ids) + len(self.tokens) - 1

    def all_tokens(self) -> list[int]:
        return self.request.prompt_ids + self.tokens
