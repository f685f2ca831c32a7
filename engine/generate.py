"""The engine: token ids in, token ids, text and log-probabilities out (it never sees chat messages or HTTP).

`Engine` owns the model and one KV cache of `max_batch` decode rows plus one prefill row. Admitted requests
wait in a first-come queue (engine/scheduler.py); one at a time is prefilled into the prefill row in chunks (so
a long prompt never blocks the running streams for more than one chunk), then copied into as many decode rows
as it needs (n samples, or the beam width: one prefill shared by all) of the decode batch (engine/batch.py).
Every `step()` runs at most one prefill chunk and one decode forward for all running rows together.
Single-request helpers (`generate`, `score`, `perplexity`) drive the same loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.batch import DecodeBatch, token_logprob
from engine.constraints import ConstraintSpec, Grammar, GrammarTokenizer, compile_grammar
from engine.errors import ContextLengthError, EngineError
from engine.model import KVCache, Transformer
from engine.request import Choice, Event, Request, Sequence, TokenLogprob
from engine.sampling import SamplingParams
from engine.scheduler import WaitingQueue, admit

__all__ = [
    "Choice", "ContextLengthError", "Engine", "EngineError", "Event", "Request", "Sequence", "TokenLogprob",
    "generate", "perplexity", "score",
]  # fmt: skip

DATA_DIR = Path(__file__).resolve().parent / "data"
CALIBRATION_TEXT = DATA_DIR / "calibration.txt"  # SmoothQuant's activation statistics
PERPLEXITY_TEXT = DATA_DIR / "perplexity.txt"  # the fixed text every method's perplexity is measured on
PREFILL_CHUNK = 256
DEFAULT_MAX_BATCH = 16


@dataclass
class Prefill:
    request: Request
    offset: int = 0
    last_logits: torch.Tensor | None = None


class Engine:
    def __init__(
        self,
        model: Transformer,
        tokenizer: Any,
        max_batch: int = DEFAULT_MAX_BATCH,
        prefill_chunk: int = PREFILL_CHUNK,
        name: str = "model",
        method: str = "none",
    ):
        self.model, self.tokenizer = model, tokenizer
        self.name, self.method = name, method
        self.max_batch, self.prefill_chunk = max_batch, prefill_chunk
        self.window = model.args.max_seq_len
        self.eos_ids = set(model.args.eos_token_ids)
        if getattr(tokenizer, "eos_token_id", None) is not None:
            self.eos_ids.add(tokenizer.eos_token_id)
        self.cache = KVCache(model.args, rows=max_batch + 1, capacity=256)
        self.prefill_row = max_batch
        self.stats = {
            "requests": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "steps": 0,
            "prefill_chunks": 0,
            "decode_steps": 0,
        }
        self.queue = WaitingQueue()
        self.batch = DecodeBatch(model, tokenizer, self.cache, self.eos_ids, self.stats)
        self.prefill: Prefill | None = None
        self.grammar_tokens = GrammarTokenizer(tokenizer, model.args.vocab_size, self.eos_ids)

    @classmethod
    def load(
        cls, name_or_path: str, quant: str = "none", max_batch: int = DEFAULT_MAX_BATCH, **kwargs: Any
    ) -> Engine:
        """Load a model by name or path, quantize it with our code, and wrap it in an engine."""
        from engine.loader import load
        from engine.model import build_model
        from engine.quantize import parse_method, quantize

        method = parse_method(quant)  # a wrong method name fails before the slow load
        loaded = load(name_or_path)
        model = build_model(loaded.config, loaded.state_dict)
        calibration = None
        if method.name == "smoothquant":
            calibration = torch.tensor(
                loaded.tokenizer(CALIBRATION_TEXT.read_text(encoding="utf-8"))["input_ids"]
            )
        quantize(model, method, calibration_ids=calibration)
        return cls(
            model, loaded.tokenizer, max_batch=max_batch, name=loaded.name, method=method.label, **kwargs
        )

    def info(self) -> dict[str, Any]:
        """Sizes a client can show: linear weight bytes, bits per parameter, KV cache bytes per token."""
        from engine.quantize import linear_weight_bytes, resident_weight_bytes

        weight_bytes, params = linear_weight_bytes(self.model)
        return {
            "weight_bytes": weight_bytes,
            "bits_per_param": weight_bytes * 8 / params,
            "linear_params": params,
            "resident_bytes": resident_weight_bytes(self.model),
            "kv_bytes_per_token": self.cache.bytes_per_token(),
            "context_window": self.window,
            "max_batch": self.max_batch,
        }

    # --- admission ---------------------------------------------------------------------------------------

    def check(self, prompt_ids: list[int], params: SamplingParams) -> int | None:
        """Validate a request (EngineError naming the parameter); returns the clamped max_new_tokens, if any."""
        return admit(prompt_ids, params, self.model.args.vocab_size, self.window, self.max_batch)

    def constrain(self, spec: ConstraintSpec) -> Grammar:
        """Compile an output constraint for requests to this engine (EngineError naming `spec.param`)."""
        return compile_grammar(self.grammar_tokens, spec)

    def submit(self, request: Request) -> Request:
        clamp = self.check(request.prompt_ids, request.params)
        if clamp is not None:
            request.max_tokens_clamped_to = clamp
            request.params.max_new_tokens = clamp
        self.stats["requests"] += 1
        self.stats["prompt_tokens"] += len(request.prompt_ids)
        self.queue.push(request)
        return request

    def has_work(self) -> bool:
        return bool(self.batch.rows or self.queue or self.prefill)

    @property
    def running(self) -> int:
        return len(self.batch.rows)

    @property
    def rows(self) -> list[Sequence]:
        return self.batch.rows

    def abort(self) -> list[Request]:
        """Drop everything queued, prefilling or running (after a failure); returns the requests dropped."""
        dropped = set(self.batch.clear()) | set(self.queue.clear())
        if self.prefill is not None:
            dropped.add(self.prefill.request)
            self.prefill = None
        return list(dropped)

    # --- the loop ----------------------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> None:
        """One scheduling iteration: at most one prefill chunk, then one decode step for all running rows."""
        self._drop_cancelled()
        self._prefill_chunk()
        if self.batch.rows:
            self.batch.decode()
        self.stats["steps"] += 1

    def run(self) -> None:
        while self.has_work():
            self.step()

    def _prefill_chunk(self) -> None:
        if self.prefill is None:
            request = self.queue.next_fitting(self.max_batch - len(self.batch.rows))
            if request is None:
                return
            self.prefill = Prefill(request)
            if request.params.prompt_logprobs is not None:
                request.prompt_logprobs = [None]
        job = self.prefill
        request = job.request
        ids = request.prompt_ids
        end = min(job.offset + self.prefill_chunk, len(ids))
        chunk = torch.tensor([ids[job.offset : end]])  # [1, S]
        positions = torch.arange(job.offset, end)[None]  # [1, S]
        want_all = request.params.prompt_logprobs is not None
        row = slice(self.prefill_row, self.prefill_row + 1)
        logits = self.model(chunk, positions, self.cache, row, logits_for="all" if want_all else "last")
        self.stats["prefill_chunks"] += 1
        if want_all:
            self._prompt_logprobs(job, logits[0])  # logits: [1, S, V]
            job.last_logits = logits[0, -1]
        else:
            job.last_logits = logits[0]  # logits: [1, V]
        job.offset = end
        if end == len(ids):
            self.prefill = None
            self._start(request, job.last_logits)

    def _prompt_logprobs(self, job: Prefill, logits: torch.Tensor) -> None:
        """Log-probability of each prompt token given the ones before it. logits: [S, V] for this chunk."""
        request, ids = job.request, job.request.prompt_ids
        logprobs = torch.log_softmax(logits.float(), -1)
        for i in range(logprobs.shape[0]):
            target = job.offset + i + 1
            if target < len(ids):
                request.prompt_logprobs.append(
                    token_logprob(logprobs[i], ids[target], request.params.prompt_logprobs)
                )

    def _start(self, request: Request, logits: torch.Tensor) -> None:
        if request.params.max_new_tokens == 0:
            request.finish([Choice(i, [], "", "length") for i in range(request.params.n)])
            return
        self.batch.start(request, logits, self.prefill_row)

    def _drop_cancelled(self) -> None:
        self.batch.drop_cancelled()
        if self.prefill and self.prefill.request.cancelled:
            self.prefill.request.finish([])
            self.prefill = None


# --- single-request helpers ------------------------------------------------------------------------------


def generate(engine: Engine, prompt_ids: list[int], params: SamplingParams | None = None) -> Request:
    request = engine.submit(Request(prompt_ids, params or SamplingParams()))
    while not request.done:
        engine.step()
    return request


def score(engine: Engine, prompt_ids: list[int], continuation_ids: list[int]) -> list[float]:
    """Log-probabilities of each continuation token given the prompt and the continuation tokens before it."""
    if not continuation_ids:
        return []
    params = SamplingParams(max_new_tokens=0, prompt_logprobs=0)
    request = generate(engine, list(prompt_ids) + list(continuation_ids), params)
    return [lp.logprob for lp in request.prompt_logprobs[len(prompt_ids) :]]


def perplexity(engine: Engine, ids: list[int]) -> float:
    logprobs = score(engine, ids[:1], ids[1:])
    return math.exp(-sum(logprobs) / len(logprobs))
