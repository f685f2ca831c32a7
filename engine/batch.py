"""Continuous-batching decode: the running sequences advanced together, one forward a step.

Each row (a `Sequence`) owns a block table in the paged KV cache; before a step every row gets the slot its
next token is written to, and when the pool has no block left the engine's `free_memory` preempts someone (the
newest request first) and the row tries again. A finished row leaves at once and its blocks go back to the pool
(full ones stay findable by the prefix cache). Each row picks its own next token from its own logits
(penalties, bans before `min_tokens`, its sampler and seed), so a row's tokens never depend on which other rows
share the step. Beam groups (engine/beam.py) live in the same rows and are advanced once per step, all their
beams together.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

import torch

from engine.attention import PagedContext, Segment
from engine.beam import BeamGroup
from engine.kv import BlockManager, BlockTable, KVPool, OutOfBlocks
from engine.model import Transformer
from engine.request import Choice, Event, Request, Sequence, TokenLogprob
from engine.sampling import SamplingParams, apply_penalties, choose, top_logprobs
from engine.speculative import MAX_SPECULATING_ROWS, PromptLookup, speculates
from engine.tokens import TokenText

SEED_MASK = 2**64 - 1  # torch seeds are unsigned 64-bit; any integer seed maps into that range


def token_logprob(logprobs: torch.Tensor, token: int, n: int) -> TokenLogprob:
    """The chosen token's log-probability and the top `n` alternatives, from log-probabilities [V]."""
    return TokenLogprob(int(token), float(logprobs[token]), top_logprobs(logprobs, n))


