"""The decode loop: token ids in, token ids, text and log-probabilities out.

`Engine` owns the model and one KV cache of `max_batch` decode rows plus one prefill row. Requests wait in a
queue; one at a time is prefilled into the prefill row in chunks (so a long prompt never blocks the running
streams for more than one chunk), then copied into as many decode rows as it needs (n samples, or the beam
width: one prefill shared by all). Every `step()` runs one decode forward for all running rows together; a
finished sequence leaves at once and the last row moves into its place, so running rows stay contiguous.
Single-request helpers (`generate`, `score`, `perplexity`) drive the same loop.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.model import KVCache, Transformer
from engine.sampling import SamplingParams, apply_penalties, choose, top_logprobs
from engine.tokens import TokenText

DATA_DIR = Path(__file__).resolve().parent / "data"
CALIBRATION_TEXT = DATA_DIR / "calibration.txt"  # SmoothQuant's activation statistics
PERPLEXITY_TEXT = DATA_DIR / "perplexity.txt"  # the fixed text every method's perplexity is measured on
PREFILL_CHUNK = 256
DEFAULT_MAX_BATCH = 16


class ContextLengthError(ValueError):
    def __init__(self, prompt_tokens: int, window: int):
        self.prompt_tokens, self.window = prompt_tokens, window
        super().__init__(
            f"the prompt has {prompt_tokens} tokens but the model's context window is {window} tokens"
        )


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)


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
    def __init__(
        self, prompt_ids: list[int], params: SamplingParams, listener: Callable[[Event], None] | None = None
    ):
        self.id = next(_request_ids)
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.listener = listener
        self.choices: list[Choice] = []
        self.prompt_logprobs: list[TokenLogprob | None] | None = None
        self.max_tokens_clamped_to: int | None = None
        self.cancelled = False
        self.done = False
        self.error: BaseException | None = None
        self.created = time.time()
        self.first_token_at: float | None = None

    def emit(self, event: Event) -> None:
        if self.listener is not None:
            self.listener(event)

    def cancel(self) -> None:
        self.cancelled = True


class Sequence:
    """One sampled continuation (or one beam) living in one decode row."""

    def __init__(
        self, request: Request, index: int, row: int, generator: torch.Generator | None, text: TokenText
    ):
        self.request, self.index, self.row = request, index, row
        self.generator = generator
        self.tokens: list[int] = []
        self.logprobs: list[TokenLogprob] = []
        self.text = text
        self.emitted = 0  # characters of text already sent to the listener
        self.unsent: list[TokenLogprob] = []  # logprobs of tokens whose text is still held back
        self.finished: str | None = None

    @property
    def cache_length(self) -> int:
        """Tokens in this row's cache; the last generated token is fed at this position."""
        return len(self.request.prompt_ids) + len(self.tokens) - 1


