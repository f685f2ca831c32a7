"""Admission and queueing: which requests may run, in which order, and the engine thread that runs them.

`admit` refuses a bad request before anything runs (an `EngineError` naming the parameter; a prompt longer than
the window is a `ContextLengthError`) and clamps `max_new_tokens` to the room left in the window; `fit_memory`
does the same against the KV cache's blocks. `WaitingQueue` is first come, first served: the head request
starts only when the batch has rows for all its sequences and the pool has blocks for its prompt (see
engine/prefill.py), and nothing overtakes it (no starvation of wide requests); preempted requests go back to
its head. `Scheduler` serves concurrent asyncio callers from one
engine thread: the engine (and torch) is touched only by that thread; callers validate and enqueue from the
event loop; the thread moves new requests into the engine between decode steps, so a request joins the running
batch at the next step and leaves it the moment it finishes. Events flow back through
`loop.call_soon_threadsafe` into one asyncio.Queue per request. The bounded queue turns overload into
`QueueFull` (HTTP 429), never into delay without limit.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import ContextLengthError, EngineError, QueueFull
from engine.request import Event, Request
from engine.sampling import SamplingParams

if TYPE_CHECKING:
    from engine.generate import Engine

DEFAULT_MAX_QUEUE = 64
log = logging.getLogger(__name__)

__all__ = ["QueueFull", "Scheduler", "WaitingQueue", "admit", "fit_memory", "DEFAULT_MAX_QUEUE"]


def admit(
    prompt_ids: list[int], params: SamplingParams, vocab: int, window: int, max_batch: int
) -> int | None:
    """Validate a request; returns the clamped max_new_tokens if the window forced a clamp."""
    params.validate()
    if len(prompt_ids) == 0:
        raise EngineError("the prompt is empty", param="prompt")
    bad = next((t for t in prompt_ids if not 0 <= t < vocab), None)
    if bad is not None:
        raise EngineError(f"token id {bad} is outside the vocabulary of {vocab}", param="prompt")
    bad = next((t for t in params.stop_token_ids if not 0 <= t < vocab), None)
    if bad is not None:
        raise EngineError(f"stop token id {bad} is outside the vocabulary of {vocab}", param="stop_token_ids")
    if len(prompt_ids) > window or (len(prompt_ids) == window and params.max_new_tokens > 0):
        raise ContextLengthError(len(prompt_ids), window)
    if params.n > max_batch:
        raise EngineError(f"n must be at most the engine's batch size {max_batch}, got {params.n}", param="n")
    room = window - len(prompt_ids)
    if params.max_new_tokens > room:
        return room
    return None


def fit_memory(prompt_tokens: int, params: SamplingParams, blocks: int, block_size: int) -> int | None:
    """A request must fit the KV cache alone: its prompt, else a 400 naming `prompt`; its output, else clamped
    (returns the clamped max_new_tokens). Each of its n rows may grow apart from the others."""
    capacity = blocks * block_size
    if prompt_tokens + 1 > capacity:
        raise EngineError(
            f"the prompt has {prompt_tokens} tokens but the KV cache holds {capacity} ({blocks} blocks of "
            f"{block_size}); start the engine with more KV memory",
            param="prompt",
            code="kv_cache_exceeded",
        )
    shared = (prompt_tokens // block_size) * block_size  # full prompt blocks are shared by the n rows
    room = block_size * ((blocks - shared // block_size) // params.n) - (prompt_tokens - shared)
    if room < 1:
        raise EngineError(
            f"{params.n} sequences of a {prompt_tokens}-token prompt do not fit the KV cache ({blocks} blocks of "
            f"{block_size})",
            param="n",
            code="kv_cache_exceeded",
        )
    if params.max_new_tokens > room:
        return room
    return None


class WaitingQueue:
    """Work waiting for its prefill, first come first served: new requests, and (at the head) preempted ones."""

    def __init__(self) -> None:
        self.items: deque[Any] = deque()  # Request, or engine.prefill.Prefill for a preempted request

    def __len__(self) -> int:
        return len(self.items)

    def push(self, request: Request) -> None:
        self.items.append(request)

    def push_front(self, job: Any) -> None:
        self.items.appendleft(job)

    def head(self, free_rows: int) -> Any | None:
        """The head item if the batch has rows for it (it stays queued); cancelled ones are finished on the way."""
        while self.items:
            item = self.items[0]
            request = item if isinstance(item, Request) else item.request
            if request.cancelled:
                self.items.popleft()
                if isinstance(item, Request):
                    request.finish([])
                else:
                    _end_preempted(item)
                continue
            if rows_for(item) > free_rows:
                return None  # wait for rows to free up; nothing overtakes the head
            return item
        return None

    def pop(self) -> Any:
        return self.items.popleft()

    def clear(self) -> list[Request]:
        requests = [item if isinstance(item, Request) else item.request for item in self.items]
        self.items.clear()
        return requests


def rows_for(item: Any) -> int:
    """The batch rows a queued item takes once prefilled: a request's n (none if it generates nothing), or a
    preempted request's sequences."""
    if isinstance(item, Request):
        return 0 if item.params.max_new_tokens == 0 else item.params.n
    return len(item.resume)


