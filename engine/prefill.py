"""Prefill jobs: a prompt (or a preempted sequence's context) computed into its own KV blocks, chunk by chunk.

A job starts only when the pool can give it every block its tokens need beyond the cached prefix it reuses
(plus one block of headroom per running row, so decoding rows are not preempted at once). A new request first
takes the cached blocks of its longest prefix (`BlockManager.match`) and computes only the rest; requests that
ask for prompt log-probabilities compute everything. A *resume* job recomputes the context of sequences that
were preempted to free memory (prompt plus the tokens they had generated, all but the last, which is fed by
their next decode step); they rejoin the batch together, with their sampling, grammar and beam state intact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from engine.attention import PagedContext, Segment
from engine.kv import BlockManager, BlockTable, KVPool
from engine.request import Request, Sequence


@dataclass
class Prefill:
    """One job: `ids` to compute into `table`, from `offset` on."""

    request: Request
    ids: list[int]
    table: BlockTable = field(default_factory=BlockTable)
    offset: int = 0
    last_logits: torch.Tensor | None = None
    resume: list[Sequence] | None = None  # preempted sequences, recomputed one after the other
    done_tables: list[BlockTable] = field(default_factory=list)  # resumed sequences' tables, ready

    @property
    def want_all_logits(self) -> bool:
        return self.resume is None and self.request.params.prompt_logprobs is not None


def resume_ids(sequence: Sequence) -> list[int]:
    """The context a preempted sequence must have in cache before its next decode step."""
    return sequence.request.prompt_ids + sequence.tokens[:-1]


def try_start(job: Prefill, blocks: BlockManager, headroom: int) -> bool:
    """Reuse the cached prefix and allocate the rest of the job's blocks; False (nothing held) if they do not fit."""
    ids = job.ids
    reusable = 0 if job.want_all_logits else (len(ids) - 1) // blocks.block_size  # the last token is computed
    if job.done_tables and not blocks.caching:
        cached, digests = _sibling_prefix(job, blocks, reusable)
    else:
        cached, digests = blocks.match(ids, reusable)
    need = blocks.blocks_for(len(ids)) - len(cached)
    if blocks.available() < need + headroom:
        blocks.release(cached)
        return False
    job.table = BlockTable(cached, digests)
    job.offset = len(cached) * blocks.block_size
    if not job.done_tables:  # a request's lookup (its later resumed rows only share its first one's blocks)
        blocks.count_lookup(len(ids), len(cached))
        if job.resume is None:
            job.request.cached_tokens = job.offset  # reported in usage (the Responses API's cached_tokens)
    for _ in range(need):
        job.table.blocks.append(blocks.allocate())
    return True


def _sibling_prefix(job: Prefill, blocks: BlockManager, reusable: int) -> tuple[list[int], list[bytes]]:
    """A resumed request's later rows share the full blocks their context has in common with its first row, as
    they did before preemption (admission counted the prompt once), even with the prefix cache off."""
    first, reference, bs = job.done_tables[0], resume_ids(job.resume[0]), blocks.block_size
    count = 0
    while count < min(reusable, len(first.digests)) and (
        job.ids[count * bs : (count + 1) * bs] == reference[count * bs : (count + 1) * bs]
    ):
        count += 1
    shared = first.blocks[:count]
    blocks.share(shared)
    return list(shared), list(first.digests[:count])


def run_chunk(model, pool: KVPool, blocks: BlockManager, jobs: list[Prefill], chunk: int) -> list[bool]:
    """Compute the next chunk of `jobs[0]` and, in the same forward, the rest of any further jobs (the engine
    picks them so that all fit in `chunk` tokens); returns, per job, whether its ids are all in cache (logits of
    its last token in `last_logits`, or of every token of the chunk for a job that wants them, which runs alone)."""
    tokens: list[int] = []
    positions, slots, segments, ends = [], [], [], []
    for job in jobs:
        start = job.offset
        end = min(start + chunk - len(tokens), len(job.ids))
        segments.append(Segment(len(tokens), end - start, start, job.table.blocks))
        tokens += job.ids[start:end]
        positions.append(torch.arange(start, end))
        slots.append(job.table.slots(end, blocks.block_size)[start:end])
        ends.append(end)
    context = PagedContext(pool, segments, torch.cat(slots), torch.cat(positions))
    want_all = jobs[0].want_all_logits
    last = None if want_all else torch.tensor([s.start + s.count - 1 for s in segments])
    logits = model(torch.tensor(tokens), context.positions, context, last)  # [S, V] or [jobs, V]
    for i, (job, end) in enumerate(zip(jobs, ends, strict=True)):
        job.last_logits = logits if want_all else logits[i : i + 1]
        job.offset = end
        job.table.commit(blocks, job.ids, end)
    return [job.offset == len(job.ids) for job in jobs]