class DecodeBatch:
    def __init__(
        self,
        model: Transformer,
        tokenizer: Any,
        pool: KVPool,
        blocks: BlockManager,
        eos_ids: set[int],
        stats: dict[str, int],
        draft_tokens: int = 0,
    ):
        self.model, self.tokenizer, self.pool, self.blocks = model, tokenizer, pool, blocks
        self.draft_tokens = draft_tokens  # the longest prompt-lookup draft a row verifies per step; 0: none
        self.eos_ids, self.stats = eos_ids, stats
        self.rows: list[Sequence] = []  # in the order they joined: the oldest first
        self.groups: dict[int, BeamGroup] = {}  # request id -> its beams
        self.last_size = 0
        self.joined = 0
        # Set by the engine: frees blocks (preempting someone, perhaps the row's own request) for a row.
        self.free_memory: Any = None

    # --- joining -----------------------------------------------------------------------------------------

    def start(self, request: Request, logits: torch.Tensor, table: BlockTable) -> None:
        """The request's rows share the prefilled `table`, and each chooses its first token. logits: [V]."""
        params = request.params
        width = params.n
        seed = params.seed if params.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
        sequences = []
        for index in range(width):
            generator = None
            if not params.greedy and not params.use_beam_search:
                generator = torch.Generator().manual_seed((seed + index) & SEED_MASK)
            matcher = request.constraint.matcher() if request.constraint is not None else None
            text = TokenText(self.tokenizer, params.skip_special_tokens)
            sequence = Sequence(request, index, len(self.rows) + index, generator, text, matcher)
            sequence.table = table if index == 0 else table.fork(self.blocks)
            sequences.append(sequence)
        self._join(request, sequences)
        if params.use_beam_search:
            group = BeamGroup(request, sequences)
            self.groups[request.id] = group
            group.step(self, logits.unsqueeze(0).expand(width, -1))
        else:
            for sequence in sequences:
                self.sample_next(sequence, logits)
        request.first_token_at = time.time()
        self.compact()

    def _join(self, request: Request, sequences: list[Sequence]) -> None:
        self.joined += 1
        request.started = self.joined
        self.rows.extend(sequences)

    def rejoin(self, request: Request, sequences: list[Sequence], tables: list[BlockTable]) -> None:
        """Preempted sequences come back with their context recomputed into `tables`."""
        for sequence, table in zip(sequences, tables, strict=True):
            sequence.table = table
        self._join(request, sequences)

    def evict(self, request: Request) -> list[Sequence]:
        """Take a request's rows out of the batch and give their blocks back (full ones stay cached)."""
        evicted = [s for s in self.rows if s.request is request]
        self.rows = [s for s in self.rows if s.request is not request]
        for sequence in evicted:
            self._commit(sequence)
            sequence.table.release(self.blocks)
        self.stats["preemptions"] += 1
        return evicted

    # --- one step ----------------------------------------------------------------------------------------

    def decode(self) -> None:
        """One forward for every running row (with its draft, if it speculates: engine/speculative.py), then each
        row (or beam group) picks its next token, or its next tokens up to the first draft token it rejects."""
        drafts = self._drafts()
        slots = self._reserve(drafts)
        if not self.rows:
            return
        self.last_size = len(self.rows)
        tokens: list[int] = []
        segments = []
        for sequence in self.rows:
            draft = drafts.get(id(sequence), [])
            segments.append(
                Segment(len(tokens), 1 + len(draft), sequence.cache_length, sequence.table.blocks)
            )
            tokens += [sequence.tokens[-1], *draft]
        positions = torch.cat([torch.arange(s.first, s.first + s.count) for s in segments])  # [T]
        context = PagedContext(self.pool, segments, torch.cat(slots), positions)
        logits = self.model(torch.tensor(tokens), positions, context)  # [T, V]
        self.stats["decode_steps"] += 1
        for sequence, segment in zip(self.rows, segments, strict=True):
            sequence.row = segment.start  # where the row's logits are
        seen_groups = set()
        for sequence, segment in zip(list(self.rows), segments, strict=True):
            if sequence.finished:
                continue
            if sequence.request.params.use_beam_search:
                group = self.groups[sequence.request.id]
                if group.request.id not in seen_groups:
                    seen_groups.add(group.request.id)
                    group.step(self, logits[[b.row for b in group.beams]])
            elif segment.count > 1:
                self._verify(
                    sequence, logits[segment.start : segment.start + segment.count], drafts[id(sequence)]
                )
            else:
                self.sample_next(sequence, logits[segment.start])
        for sequence, segment in zip(self.rows, segments, strict=True):
            if segment.count > 1:  # blocks reserved for rejected draft tokens go back to the pool
                sequence.table.truncate(self.blocks, sequence.cache_length)
            self._commit(sequence)
        self.compact()

    def _drafts(self) -> dict[int, list[int]]:
        """Each speculating row's draft (keyed by id of the row), when the batch is narrow enough to gain."""
        if self.draft_tokens == 0 or len(self.rows) > MAX_SPECULATING_ROWS:
            return {}
        drafts = {}
        for sequence in self.rows:
            if not speculates(sequence):
                continue
            if sequence.lookup is None:
                sequence.lookup = PromptLookup(sequence, self.draft_tokens)
            left = sequence.request.params.max_new_tokens - len(sequence.tokens) - 1
            draft = sequence.lookup.propose(left)
            if draft:
                drafts[id(sequence)] = draft
        return drafts

    def _verify(self, sequence: Sequence, logits: torch.Tensor, draft: list[int]) -> None:
        """Choose the row's tokens position by position, exactly as plain decoding would, while they equal its
        draft. logits: [1 + draft, V]."""
        accepted = 0
        for position in range(logits.shape[0]):
            self.sample_next(sequence, logits[position])
            if sequence.finished or position == len(draft) or sequence.tokens[-1] != draft[position]:
                break
            accepted += 1
        sequence.lookup.record(len(draft), accepted)
        self.stats["draft_tokens"] += len(draft)
        self.stats["accepted_tokens"] += accepted

    def _reserve(self, drafts: dict[int, list[int]]) -> list[torch.Tensor]:
        """The slots of every row's next token and draft (oldest rows first); rows preempted on the way are gone.
        A row that cannot get blocks for its draft drops the draft before anyone is preempted."""
        slots: dict[int, torch.Tensor] = {}
        for sequence in list(self.rows):
            while sequence in self.rows:
                count = 1 + len(drafts.get(id(sequence), []))
                try:
                    slots[id(sequence)] = sequence.table.prepare(
                        self.blocks, self.pool, sequence.cache_length, count
                    )
                    break
                except OutOfBlocks:
                    if count > 1:
                        del drafts[id(sequence)]
                        sequence.table.truncate(self.blocks, sequence.cache_length)
                    else:
                        self.free_memory(sequence)
        return [slots[id(sequence)] for sequence in self.rows]

    def _commit(self, sequence: Sequence) -> None:
        """Register the row's blocks that are now full of tokens in cache (the prefix cache may share them)."""
        in_cache = sequence.cache_length
        if in_cache // self.blocks.block_size > len(sequence.table.digests):
            sequence.table.commit(self.blocks, sequence.all_tokens(), in_cache)

    def sample_next(self, sequence: Sequence, logits: torch.Tensor) -> None:
        """Choose one row's next token from its logits [V]."""
        request, params = sequence.request, sequence.request.params
        raw = logits.float()
        if sequence.matcher is not None:
            raw = sequence.matcher.mask(raw)  # the constrained distribution: sampled and reported alike
        processed = raw
        if params.has_penalties:
            out = torch.tensor(sequence.tokens, dtype=torch.long)
            seen = torch.tensor(request.prompt_ids + sequence.tokens, dtype=torch.long)
            processed = apply_penalties(raw, params, seen, out)
        banned = self.banned(params, len(sequence.tokens))
        if banned:
            unbanned = processed
            processed = processed.clone()
            processed[banned] = float("-inf")
            if sequence.matcher is not None and not torch.isfinite(processed).any():
                processed = unbanned  # the grammar allows only an end here: it wins over min_tokens
        token = choose(processed, params, sequence.generator)
        sequence.tokens.append(token)
        entry = None
        if params.logprobs is not None:
            entry = token_logprob(torch.log_softmax(raw, -1), token, params.logprobs)
        self.stats["completion_tokens"] += 1
        if sequence.matcher is not None:
            sequence.matcher.advance(token)
        self.after_token(sequence, entry)

    # --- stopping ----------------------------------------------------------------------------------------

    def banned(self, params: SamplingParams, generated: int) -> list[int]:
        """Before min_tokens, neither EOS nor the stop token ids may be chosen."""
        if generated >= params.min_tokens:
            return []
        return sorted(({*self.eos_ids} if not params.ignore_eos else set()) | set(params.stop_token_ids))

    def is_stop_token(self, params: SamplingParams, token: int, generated: int) -> bool:
        if generated < params.min_tokens:
            return False
        return (token in self.eos_ids and not params.ignore_eos) or token in params.stop_token_ids

    def after_token(self, sequence: Sequence, entry: TokenLogprob | None = None) -> None:
        """Record a sampled token: stop tokens, stop strings and the length limit, then stream the text."""
        params = sequence.request.params
        token = sequence.tokens[-1]
        if self.is_stop_token(params, token, len(sequence.tokens) - 1):
            sequence.finished = "stop"
            # every generated token has an entry, the end token too (empty text: the answer's text ends before
            # it): lm-eval's loglikelihood drops the last entry of an echo as the generated token
            if entry is not None:
                entry = replace(entry, end=True)
                sequence.logprobs.append(entry)
        else:
            sequence.text.append(token)
            if entry is not None:
                sequence.logprobs.append(entry)
            if params.stop and len(sequence.tokens) > params.min_tokens:
                cut = sequence.text.find_stop(params.stop)
                if cut is not None:
                    sequence.text.truncate(cut)
                    sequence.finished = "stop"
        if not sequence.finished and sequence.matcher is not None and sequence.matcher.done:
            sequence.finished = "stop"  # the grammar is complete: nothing but an end could follow
        if not sequence.finished and len(sequence.tokens) >= params.max_new_tokens:
            sequence.finished = "length"
        if entry is not None:
            sequence.unsent.append(entry)
        self.emit_delta(sequence)

    def emit_delta(self, sequence: Sequence) -> None:
        """Send the text that can no longer change (a stop string may still cut the last few characters)."""
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
        # "done" is emitted by compact(), once the choice is recorded (usage counts it).

    # --- bookkeeping -------------------------------------------------------------------------------------

    def compact(self) -> None:
        """Remove finished rows and give their blocks back."""
        finished = [s for s in self.rows if s.finished]
        if not finished:
            return
        self.rows = [s for s in self.rows if not s.finished]
        for sequence in finished:
            if sequence.table is not None:
                self._commit(sequence)
                sequence.table.release(self.blocks)
        for sequence in finished:
            if not sequence.request.params.use_beam_search:
                self._record(sequence)

    def _record(self, sequence: Sequence) -> None:
        request = sequence.request
        logprobs = sequence.logprobs if request.params.logprobs is not None else None
        choice = Choice(sequence.index, sequence.tokens, sequence.text.text(), sequence.finished, logprobs)
        request.choices.append(choice)
        if len(request.choices) == request.params.n:
            request.choices.sort(key=lambda c: c.index)
            request.done = True
        request.emit(Event("done", sequence.index, finish_reason=sequence.finished))

    def drop_cancelled(self) -> None:
        for sequence in self.rows:
            if sequence.request.cancelled and not sequence.finished:
                sequence.finished = "cancelled"
                self.groups.pop(sequence.request.id, None)
        # beams of a preempted request cancelled while it waited or was being recomputed: it ended with no rows
        for request_id in [rid for rid, group in self.groups.items() if group.request.done]:
            del self.groups[request_id]
        self.compact()

    def clear(self) -> list[Request]:
        """Forget every running sequence (after an engine failure); returns their requests."""
        requests = list({sequence.request for sequence in self.rows})
        for sequence in self.rows:
            sequence.table.release(self.blocks)
        self.rows.clear()
        self.groups.clear()
        return requests
