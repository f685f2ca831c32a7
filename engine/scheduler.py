"""Continuous batching for concurrent callers: one engine thread, many asyncio requests.

The engine (and torch) is touched only by its own thread. Callers validate and enqueue from the event loop;
the thread moves new requests into the engine between decode steps, so a request joins the running batch at
the next step and leaves it the moment it finishes. Events flow back through `loop.call_soon_threadsafe` into
one asyncio.Queue per request. A bounded queue turns overload into `QueueFull` (HTTP 429), never into delay
without limit.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from engine.generate import Engine, Event, Request
from engine.sampling import SamplingParams


class QueueFull(RuntimeError):
    pass


@dataclass
class Metrics:
    requests_total: int = 0
    requests_rejected: int = 0
    prompt_tokens_total: int = 0
    completion_tokens_total: int = 0
    started: float = field(default_factory=time.time)


class Scheduler:
    def __init__(self, engine: Engine, max_queue: int = 64):
        self.engine = engine
        self.max_queue = max_queue
        self.metrics = Metrics()
        self._incoming: deque[Request] = deque()
        self._wake = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)
        self._thread.start()

    # --- caller side (event loop) ----------------------------------------------------------------------

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> tuple[Request, asyncio.Queue]:
        """Validate and enqueue; raises ValueError / ContextLengthError / QueueFull before anything runs."""
        clamp = self.engine.check(prompt_ids, params)
        if params.n > self.engine.max_batch:
            raise ValueError(
                f"n must be at most the engine's batch size {self.engine.max_batch}, got {params.n}"
            )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()
        request = Request(
            prompt_ids, params, lambda event: loop.call_soon_threadsafe(queue.put_nowait, event)
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
        return len(self._incoming) + len(self.engine.waiting)

    def snapshot(self) -> dict:
        engine = self.engine
        return {
            "requests_total": self.metrics.requests_total,
            "requests_rejected": self.metrics.requests_rejected,
            "prompt_tokens_total": engine.stats["prompt_tokens"],
            "completion_tokens_total": engine.stats["completion_tokens"],
            "running_sequences": engine.running,
            "queued_requests": self.queued() + (1 if engine.prefill else 0),
            "batch_size": engine.last_batch_size,
            "max_batch": engine.max_batch,
            "decode_steps": engine.stats["decode_steps"],
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
                    request.error = exc
                    request.done = True
                    request.emit(Event("done", finish_reason="error", text=str(exc)))
            try:
                self.engine.step()
            except Exception as exc:  # a bug must not kill the thread silently: fail the running requests
                self._fail_all(exc)

    def _fail_all(self, exc: Exception) -> None:
        for request in {seq.request for seq in self.engine.rows} | set(self.engine.waiting):
            request.error = exc
            request.cancel()
            request.done = True
            request.emit(Event("done", finish_reason="error", text=str(exc)))
        self.engine.waiting.clear()
        self.engine.rows.clear()
        self.engine.groups.clear()
        self.engine.prefill = None