def _end_preempted(job: Any) -> None:
    """A preempted request cancelled while it waited: its sequences end as cancelled."""
    request = job.request
    request.done = True
    for sequence in job.resume:
        request.emit(Event("done", sequence.index, finish_reason="cancelled"))


@dataclass
class Metrics:
    requests_total: int = 0
    requests_rejected: int = 0
    started: float = field(default_factory=time.time)


class Scheduler:
    def __init__(self, engine: Engine, max_queue: int = DEFAULT_MAX_QUEUE):
        self.engine = engine
        self.max_queue = max_queue
        self.metrics = Metrics()
        self._incoming: deque[Request] = deque()
        self._wake = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)
        self._thread.start()

    # --- caller side (event loop) ----------------------------------------------------------------------

    def submit(
        self, prompt_ids: list[int], params: SamplingParams, constraint: Any | None = None
    ) -> tuple[Request, asyncio.Queue]:
        """Validate and enqueue; raises EngineError / ContextLengthError / QueueFull before anything runs."""
        clamp = self.engine.check(prompt_ids, params)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()
        request = Request(
            prompt_ids, params, lambda event: loop.call_soon_threadsafe(queue.put_nowait, event), constraint
        )
        if clamp is not None:
            request.max_tokens_clamped_to = clamp
        with self._wake:
            if self.queued() >= self.max_queue:
                self.metrics.requests_rejected += 1
                raise QueueFull(f"the request queue is full ({self.max_queue} waiting); retry later")
            self._incoming.append(request)
            self.metrics.requests_total += 1
            self._wake.notify()
        return request, queue

    def queued(self) -> int:
        return len(self._incoming) + len(self.engine.queue)

    def snapshot(self) -> dict:
        engine = self.engine
        return {
            "requests_total": self.metrics.requests_total,
            "requests_rejected": self.metrics.requests_rejected,
            "prompt_tokens_total": engine.stats["prompt_tokens"],
            "completion_tokens_total": engine.stats["completion_tokens"],
            "running_sequences": engine.running,
            "queued_requests": self.queued() + (1 if engine.prefill else 0),
            "batch_size": engine.batch.last_size,
            "max_batch": engine.max_batch,
            "decode_steps": engine.stats["decode_steps"],
            "prefill_forwards_total": engine.stats["prefill_chunks"],
            "prompts_batched_total": engine.stats["prompts_batched"],
            "preemptions": engine.stats["preemptions"],
            "draft_tokens_total": engine.stats["draft_tokens"],
            "accepted_draft_tokens_total": engine.stats["accepted_tokens"],
            **engine.blocks.snapshot(),
            "uptime_s": round(time.time() - self.metrics.started, 1),
        }

    def close(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._thread.join(timeout=10)

    # --- engine thread ---------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._stop and not self._incoming and not self.engine.has_work():
                    self._wake.wait()
                if self._stop:
                    return
                incoming = list(self._incoming)
                self._incoming.clear()
            for request in incoming:
                try:
                    self.engine.submit(request)
                except Exception as exc:  # validated already; anything left is reported to the caller
                    self._fail(request, exc)
            try:
                self.engine.step()
            except Exception as exc:  # a bug must not kill the thread silently: fail the running requests
                log.exception("engine step failed; failing every queued and running request")
                for request in self.engine.abort():
                    self._fail(request, exc)

    @staticmethod
    def _fail(request: Request, exc: Exception) -> None:
        request.error = exc
        request.cancel()
        request.done = True
        request.emit(Event("done", finish_reason="error", text=str(exc)))
