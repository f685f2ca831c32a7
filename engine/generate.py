"""The engine: token ids in, token ids, text and log-probabilities out (it never sees chat messages or HTTP).

`Engine` owns the model and the paged KV cache (engine/kv.py: a pool of blocks in fp32, bf16 or int8, and the
prefix cache over them). Admitted requests wait in a first-come queue (engine/scheduler.py); one at a time is
prefilled in chunks (engine/prefill.py: reusing the cached blocks of its longest known prefix, so a long shared
system prompt is computed once), so a long prompt never blocks the running streams for more than one chunk; its
rows then join the decode batch (engine/batch.py), sharing the prompt's blocks (n samples, the beam width).
Every `step()` runs at most one prefill chunk and one decode forward for all running rows together. When the
pool runs out of blocks, the newest work is preempted and recomputed later (`free_memory`).
Single-request helpers (`generate`, `score`, `perplexity`) drive the same loop.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from engine.batch import DecodeBatch, token_logprob
from engine.constraints import ConstraintSpec, Grammar, GrammarTokenizer, compile_grammar
from engine.errors import ContextLengthError, EngineError
from engine.fused import fuse
from engine.kv import BlockManager, BlockTable, KVPool
from engine.kv_options import (
    BLOCK_SIZES,
    DEFAULT_BLOCK_SIZE,
    DEFAULT_DRAFT_TOKENS,
    DEFAULT_KV_DTYPE,
    DEFAULT_KV_MEMORY_MB,
    KV_DTYPE_NAMES,
)
from engine.model import Transformer
from engine.prefill import Prefill, resume_ids, run_chunk, try_start
from engine.request import Choice, Event, Request, Sequence, TokenLogprob
from engine.sampling import SamplingParams
from engine.scheduler import WaitingQueue, admit, fit_memory, rows_for
from engine.speculative import rows_exact

__all__ = [
    "Choice",
    "ContextLengthError",
    "Engine",
    "EngineError",
    "Event",
    "Request",
    "Sequence",
    "TokenLogprob",
    "generate",
    "perplexity",
    "score",
]

DATA_DIR = Path(__file__).resolve().parent / "data"
CALIBRATION_TEXT = DATA_DIR / "calibration.txt"  # SmoothQuant's activation statistics
PERPLEXITY_TEXT = DATA_DIR / "perplexity.txt"  # the fixed text every method's perplexity is measured on
PREFILL_CHUNK = 256
DEFAULT_MAX_BATCH = 16


class Engine:
    def __init__(
        self,
        model: Transformer,
        tokenizer: Any,
        max_batch: int = DEFAULT_MAX_BATCH,
        prefill_chunk: int = PREFILL_CHUNK,
        name: str = "model",
        method: str = "none",
        kv_dtype: str = DEFAULT_KV_DTYPE,
        block_size: int = DEFAULT_BLOCK_SIZE,
        kv_blocks: int | None = None,
        kv_memory_mb: int | None = None,
        prefix_cache: bool = True,
        draft_tokens: int | None = None,
    ):
        if block_size not in BLOCK_SIZES:
            raise ValueError(f"KV block size must be one of {BLOCK_SIZES}, got {block_size}")
        self.model, self.tokenizer = model, tokenizer
        if model.fused is None:
            model.fused = fuse(model)
        self.name, self.method = name, method
        self.max_batch, self.prefill_chunk = max_batch, prefill_chunk
        self.window = model.args.max_seq_len
        self.eos_ids = set(model.args.eos_token_ids)
        if getattr(tokenizer, "eos_token_id", None) is not None:
            self.eos_ids.add(tokenizer.eos_token_id)
        self.pool = _pool(model, kv_dtype, block_size, kv_blocks, kv_memory_mb, max_batch)
        self.blocks = BlockManager(
            self.pool.num_blocks, block_size, f"{name}@{method}@{kv_dtype}", prefix_cache
        )
        self.stats = {
            "requests": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "steps": 0,
            "prefill_chunks": 0,
            "prompts_batched": 0,
            "decode_steps": 0,
            "preemptions": 0,
            "draft_tokens": 0,
            "accepted_tokens": 0,
        }
        self.queue = WaitingQueue()
        self.exact = rows_exact(model, self.pool)
        if draft_tokens is None:  # speculate by default wherever the output stays exactly plain greedy's
            draft_tokens = DEFAULT_DRAFT_TOKENS if self.exact else 0
        self.batch = DecodeBatch(
            model, tokenizer, self.pool, self.blocks, self.eos_ids, self.stats, draft_tokens
        )
        self.batch.free_memory = self.free_memory
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
        calibration = (
            calibration_ids(loaded.tokenizer) if method.name in ("smoothquant", "gptq", "awq") else None
        )
        quantize(model, method, calibration_ids=calibration, cache_key=loaded.name)
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
            "kv_dtype": self.pool.kv_dtype,
            "kv_bytes_per_token": self.pool.bytes_per_token(),
            "kv_bytes_per_token_by_dtype": kv_bytes_by_dtype(self.model),
            "kv_block_size": self.pool.block_size,
            "kv_blocks": self.pool.num_blocks,
            "kv_cache_bytes": self.pool.num_blocks * self.pool.block_bytes(),
            "prefix_caching": self.blocks.caching,
            "context_window": self.window,
            "max_batch": self.max_batch,
            "draft_tokens": self.batch.draft_tokens,
        }

    # --- admission ---------------------------------------------------------------------------------------

    def check(self, prompt_ids: list[int], params: SamplingParams) -> int | None:
        """Validate a request (EngineError naming the parameter); returns the clamped max_new_tokens, if any."""
        clamp = admit(prompt_ids, params, self.model.args.vocab_size, self.window, self.max_batch)
        wanted = params.max_new_tokens if clamp is None else clamp
        probe = SamplingParams(max_new_tokens=wanted, n=params.n)
        memory = fit_memory(len(prompt_ids), probe, self.pool.num_blocks, self.pool.block_size)
        return memory if memory is not None else clamp

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
        self.blocks.reset()
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
            self.prefill = self._next_job()
        job = self.prefill
        if job is None or (not job.table.blocks and not try_start(job, self.blocks, len(self.batch.rows))):
            return
        offset = job.offset
        riders = self._riders(job)
        done = run_chunk(self.model, self.pool, self.blocks, [job, *riders], self.prefill_chunk)
        self.stats["prefill_chunks"] += 1
        self.stats["prompts_batched"] += len(riders)
        if job.want_all_logits:
            self._prompt_logprobs(job.request, offset, job.last_logits)
        if done[0]:
            self.prefill = None
            self._prefilled(job)
        for rider in riders:  # whole prompts: all done
            self._prefilled(rider)

    def _riders(self, job: Prefill) -> list[Prefill]:
        """Queued prompts that fit whole in what `job` leaves of this step's chunk, started to be computed in the
        same forward, so a burst of requests starts together rather than one per step. Only where a token's
        computation never depends on the call's other tokens (`rows_exact`): their caches, first tokens and
        everything after are then bit for bit what each gets prefilled alone."""
        if not self.exact or job.want_all_logits or job.resume is not None:
            return []
        budget = self.prefill_chunk - (len(job.ids) - job.offset)
        rows = len(self.batch.rows) + rows_for(job.request)
        riders: list[Prefill] = []
        while True:
            item = self.queue.head(self.max_batch - rows)
            if not isinstance(item, Request) or len(item.prompt_ids) > budget:
                return riders  # a preempted request's recomputation, or a prompt that may not fit, waits
            rider = Prefill(item, item.prompt_ids)
            if rider.want_all_logits or not try_start(rider, self.blocks, rows):
                return riders
            self.queue.pop()
            riders.append(rider)
            rows += rows_for(item)
            budget -= len(rider.ids) - rider.offset

    def _next_job(self) -> Prefill | None:
        """The queue's head as a started job, if the batch has rows and the pool has blocks for it."""
        item = self.queue.head(self.max_batch - len(self.batch.rows))
        if item is None:
            return None
        job = item if isinstance(item, Prefill) else Prefill(item, item.prompt_ids)
        if not try_start(job, self.blocks, len(self.batch.rows)):
            return None
        self.queue.pop()
        if job.want_all_logits:
            job.request.prompt_logprobs = [None]
        return job

    def _prompt_logprobs(self, request: Request, offset: int, logits: torch.Tensor) -> None:
        """Log-probability of each prompt token given the ones before it. logits: [S, V] for this chunk."""
        ids = request.prompt_ids
        logprobs = torch.log_softmax(logits.float(), -1)
        for i in range(logprobs.shape[0]):
            target = offset + i + 1
            if target < len(ids):
                request.prompt_logprobs.append(
                    token_logprob(logprobs[i], ids[target], request.params.prompt_logprobs)
                )

    def _prefilled(self, job: Prefill) -> None:
        request = job.request
        if job.resume is not None:
            job.done_tables.append(job.table)
            if len(job.done_tables) < len(job.resume):  # the next preempted sequence of this request
                job.ids, job.table, job.offset = resume_ids(job.resume[len(job.done_tables)]), BlockTable(), 0
                self.prefill = job
            else:
                self.batch.rejoin(request, job.resume, job.done_tables)
            return
        if request.params.max_new_tokens == 0:
            job.table.release(self.blocks)
            request.finish([Choice(i, [], "", "length") for i in range(request.params.n)])
            return
        self.batch.start(request, job.last_logits[-1], job.table)

    def free_memory(self, needy: Sequence) -> None:
        """Free blocks for a running row: first the job being prefilled, else the newest request (perhaps the
        row's own); their work goes back to the head of the queue and is recomputed when it fits."""
        job = self.prefill
        if job is not None and (job.table.blocks or job.done_tables):
            for table in [job.table, *job.done_tables]:
                table.release(self.blocks)
            self.prefill = None
            if job.resume is not None:
                self.queue.push_front(Prefill(job.request, resume_ids(job.resume[0]), resume=job.resume))
            else:
                self.queue.push_front(job.request)
            self.stats["preemptions"] += 1
            return
        others = [s.request for s in self.batch.rows if s.request is not needy.request]
        victim = max(others, key=lambda r: r.started) if others else needy.request
        sequences = self.batch.evict(victim)
        self.queue.push_front(Prefill(victim, resume_ids(sequences[0]), resume=sequences))

    def _drop_cancelled(self) -> None:
        self.batch.drop_cancelled()
        if self.prefill and self.prefill.request.cancelled:
            job = self.prefill
            for table in [job.table, *job.done_tables]:
                table.release(self.blocks)
            job.request.finish([])
            self.prefill = None