class BeamGroup:
    """transformers' beam search semantics: 2W candidates per step, length-normalised finished hypotheses."""

    def __init__(self, request: Request, beams: list[Sequence]):
        self.request, self.beams = request, beams
        self.width = len(beams)
        self.scores = [0.0] + [-1.0e9] * (self.width - 1)
        self.finished: list[tuple[float, list[int]]] = []
        self.improvable = True


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
        self.rows: list[Sequence] = []  # rows[i] is the sequence in decode row i
        self.groups: dict[int, BeamGroup] = {}
        self.waiting: deque[Request] = deque()
        self.last_batch_size = 0
        self.prefill: Prefill | None = None
        self.stats = {
            "requests": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "steps": 0,
            "prefill_chunks": 0,
            "decode_steps": 0,
        }

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
        """Validate a request; returns the clamped max_new_tokens if the window forced a clamp."""
        params.validate()
        if len(prompt_ids) == 0:
            raise ValueError("the prompt is empty")
        vocab = self.model.args.vocab_size
        bad = next((t for t in prompt_ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise ValueError(f"token id {bad} is outside the vocabulary of {vocab}")
        if len(prompt_ids) > self.window or (len(prompt_ids) == self.window and params.max_new_tokens > 0):
            raise ContextLengthError(len(prompt_ids), self.window)
        room = self.window - len(prompt_ids)
        if params.max_new_tokens > room:
            return room
        return None

    def submit(self, request: Request) -> Request:
        clamp = self.check(request.prompt_ids, request.params)
        if clamp is not None:
            request.max_tokens_clamped_to = clamp
            request.params.max_new_tokens = clamp
        if request.params.n > self.max_batch:
            raise ValueError(
                f"n must be at most the engine's batch size {self.max_batch}, got {request.params.n}"
            )
        self.stats["requests"] += 1
        self.stats["prompt_tokens"] += len(request.prompt_ids)
        self.waiting.append(request)
        return request

    def has_work(self) -> bool:
        return bool(self.rows or self.waiting or self.prefill)

    @property
    def running(self) -> int:
        return len(self.rows)

    # --- the loop ----------------------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> None:
        """One scheduling iteration: at most one prefill chunk, then one decode step for all running rows."""
        self._drop_cancelled()
        self._prefill_chunk()
        if self.rows:
            self._decode()
        self.stats["steps"] += 1

    def run(self) -> None:
        while self.has_work():
            self.step()

    def _prefill_chunk(self) -> None:
        if self.prefill is None:
            while self.waiting:
                request = self.waiting[0]
                if request.cancelled:
                    self.waiting.popleft()
                    self._finish_request(request, [])
                    continue
                need = 0 if request.params.max_new_tokens == 0 else request.params.n
                if len(self.rows) + need > self.max_batch:
                    return  # wait for rows to free up
                self.waiting.popleft()
                self.prefill = Prefill(request)
                if request.params.prompt_logprobs is not None:
                    request.prompt_logprobs = [None]
                break
        if self.prefill is None:
            return
        job = self.prefill
        request = job.request
        ids = request.prompt_ids
        end = min(job.offset + self.prefill_chunk, len(ids))
        chunk = torch.tensor([ids[job.offset : end]])
        positions = torch.arange(job.offset, end)[None]
        want_all = request.params.prompt_logprobs is not None
        row = slice(self.prefill_row, self.prefill_row + 1)
        logits = self.model(chunk, positions, self.cache, row, logits_for="all" if want_all else "last")
        self.stats["prefill_chunks"] += 1
        if want_all:
            logprobs = torch.log_softmax(logits[0].float(), -1)
            for i in range(logprobs.shape[0]):
                target = job.offset + i + 1
                if target < len(ids):
                    request.prompt_logprobs.append(
                        self._logprob(logprobs[i], ids[target], request.params.prompt_logprobs)
                    )
            job.last_logits = logits[0, -1]
        else:
            job.last_logits = logits[0]
        job.offset = end
        if end == len(ids):
            self.prefill = None
            self._start(request, job.last_logits)

    def _start(self, request: Request, logits: torch.Tensor) -> None:
        """Copy the prefill row into the request's decode rows and choose each first token."""
        params = request.params
        if params.max_new_tokens == 0:
            self._finish_request(request, [Choice(i, [], "", "length") for i in range(params.n)])
            return
        first = len(self.rows)
        width = params.n
        new_rows = list(range(first, first + width))
        self.cache.copy_rows([self.prefill_row] * width, new_rows, len(request.prompt_ids))
        seed = params.seed if params.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
        beams = []
        for index, row in enumerate(new_rows):
            generator = None
            if not params.greedy and not params.use_beam_search:
                generator = torch.Generator().manual_seed(seed + index)
            sequence = Sequence(
                request, index, row, generator, TokenText(self.tokenizer, params.skip_special_tokens)
            )
            self.rows.append(sequence)
            beams.append(sequence)
        if params.use_beam_search:
            group = BeamGroup(request, beams)
            self.groups[request.id] = group
            self._beam_step(group, logits.unsqueeze(0).expand(width, -1))
        else:
            for sequence in beams:
                self._sample_next(sequence, logits)
        request.first_token_at = time.time()
        self._compact()

    def _decode(self) -> None:
        batch = len(self.rows)
        self.last_batch_size = batch
        tokens = torch.tensor([[seq.tokens[-1]] for seq in self.rows])
        positions = torch.tensor([[seq.cache_length] for seq in self.rows])
        logits = self.model(tokens, positions, self.cache, slice(0, batch), logits_for="last")
        self.stats["decode_steps"] += 1
        seen_groups = set()
        for row, sequence in enumerate(list(self.rows)):
            if sequence.finished:
                continue
            if sequence.request.params.use_beam_search:
                group = self.groups[sequence.request.id]
                if group.request.id not in seen_groups:
                    seen_groups.add(group.request.id)
                    self._beam_step(group, logits[[b.row for b in group.beams]])
            else:
                self._sample_next(sequence, logits[row])
        self._compact()

    # --- sampling ----------------------------------------------------------------------------------------

    def _sample_next(self, sequence: Sequence, logits: torch.Tensor) -> None:
        request, params = sequence.request, sequence.request.params
        raw = logits.float()
        processed = raw
        if params.has_penalties:
            out = torch.tensor(sequence.tokens, dtype=torch.long)
            seen = torch.tensor(request.prompt_ids + sequence.tokens, dtype=torch.long)
            processed = apply_penalties(raw, params, seen, out)
        banned = self._banned(params, len(sequence.tokens))
        if banned:
            processed = processed.clone()
            processed[banned] = float("-inf")
        token = choose(processed, params, sequence.generator)
        sequence.tokens.append(token)
        entry = None
        if params.logprobs is not None:
            entry = self._logprob(torch.log_softmax(raw, -1), token, params.logprobs)
        self.stats["completion_tokens"] += 1
        self._after_token(sequence, entry)

    def _banned(self, params: SamplingParams, generated: int) -> list[int]:
        """Before min_tokens, neither EOS nor the stop token ids may be chosen."""
        if generated >= params.min_tokens:
            return []
        return sorted(({*self.eos_ids} if not params.ignore_eos else set()) | set(params.stop_token_ids))

    def _is_stop_token(self, params: SamplingParams, token: int, generated: int) -> bool:
        if generated < params.min_tokens:
            return False
        return (token in self.eos_ids and not params.ignore_eos) or token in params.stop_token_ids

    def _after_token(self, sequence: Sequence, entry: TokenLogprob | None = None) -> None:
        params = sequence.request.params
        token = sequence.tokens[-1]
        if self._is_stop_token(params, token, len(sequence.tokens) - 1):
            sequence.finished = "stop"
            entry = None  # like OpenAI, logprobs cover the content only, not the end-of-turn token
        else:
            sequence.text.append(token)
            if entry is not None:
                sequence.logprobs.append(entry)
            if params.stop and len(sequence.tokens) > params.min_tokens:
                cut = sequence.text.find_stop(params.stop)
                if cut is not None:
                    sequence.text.truncate(cut)
                    sequence.finished = "stop"
        if not sequence.finished and len(sequence.tokens) >= params.max_new_tokens:
            sequence.finished = "length"
        if entry is not None:
            sequence.unsent.append(entry)
        self._emit_delta(sequence)

    def _emit_delta(self, sequence: Sequence) -> None:
        params = sequence.request.params
        if params.use_beam_search:
            return  # beams are rearranged every step; their text is sent once, at the end
        hold = 0 if sequence.finished else max((len(s) for s in params.stop), default=1) - 1
        text = sequence.text.stable_text()
        upto = max(sequence.emitted, len(text) - hold)
        if sequence.finished:
            upto = len(sequence.text.text())
            text = sequence.text.text()
        delta = text[sequence.emitted : upto]
        if delta or sequence.finished:
            sequence.request.emit(
                Event("delta", sequence.index, delta, [sequence.tokens[-1]], sequence.unsent)
            )
            sequence.unsent = []
            sequence.emitted = upto
        # "done" is emitted by _compact, once the choice is recorded (usage counts it).

    # --- beam search -------------------------------------------------------------------------------------

    def _beam_step(self, group: BeamGroup, logits: torch.Tensor) -> None:
        request, params, width = group.request, group.request.params, group.width
        logprobs = torch.log_softmax(logits.float(), -1)
        if params.has_penalties:
            logprobs = torch.stack([
                apply_penalties(logprobs[i], params,
                                torch.tensor(request.prompt_ids + b.tokens, dtype=torch.long),
                                torch.tensor(b.tokens, dtype=torch.long))
                for i, b in enumerate(group.beams)
            ])  # fmt: skip
        generated = len(group.beams[0].tokens)  # tokens before this step, equal for all beams
        banned = self._banned(params, generated)
        if banned:
            logprobs[:, banned] = float("-inf")
        vocab = logprobs.shape[-1]
        total = logprobs + torch.tensor(group.scores)[:, None]
        keep = max(2, 1 + len(self.eos_ids)) * width
        cand_scores, cand_ids = torch.topk(total.reshape(-1), keep)
        parents = (cand_ids // vocab).tolist()
        tokens = (cand_ids % vocab).tolist()
        cand_scores = cand_scores.tolist()
        new_len = generated + 1
        hits = [self._is_stop_token(params, t, generated) or new_len >= params.max_new_tokens for t in tokens]

        # Finished hypotheses: only the top `width` candidates may finish, scored with the length penalty.
        blocked = (len(group.finished) >= width and params.early_stopping) or not group.improvable
        if not blocked:
            for rank in range(width):
                if hits[rank]:
                    parent = group.beams[parents[rank]]
                    final = parent.tokens + [tokens[rank]]
                    group.finished.append((cand_scores[rank] / (new_len**params.length_penalty), final))
            group.finished.sort(key=lambda item: item[0], reverse=True)
            del group.finished[width:]

        # Running beams for the next step: the best `width` candidates that did not finish.
        running = sorted(
            range(keep), key=lambda r: cand_scores[r] - (1.0e9 if hits[r] else 0.0), reverse=True
        )[:width]
        old_tokens = [list(b.tokens) for b in group.beams]
        src_rows = [group.beams[parents[r]].row for r in running]
        if generated > 0:
            self.cache.copy_rows(src_rows, [b.row for b in group.beams], len(request.prompt_ids) + generated)
        for beam, r in zip(group.beams, running, strict=True):
            beam.tokens = old_tokens[parents[r]] + [tokens[r]]
        group.scores = [cand_scores[r] - (1.0e9 if hits[r] else 0.0) for r in running]
        self.stats["completion_tokens"] += width

        # transformers' stopping heuristic (early_stopping=False): can the best running beam still win?
        if len(group.finished) >= width:
            best_possible = group.scores[0] / (new_len**params.length_penalty)
            worst_finished = min(score for score, _ in group.finished)
            group.improvable = group.improvable and best_possible > worst_finished
        all_done = len(group.finished) >= width and params.early_stopping
        if not group.improvable or all_done or all(hits):
            self._finish_beams(group)

    def _finish_beams(self, group: BeamGroup) -> None:
        request, params = group.request, group.request.params
        choices = []
        for index, (score, token_ids) in enumerate(group.finished[: params.n]):
            text = TokenText(self.tokenizer, params.skip_special_tokens)
            finish = "length"
            for token in token_ids:
                if self._is_stop_token(params, token, params.min_tokens):
                    finish = "stop"
                    break
                text.append(token)
            choices.append(Choice(index, token_ids, text.text(), finish, score=score))
        request.choices = choices  # recorded before any "done" is heard, so usage is complete
        for choice in choices:
            request.emit(Event("delta", choice.index, choice.text, choice.token_ids))
            request.emit(Event("done", choice.index, finish_reason=choice.finish_reason))
        for beam in group.beams:
            beam.finished = "beam"
        del self.groups[request.id]
        request.done = True

    # --- bookkeeping -------------------------------------------------------------------------------------

    def _compact(self) -> None:
        """Remove finished rows; move the last running row into each hole so rows stay contiguous."""
        finished_requests = []
        i = 0
        while i < len(self.rows):
            sequence = self.rows[i]
            if sequence.finished:
                if not sequence.request.params.use_beam_search:
                    finished_requests.append(sequence)
                last = self.rows.pop()
                if last is not sequence:
                    self.cache.copy_rows([last.row], [i], last.cache_length + 1)
                    last.row = i
                    self.rows[i] = last
                continue
            i += 1
        for sequence in finished_requests:
            request = sequence.request
            request.choices.append(
                Choice(
                    sequence.index,
                    sequence.tokens,
                    sequence.text.text(),
                    sequence.finished,
                    sequence.logprobs if request.params.logprobs is not None else None,
                )
            )
            if len(request.choices) == request.params.n:
                request.choices.sort(key=lambda c: c.index)
                request.done = True
            request.emit(Event("done", sequence.index, finish_reason=sequence.finished))

    def _drop_cancelled(self) -> None:
        for sequence in self.rows:
            if sequence.request.cancelled and not sequence.finished:
                sequence.finished = "cancelled"
                self.groups.pop(sequence.request.id, None)
        if self.prefill and self.prefill.request.cancelled:
            self._finish_request(self.prefill.request, [])
            self.prefill = None
        self._compact()

    def _finish_request(self, request: Request, choices: list[Choice]) -> None:
        request.choices = choices
        request.done = True
        for choice in choices:
            request.emit(Event("done", choice.index, finish_reason=choice.finish_reason))

    def _logprob(self, logprobs: torch.Tensor, token: int, n: int) -> TokenLogprob:
        return TokenLogprob(int(token), float(logprobs[token]), top_logprobs(logprobs, n))


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
