"""The paged KV cache: logits equal a contiguous cache's, blocks are accounted for exactly, the prefix cache
changes no output, and a tiny block budget (eviction, preemption) never corrupts a running sequence."""

from __future__ import annotations

import random

import pytest
import torch

import engine.attention as attention
from engine.attention import PagedContext, Segment
from engine.generate import Request, generate
from engine.kv import BlockManager, BlockTable, KVPool
from engine.sampling import SamplingParams
from engine.scheduler import Scheduler

from .conftest import engine_for


@pytest.fixture(params=["native", "torch"])
def attention_path(request, monkeypatch):
    """Both implementations of paged attention: the C++ kernel (when built here) and the torch fallback."""
    if request.param == "torch":
        monkeypatch.setattr(attention, "kernels", lambda: None)
    elif attention.kernels() is None:
        pytest.skip("the native kernels are not built on this machine")
    return request.param


@pytest.mark.parametrize("kv_dtype", ["fp32", "bf16", "int8"])
def test_paged_attention_equals_the_contiguous_cache(tiny_pair, attention_path, kv_dtype):
    """Three sequences prefilled into scattered blocks, then decoded together for 6 steps (crossing a block)."""
    _, model = tiny_pair
    a = model.args
    pool = KVPool(a.n_layers, a.n_kv_heads, a.head_dim, 16, 16, kv_dtype)
    blocks = BlockManager(16, 16, "test")
    blocks.free.reverse()  # hand out blocks from the far end first: tables are not contiguous ranges
    seqs = [list(range(5, 48)), list(range(100, 107)), list(range(50, 78))]
    tables = [BlockTable() for _ in seqs]
    for seq, table in zip(seqs, tables, strict=True):
        slots = table.prepare(blocks, pool, 0, len(seq))
        positions = torch.arange(len(seq))
        model(
            torch.tensor(seq),
            positions,
            PagedContext(pool, [Segment(0, len(seq), 0, table.blocks)], slots, positions),
        )
    for step in range(6):
        tokens = torch.tensor([(7 * step + 3 * i) % 250 for i in range(3)])
        positions = torch.tensor([len(s) for s in seqs])
        slots = torch.cat([t.prepare(blocks, pool, len(s), 1) for s, t in zip(seqs, tables, strict=True)])
        segments = [
            Segment(i, 1, len(s), t.blocks) for i, (s, t) in enumerate(zip(seqs, tables, strict=True))
        ]
        paged = model(tokens, positions, PagedContext(pool, segments, slots, positions))
        for i, seq in enumerate(seqs):
            seq.append(int(tokens[i]))
            reference = model.forward_sequence(torch.tensor(seq))[-1]
            tolerance = 1e-5 if kv_dtype == "fp32" else 0.05 * reference.abs().max()
            assert (paged[i] - reference).abs().max() <= tolerance, (kv_dtype, step, i)


def test_block_accounting_and_copy_on_write():
    pool = KVPool(1, 1, 16, 8, 4)
    blocks = BlockManager(8, 4, "test")
    table = BlockTable()
    table.prepare(blocks, pool, 0, 6)  # two blocks, the second half full
    assert blocks.used() == 2 and blocks.available() == 6
    child = table.fork(blocks)
    assert blocks.refs[table.blocks[1]] == 2 and blocks.used() == 2
    child.prepare(blocks, pool, 6, 1)  # writing into the shared half-full block copies it first
    assert child.blocks[0] == table.blocks[0] and child.blocks[1] != table.blocks[1]
    tokens = list(range(8))
    table.commit(blocks, tokens, 6)  # only the full first block is registered
    assert len(table.digests) == 1
    table.release(blocks)
    child.release(blocks)
    assert blocks.used() == 0 and len(blocks.evictable) == 1  # the registered block stays findable
    hit, _ = blocks.match(tokens, 1)
    assert hit == [table.blocks[0]] if table.blocks else len(hit) == 1
    assert blocks.used() == 1


def test_kv_bytes_per_token_by_dtype(tiny_pair):
    sizes = {
        d: engine_for(tiny_pair, kv_dtype=d).info()["kv_bytes_per_token"] for d in ("fp32", "bf16", "int8")
    }
    a = tiny_pair[1].args
    assert sizes["fp32"] == 2 * a.n_layers * a.n_kv_heads * a.head_dim * 4
    assert sizes["bf16"] * 2 == sizes["fp32"]
    assert sizes["int8"] == 2 * a.n_layers * a.n_kv_heads * (a.head_dim + 4)  # codes plus one fp32 scale


@pytest.mark.parametrize("method", ["int8", "int4"])
def test_greedy_batch_invariance_bit_for_bit(tiny_pair, method, layout):
    """Alone or among other rows, a greedy request gets the same tokens and the same log-probabilities."""
    prompts = [list(range(i, i + 5 + 7 * i)) for i in range(6)]
    params = dict(max_new_tokens=20, temperature=0, logprobs=2, ignore_eos=True)
    solo = []
    for prompt in prompts:
        choice = generate(engine_for(tiny_pair, method), prompt, SamplingParams(**params)).choices[0]
        solo.append((choice.token_ids, [lp.logprob for lp in choice.logprobs]))
    engine = engine_for(tiny_pair, method)
    requests = [engine.submit(Request(p, SamplingParams(**params))) for p in prompts]
    engine.run()
    together = [(r.choices[0].token_ids, [lp.logprob for lp in r.choices[0].logprobs]) for r in requests]
    assert together == solo
    # the burst was prefilled in one forward (the first prompt's, the others riding along), not one per step
    assert engine.exact and engine.stats["prefill_chunks"] == 1 and engine.stats["prompts_batched"] == 5
    scheduler = Scheduler(engine)  # what the server's /metrics reports
    try:
        metrics = scheduler.snapshot()
    finally:
        scheduler.close()
    assert (metrics["prefill_forwards_total"], metrics["prompts_batched_total"]) == (1, 5)