def calibration_ids(tokenizer: Any) -> torch.Tensor:
    """The shipped calibration text's tokens (SmoothQuant's statistics, GPTQ's Hessians, AWQ's scales)."""
    return torch.tensor(tokenizer(CALIBRATION_TEXT.read_text(encoding="utf-8"))["input_ids"])


def kv_bytes_by_dtype(model: Transformer) -> dict[str, int]:
    """Bytes per cached token under each KV dtype (what `--kv-dtype` would give), for memory planning."""
    a = model.args
    return {
        name: KVPool(a.n_layers, a.n_kv_heads, a.head_dim, 0, DEFAULT_BLOCK_SIZE, name).bytes_per_token()
        for name in KV_DTYPE_NAMES
    }


def _pool(
    model: Transformer,
    kv_dtype: str,
    block_size: int,
    kv_blocks: int | None,
    kv_memory_mb: int | None,
    max_batch: int,
) -> KVPool:
    """The block pool: `kv_blocks` if given, else as many as `kv_memory_mb` holds, never more than max_batch + 1
    sequences of a full window need."""
    a = model.args
    probe = KVPool(a.n_layers, a.n_kv_heads, a.head_dim, 0, block_size, kv_dtype)
    if kv_blocks is None:
        budget = (kv_memory_mb or DEFAULT_KV_MEMORY_MB) * 2**20 // probe.block_bytes()
        kv_blocks = max(1, min(budget, (max_batch + 1) * -(-a.max_seq_len // block_size)))
    return KVPool(a.n_layers, a.n_kv_heads, a.head_dim, kv_blocks, block_size, kv_dtype)


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
