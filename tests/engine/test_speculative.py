"""Prompt-lookup speculative decoding: the output is plain greedy decoding's, token for token, and it really
speculates (fewer forwards for the same tokens); it is on by default only where that identity holds."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import torch
from torch import nn

from engine.attention import native_for
from engine.constraints import ConstraintSpec
from engine.generate import Engine, Request, generate
from engine.kv_options import DEFAULT_DRAFT_TOKENS
from engine.model import build_model
from engine.quantize import _runtime_module, parse_method, quantize, rows_independent
from engine.request import Sequence
from engine.sampling import SamplingParams
from engine.speculative import PromptLookup

from .conftest import engine_for

REPEATING = list(b"the cat sat on the mat; the cat sat on the mat; the cat sat on the ")


def needs_native(engine: Engine) -> None:
    if native_for(engine.pool) is None:
        pytest.skip("the native attention kernel is not built here: verification would not be exact")


def tiny_engine_with(pair, method: str, **kwargs) -> Engine:
    return engine_for(pair, method, prefix_cache=False, **kwargs)


def outcome(request: Request) -> list[tuple]:
    return [
        (c.token_ids, c.text, c.finish_reason, [(lp.token_id, lp.logprob, lp.top) for lp in c.logprobs or []])
        for c in request.choices
    ]


PARAMS = [
    dict(max_new_tokens=40, temperature=0, ignore_eos=True, logprobs=2),
    dict(max_new_tokens=40, temperature=0, stop=["mat;"], min_tokens=3),
    dict(max_new_tokens=7, temperature=0, ignore_eos=True),  # the length limit inside a draft
    dict(max_new_tokens=30, temperature=0, ignore_eos=True, repetition_penalty=1.3, n=2),
    dict(max_new_tokens=30, temperature=0.8, seed=5, ignore_eos=True),  # sampled, seeded: the same draws
    dict(max_new_tokens=30, temperature=0.7, top_p=0.9, seed=11, ignore_eos=True, n=2, logprobs=1),
]


@pytest.mark.parametrize("method", ["int8", "int4"])
def test_speculative_output_equals_plain_greedy_decoding(tiny_pair, method, layout):
    plain = tiny_engine_with(tiny_pair, method, draft_tokens=0)
    fast = tiny_engine_with(tiny_pair, method)
    needs_native(fast)
    assert fast.batch.draft_tokens == DEFAULT_DRAFT_TOKENS  # on by default for this method
    # the tiny model repeats one token; drafts from the repeating text are accepted, those from the prompts of
    # a four-letter alphabet (each bigram followed by different letters) often rejected
    rng = random.Random(0)
    prompts = [REPEATING, list(range(40, 90)) * 2] + [
        [rng.choice(b"abcd") for _ in range(60)] for _ in range(2)
    ]
    for params in PARAMS:
        for prompt in prompts:  # alone, then all four together in one batch
            expected = outcome(generate(plain, prompt, SamplingParams(**params)))
            assert outcome(generate(fast, prompt, SamplingParams(**params))) == expected, (params, prompt)
        together = [fast.submit(Request(p, SamplingParams(**params))) for p in prompts]
        fast.run()
        solo = [outcome(generate(plain, p, SamplingParams(**params))) for p in prompts]
        assert [outcome(r) for r in together] == solo, params
    assert fast.stats["completion_tokens"] == plain.stats["completion_tokens"]  # the same tokens...
    assert fast.stats["accepted_tokens"] > 100  # ...speculated...
    assert fast.stats["draft_tokens"] - fast.stats["accepted_tokens"] > 20  # ...rejected wrong drafts...
    assert fast.stats["decode_steps"] < plain.stats["decode_steps"] * 2 // 3  # ...in fewer forwards
    assert fast.blocks.used() == 0  # rejected drafts' blocks all came back


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "size": {"enum": ["small", "large"]}},
    "required": ["name", "size"],
    "additionalProperties": False,
}
CONSTRAINTS = [
    ("json", SCHEMA),
    ("regex", r"(the cat|a dog) sat on [a-z]{2,6}"),
    ("choice", ["mat;", "the hat"]),
]


@pytest.mark.parametrize("method", ["int8", "int4"])
def test_constrained_rows_speculate_and_decode_as_plain_constrained_greedy(tiny_pair, method, layout):
    """A grammar's forced tokens (and lookups the grammar accepts) are drafted; each position is still masked
    as plain constrained decoding masks it, so tokens and logprobs are equal, alone and beside free rows."""
    plain = tiny_engine_with(tiny_pair, method, draft_tokens=0)
    fast = tiny_engine_with(tiny_pair, method)
    needs_native(fast)
    params = dict(max_new_tokens=40, temperature=0, logprobs=2)

    steps = {id(plain): 0, id(fast): 0}  # decode steps of the solo constrained requests

    def solo(engine: Engine, spec: ConstraintSpec) -> list[tuple]:
        before = engine.stats["decode_steps"]
        request = engine.submit(
            Request(REPEATING, SamplingParams(**params), constraint=engine.constrain(spec))
        )
        engine.run()
        steps[id(engine)] += engine.stats["decode_steps"] - before
        return outcome(request)

    for kind, value in CONSTRAINTS:
        spec = ConstraintSpec(kind, value, f"guided_{kind}")
        want = solo(plain, spec)
        assert solo(fast, spec) == want, kind
        together = [
            fast.submit(Request(REPEATING, SamplingParams(**params), constraint=fast.constrain(spec))),
            fast.submit(Request(REPEATING, SamplingParams(**params, ignore_eos=True))),
        ]
        fast.run()
        free = outcome(generate(plain, REPEATING, SamplingParams(**params, ignore_eos=True)))
        assert [outcome(r) for r in together] == [want, free], kind
    assert fast.stats["accepted_tokens"] > 40  # the schema's keys and punctuation at least
    assert steps[id(fast)] < steps[id(plain)] * 2 // 3
    assert fast.blocks.used() == 0


def test_a_grammar_row_drafts_its_forced_tokens_else_a_lookup_cut_to_what_the_grammar_accepts(tiny_pair):
    engine = tiny_engine_with(tiny_pair, "int8")
    grammar = engine.constrain(ConstraintSpec("regex", r"ab(c|e)d [a-x]*", "guided_regex"))
    request = Request(list(b"xx abcd yy "), SamplingParams(max_new_tokens=50, temperature=0))
    sequence = Sequence(request, 0, 0, None, None, grammar.matcher())
    lookup = PromptLookup(sequence, max_draft=4)
    assert bytes(lookup.propose(10)) == b"ab"  # forced by the grammar
    assert bytes(lookup.propose(1)) == b"a"  # never more than asked
    lookup.record(drafted=2, accepted=0)
    assert lookup.draft_length == 4  # forced drafts do not shrink the lookup's
    for token in b"ab":
        sequence.matcher.advance(token)
    sequence.tokens = list(b"ab")  # "c" or "e" next: nothing is forced
    assert bytes(lookup.lookup(10)) == b"cd y"  # what followed " ab" before...
    assert bytes(lookup.propose(10)) == b"cd "  # ...cut where the grammar refuses "y"


def test_speculation_is_off_by_default_where_it_would_not_be_exact(tiny_pair):
    """fp32 and bf16 GEMMs and NF4 change their blocking with the row count; LLM.int8() picks outlier columns over
    all rows of a call: a wider verification forward could round a near-tie differently."""
    for method in ("none", "bf16", "nf4", "llm_int8"):
        engine = tiny_engine_with(tiny_pair, method)
        assert engine.batch.draft_tokens == 0, method
        assert not rows_independent(engine.model), method
    forced = tiny_engine_with(tiny_pair, "none", draft_tokens=3)  # a caller may still ask for it
    generate(forced, REPEATING, SamplingParams(max_new_tokens=20, temperature=0, ignore_eos=True))
    assert forced.stats["accepted_tokens"] > 0


@pytest.mark.parametrize("method", ["int8", "int4", "int4-g128", "smoothquant"])
def test_linears_that_claim_row_independence_compute_each_row_alone(method):
    """The claim speculation rests on: a row's output is bit-identical whether it is multiplied alone or among
    up to 8 others (the model's real shapes, where the kernels pick their blocking)."""
    torch.manual_seed(0)
    for in_features, out_features in [(576, 1728), (1536, 576), (576, 49152)]:
        linear = nn.Linear(in_features, out_features, bias=False)
        act_max = {"x": torch.rand(in_features) * 3}
        module = _runtime_module(parse_method(method), "x", linear, act_max, {})
        assert module.rows_independent
        x = torch.randn(9, in_features)
        with torch.inference_mode():
            alone = torch.cat([module(x[i : i + 1]) for i in range(9)])
            for rows in range(2, 10):
                assert torch.equal(module(x[:rows]), alone[:rows]), (method, in_features, rows)


def test_prompt_lookup_proposes_what_followed_the_latest_occurrence():
    request = Request(list(b"xx abcd yy abce zz ab"), SamplingParams(max_new_tokens=50, temperature=0))
    sequence = Sequence(request, 0, 0, None, None)
    lookup = PromptLookup(sequence, max_draft=4)
    # the suffix " ab" last occurred before "ce zz"; the longest n-gram (3) wins over the 2-gram "ab"
    assert bytes(lookup.propose(10)) == b"ce z"
    assert bytes(lookup.propose(2)) == b"ce"  # never more than asked (the length limit)
    sequence.tokens = list(b"q")  # " abq": no earlier occurrence of "abq" or "bq"
    assert lookup.propose(10) == []
    sequence.tokens = list(b"qq ab")  # the output is indexed too: "b" + "q" now has a continuation
    lookup.record(drafted=4, accepted=1)
    assert lookup.draft_length == 2  # a miss shrinks the next draft to what was accepted + 1
    assert bytes(lookup.propose(10)) == b"qq"
    lookup.record(drafted=2, accepted=2)
    assert lookup.draft_length == 3  # all accepted: it grows back, up to max_draft


def test_grounded_prompts_on_the_real_model_decode_identically(default_model):
    """The default model (int4) copying from its prompt: same tokens with and without speculation, fewer steps."""
    model = build_model(default_model.config, dict(default_model.state_dict))
    quantize(model, "int4")
    tokenizer = default_model.tokenizer
    plain = Engine(model, tokenizer, method="int4", prefix_cache=False, draft_tokens=0)
    fast = Engine(model, tokenizer, method="int4", prefix_cache=False)
    needs_native(fast)
    paragraph = (
        "Marie Curie was born in Warsaw in 1867. She won the Nobel Prize in Physics in 1903 and the Nobel "
        "Prize in Chemistry in 1911. She died in 1934."
    )
    for task in ("Copy the following text exactly.", "Extract the sentences that mention a Nobel Prize."):
        messages = [{"role": "user", "content": f"{task}\n\n{paragraph}"}]
        ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        params = dict(max_new_tokens=48, temperature=0)
        expected = generate(plain, ids, SamplingParams(**params)).choices[0].token_ids
        assert generate(fast, ids, SamplingParams(**params)).choices[0].token_ids == expected, task
    assert fast.stats["accepted_tokens"] > 20
    assert fast.stats["decode_steps"] < plain.stats["decode_steps"]
    # constrained to a JSON schema: the same tokens (the schema's keys are drafted as the grammar forces them,
    # in the tokenizer's own split, which the model may still decline), in fewer steps
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "born": {"type": "integer"}, "died": {"type": "integer"}},
        "required": ["name", "born", "died"],
        "additionalProperties": False,
    }
    messages = [{"role": "user", "content": f"Extract the person as JSON.\n\n{paragraph}"}]
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    spec = ConstraintSpec("json", schema, "response_format")
    steps = []
    for engine in (plain, fast):
        before = engine.stats["decode_steps"]
        request = engine.submit(
            Request(ids, SamplingParams(max_new_tokens=48, temperature=0), constraint=engine.constrain(spec))
        )
        engine.run()
        steps.append((engine.stats["decode_steps"] - before, request.choices[0].token_ids))
    assert steps[1][1] == steps[0][1]
    assert set(json.loads(tokenizer.decode(steps[1][1]))) == {"name", "born", "died"}
    assert steps[1][0] < steps[0][0] * 2 // 3