def test_inexact_methods_prefill_one_prompt_per_step(tiny_pair):
    """fp32 GEMMs block by the row count: prompts computed together would round differently, so they are not."""
    engine = engine_for(tiny_pair, "none")
    for i in range(3):
        engine.submit(Request(list(range(i, i + 9)), SamplingParams(max_new_tokens=2, temperature=0)))
    engine.run()
    assert not engine.exact and engine.stats["prefill_chunks"] == 3 and engine.stats["prompts_batched"] == 0


@pytest.mark.parametrize("method", ["none", "int8"])
def test_prefix_cached_and_uncached_greedy_outputs_are_identical(tiny_pair, method):
    system = list(range(40, 140))  # a shared 100-token prefix, as every case of a suite sends
    prompts = [system + [200 + i, 201 + i, 202] for i in range(5)]
    params = SamplingParams(max_new_tokens=16, temperature=0, ignore_eos=True)
    cold = engine_for(tiny_pair, method, prefix_cache=False)
    warm = engine_for(tiny_pair, method)
    expected = [generate(cold, p, params).choices[0].token_ids for p in prompts]
    got = [generate(warm, p, params).choices[0].token_ids for p in prompts]
    assert got == expected
    assert (
        warm.blocks.stats["hit_tokens"] == 4 * (len(system) // 16) * 16
    )  # every later prompt reused the prefix
    assert cold.blocks.stats["hit_tokens"] == 0


@pytest.mark.parametrize("prefix_cache", [True, False])
def test_a_tiny_block_budget_never_corrupts_running_sequences(tiny_pair, prefix_cache):
    """Many concurrent requests (shared prefixes, n > 1, beams, varied lengths) through 14 blocks of 16 tokens:
    blocks are evicted from the prefix cache and sequences preempted and recomputed, yet every output equals
    the output the same request gets alone in an engine with plenty of memory."""
    rng = random.Random(17)
    prefixes = [[rng.randrange(256) for _ in range(rng.randrange(16, 40))] for _ in range(3)]
    jobs = []
    for _ in range(24):
        prompt = rng.choice(prefixes) + [rng.randrange(256) for _ in range(rng.randrange(1, 12))]
        kind = rng.choice(["greedy", "greedy", "sampled", "beam"])
        params = SamplingParams(max_new_tokens=rng.randrange(4, 40), ignore_eos=True, temperature=0)
        if kind == "sampled":
            params = SamplingParams(
                max_new_tokens=params.max_new_tokens, ignore_eos=True, n=2, seed=rng.randrange(99)
            )
        elif kind == "beam":
            params = SamplingParams(max_new_tokens=params.max_new_tokens, use_beam_search=True, n=2)
        jobs.append((prompt, params))
    roomy = engine_for(tiny_pair, "int8", prefix_cache=False)
    expected = [[c.token_ids for c in generate(roomy, p, SamplingParams(**vars(q))).choices] for p, q in jobs]
    tight = engine_for(tiny_pair, "int8", kv_blocks=14, max_batch=8, prefix_cache=prefix_cache)
    requests = [tight.submit(Request(p, SamplingParams(**vars(q)))) for p, q in jobs]
    steps = 0
    while tight.has_work():
        tight.step()
        steps += 1
        assert tight.blocks.used() <= 14 and steps < 20_000
    assert [[c.token_ids for c in r.choices] for r in requests] == expected
    assert tight.stats["preemptions"] > 0  # the budget really bit
    assert tight.blocks.stats["evictions"] > 0 or not prefix_cache
    assert tight.blocks.used() == 0 and tight.blocks.refs == [0] * 14  # every block came back


def test_prompts_beyond_the_cache_are_refused_and_outputs_clamped(tiny_pair):
    engine = engine_for(tiny_pair, kv_blocks=3)
    with pytest.raises(ValueError, match="the prompt has 48 tokens but the KV cache holds 48") as err:
        engine.submit(Request(list(range(48)), SamplingParams()))
    assert err.value.param == "prompt"
    request = generate(
        engine, list(range(30)), SamplingParams(max_new_tokens=100, temperature=0, ignore_eos=True)
    )
    assert request.max_tokens_clamped_to == 18 and len(request.choices[0].token_ids) == 18


def test_a_resumed_request_without_the_prefix_cache_shares_its_prompt_between_rows():
    """Admission counts a request's prompt once for all its rows; after a preemption its rows are recomputed one
    by one, and the later ones must share the first one's full blocks again even with the prefix cache off
    (else a pool that admitted the request cannot hold it, and the engine waits forever)."""
    from engine.prefill import Prefill, resume_ids, try_start
    from engine.request import Sequence

    blocks = BlockManager(10, 16, "ns", caching=False)
    request = Request(list(range(64)), SamplingParams(max_new_tokens=48, n=2, ignore_eos=True))
    rows = [Sequence(request, index=i, row=i, generator=None, text=None) for i in range(2)]
    for i, row in enumerate(rows):
        row.tokens = list(
            range(100 + i, 116 + i)
        )  # 16 generated before the preemption: 79 tokens to recompute
    job = Prefill(request, resume_ids(rows[0]), resume=rows)
    assert try_start(job, blocks, headroom=0)
    job.table.commit(blocks, job.ids, len(job.ids))
    job.done_tables.append(job.table)
    job.ids, job.table, job.offset = resume_ids(rows[1]), BlockTable(), 0
    assert try_start(job, blocks, headroom=0)  # 4 prompt blocks shared, 1 of its own
    assert job.offset == 64 and job.table.blocks[:4] == job.done_tables[0].blocks[:4]
    assert blocks.used() == 6