def first_tokens(engine: Engine, prompt: list[int], temperature: float, samples: int, seeds: int) -> Counter:
    """The first three tokens of `samples` samples, four rows per request (narrow enough to draft), each request
    seeded from `seeds` on (fixed, so the test is reproducible; disjoint between the sides compared)."""
    counts: Counter = Counter()
    for i in range(samples // 4):
        params = dict(max_new_tokens=4, temperature=temperature, ignore_eos=True, n=4, seed=seeds + 4 * i)
        for choice in generate(engine, prompt, SamplingParams(**params)).choices:
            counts[tuple(choice.token_ids[:3])] += 1
    return counts


def same_distribution_p(a: Counter, b: Counter) -> float:
    """Chi-square test of homogeneity over the outcomes seen >= 10 times in all; the rarer ones pooled."""
    from scipy.stats import chi2_contingency

    common = [k for k in a.keys() | b.keys() if a[k] + b[k] >= 10]
    rows = [[c[k] for k in common] + [sum(c.values()) - sum(c[k] for k in common)] for c in (a, b)]
    return float(chi2_contingency(rows).pvalue)


def test_sampled_rows_with_drafts_follow_the_models_distribution(tiny_pair, layout):
    """2,400 samples with and without drafts: the same distribution over the first three tokens (chi-square
    p > 0.001; the samples are fixed by their seeds, so a failure is a real one, one time in a thousand at worst
    on a machine whose kernels round differently), while drafts were both kept and rejected; the same test tells
    temperature 1.5 from 1.7 apart. (The tiny model likes to repeat its last token and the prompt ends in a run
    the lookup drafts from.) With the same seeds, the samples are the same tokens."""
    plain = tiny_engine_with(tiny_pair, "int8", draft_tokens=0)
    fast = tiny_engine_with(tiny_pair, "int8")
    needs_native(fast)
    prompt = list(b"the cat sat on the mat; zzzzzzzzzz")
    with_drafts = first_tokens(fast, prompt, 1.5, 2400, seeds=0)
    without = first_tokens(plain, prompt, 1.5, 2400, seeds=300_000)
    kept = fast.stats["accepted_tokens"]
    assert kept > 500 and fast.stats["draft_tokens"] - kept > 200
    assert same_distribution_p(with_drafts, without) > 0.001
    assert first_tokens(fast, prompt, 1.5, 400, seeds=0) == first_tokens(plain, prompt, 1.5, 400, seeds=0)
    hotter = first_tokens(plain, prompt, 1.7, 2400, seeds=200_000)
    assert same_distribution_p(hotter, without) < 1e-6  # the test has the power to see a changed distribution
