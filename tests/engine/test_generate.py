"""The decode loop against transformers' generate(), and its own contract: stops, seeds, batching, scoring."""

from __future__ import annotations

import pytest
import torch

from engine.generate import ContextLengthError, Engine, Request, generate, perplexity, score
from engine.model import build_model
from engine.sampling import SamplingParams

from .conftest import ByteTokenizer

PROMPTS = ["Write a haiku about the sea.", "What is the capital of France?", "List three uses of a brick."]


def chat_ids(tokenizer, text: str) -> list[int]:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=False
    )


@pytest.fixture(scope="module")
def real_engine(default_model):
    return Engine(build_model(default_model.config, dict(default_model.state_dict)), default_model.tokenizer)


@pytest.mark.slow
@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_equals_transformers_generate(real_engine, default_hf, default_model, prompt):
    ids = chat_ids(default_model.tokenizer, prompt)
    ours = generate(real_engine, ids, SamplingParams(max_new_tokens=64, temperature=0, min_tokens=64))
    ref = default_hf.generate(torch.tensor([ids]), max_new_tokens=64, min_new_tokens=64, do_sample=False)
    assert ours.choices[0].token_ids == ref[0, len(ids) :].tolist()
    assert len(ours.choices[0].token_ids) == 64 and ours.choices[0].finish_reason == "length"


@pytest.mark.slow
def test_beam_search_equals_transformers(real_engine, default_hf, default_model):
    ids = chat_ids(default_model.tokenizer, PROMPTS[0])
    ours = generate(real_engine, ids, SamplingParams(max_new_tokens=24, use_beam_search=True, n=4))
    ref = default_hf.generate(
        torch.tensor([ids]), max_new_tokens=24, do_sample=False, num_beams=4, num_return_sequences=4
    )
    eos = default_model.tokenizer.eos_token_id
    for choice, row in zip(ours.choices, ref, strict=True):
        expected = row[len(ids) :].tolist()
        while expected and expected[-1] == eos and len(expected) > len(choice.token_ids):
            expected.pop()  # transformers pads shorter beams with EOS
        assert choice.token_ids == expected


@pytest.mark.slow
def test_scoring_equals_transformers_logprobs(real_engine, default_hf, default_model):
    tok = default_model.tokenizer
    prompt = chat_ids(tok, "Is the sky blue? Answer yes or no.")
    continuation = tok("Yes, it is.")["input_ids"]
    ours = score(real_engine, prompt, continuation)
    with torch.no_grad():
        logits = default_hf(torch.tensor([prompt + continuation])).logits[0].float()
    ref = torch.log_softmax(logits, -1)[len(prompt) - 1 : -1].gather(-1, torch.tensor(continuation)[:, None])
    assert torch.allclose(torch.tensor(ours), ref[:, 0], atol=1e-4)


# --- tiny-model properties ------------------------------------------------------------------------------


def run(engine: Engine, prompt: list[int], **params) -> Request:
    return generate(engine, prompt, SamplingParams(**params))


def test_greedy_ties_to_argmax_of_reference(tiny_pair, tiny_engine):
    hf, _ = tiny_pair
    prompt = list(b"hello")
    ours = run(tiny_engine, prompt, max_new_tokens=20, temperature=0, ignore_eos=True).choices[0].token_ids
    ref = hf.generate(torch.tensor([prompt]), max_new_tokens=20, min_new_tokens=20, do_sample=False)
    assert ours == ref[0, len(prompt) :].tolist()


def test_same_seed_same_tokens_and_different_seed_differs(tiny_engine):
    a = run(tiny_engine, [1, 2, 3], max_new_tokens=30, seed=7, ignore_eos=True).choices[0].token_ids
    b = run(tiny_engine, [1, 2, 3], max_new_tokens=30, seed=7, ignore_eos=True).choices[0].token_ids
    c = run(tiny_engine, [1, 2, 3], max_new_tokens=30, seed=8, ignore_eos=True).choices[0].token_ids
    assert a == b and a != c


@pytest.mark.parametrize("params", [{"top_k": 1}, {"top_p": 1e-6}, {"temperature": 1e-6}])
def test_degenerate_processors_equal_greedy(tiny_engine, params):
    greedy = (
        run(tiny_engine, [5, 6, 7], max_new_tokens=25, temperature=0, ignore_eos=True).choices[0].token_ids
    )
    other = (
        run(tiny_engine, [5, 6, 7], max_new_tokens=25, seed=3, ignore_eos=True, **params).choices[0].token_ids
    )
    assert other == greedy


def test_n_samples_share_one_prefill_and_are_reproducible(tiny_engine):
    before = dict(tiny_engine.stats)
    request = run(tiny_engine, list(range(40)), max_new_tokens=10, n=4, seed=11, ignore_eos=True)
    assert [c.index for c in request.choices] == [0, 1, 2, 3]
    assert len({tuple(c.token_ids) for c in request.choices}) > 1
    # one prefill for all four samples, then 9 decode steps that advance all four together
    assert tiny_engine.stats["prefill_chunks"] - before["prefill_chunks"] == 1
    assert tiny_engine.stats["decode_steps"] - before["decode_steps"] == 9
    again = run(tiny_engine, list(range(40)), max_new_tokens=10, n=4, seed=11, ignore_eos=True)
    assert [c.token_ids for c in again.choices] == [c.token_ids for c in request.choices]


def test_concurrent_greedy_requests_equal_their_solo_results(tiny_engine):
    prompts = [list(range(i, i + 3 + 4 * i)) for i in range(10)]
    solo = [
        run(tiny_engine, p, max_new_tokens=15 + i, temperature=0).choices[0].token_ids
        for i, p in enumerate(prompts)
    ]
    requests = [
        tiny_engine.submit(Request(p, SamplingParams(max_new_tokens=15 + i, temperature=0)))
        for i, p in enumerate(prompts)
    ]
    tiny_engine.run()
    assert [r.choices[0].token_ids for r in requests] == solo
    assert tiny_engine.running == 0


def test_chunked_prefill_equals_one_shot(tiny_pair):
    hf, _ = tiny_pair
    prompt = list(range(200))
    chunked = Engine(build_model(hf.config, hf.state_dict()), ByteTokenizer(), prefill_chunk=16)
    whole = Engine(build_model(hf.config, hf.state_dict()), ByteTokenizer(), prefill_chunk=512)
    a = run(chunked, prompt, max_new_tokens=12, temperature=0, logprobs=2).choices[0]
    b = run(whole, prompt, max_new_tokens=12, temperature=0, logprobs=2).choices[0]
    assert a.token_ids == b.token_ids
    assert [round(x.logprob, 4) for x in a.logprobs] == [round(x.logprob, 4) for x in b.logprobs]


def test_stop_tokens_eos_min_tokens_and_length(tiny_engine):
    free = run(tiny_engine, [9, 9], max_new_tokens=40, temperature=0, ignore_eos=True).choices[0]
    target = free.token_ids[5]
    stopped = run(tiny_engine, [9, 9], max_new_tokens=40, temperature=0, stop_token_ids=[target]).choices[0]
    first = free.token_ids.index(target)
    assert stopped.token_ids == free.token_ids[: first + 1] and stopped.finish_reason == "stop"
    later = run(
        tiny_engine, [9, 9], max_new_tokens=40, temperature=0, stop_token_ids=[target], min_tokens=first + 1
    )
    assert target not in later.choices[0].token_ids[: first + 1]
    short = run(tiny_engine, [9, 9], max_new_tokens=3, temperature=0, ignore_eos=True).choices[0]
    assert len(short.token_ids) == 3 and short.finish_reason == "length"


def test_stop_strings_truncate_the_text(tiny_engine):
    free = run(tiny_engine, [40, 41], max_new_tokens=30, temperature=0, ignore_eos=True).choices[0]
    text = free.text
    stop = text[6:8]
    cut = text.find(stop)
    stopped = run(
        tiny_engine, [40, 41], max_new_tokens=30, temperature=0, ignore_eos=True, stop=[stop]
    ).choices[0]
    assert stopped.text == text[:cut] and stopped.finish_reason == "stop"


def test_streamed_deltas_add_up_to_the_text_and_never_split_a_character(tiny_engine):
    events = []
    request = Request([200, 201], SamplingParams(max_new_tokens=40, seed=5, ignore_eos=True), events.append)
    tiny_engine.submit(request)
    tiny_engine.run()
    deltas = [e.text for e in events if e.kind == "delta"]
    assert "".join(deltas) == request.choices[0].text
    assert all("\ufffd" not in d[-1:] for d in deltas[:-1])
    assert events[-1].kind == "done" and events[-1].finish_reason == "length"


def test_logprobs_are_the_models_distribution(tiny_pair, tiny_engine):
    hf, _ = tiny_pair
    prompt = [10, 20, 30]
    choice = run(tiny_engine, prompt, max_new_tokens=4, temperature=0, logprobs=3, ignore_eos=True).choices[0]
    with torch.no_grad():
        logits = hf(torch.tensor([prompt + choice.token_ids])).logits[0]
    ref = torch.log_softmax(logits.float(), -1)[len(prompt) - 1 : -1]
    for i, entry in enumerate(choice.logprobs):
        assert entry.token_id == choice.token_ids[i]
        assert abs(entry.logprob - float(ref[i, entry.token_id])) < 1e-4
        assert [t for t, _ in entry.top] == torch.topk(ref[i], 3).indices.tolist()


def test_perplexity_matches_reference(tiny_pair, tiny_engine):
    hf, _ = tiny_pair
    ids = list(range(30, 90))
    with torch.no_grad():
        logits = hf(torch.tensor([ids])).logits[0]
    nll = -torch.log_softmax(logits, -1)[:-1].gather(-1, torch.tensor(ids[1:])[:, None]).mean()
    assert perplexity(tiny_engine, ids) == pytest.approx(float(torch.exp(nll)), rel=1e-5)


def test_context_window_errors_and_clamps(tiny_engine):
    window = tiny_engine.window
    with pytest.raises(ContextLengthError) as err:
        tiny_engine.submit(Request(list(range(5)) * 200, SamplingParams()))
    assert str(err.value) == f"the prompt has 1000 tokens but the model's context window is {window} tokens"
    request = run(
        tiny_engine, [i % 250 for i in range(window - 4)], max_new_tokens=100, temperature=0, ignore_eos=True
    )
    assert request.max_tokens_clamped_to == 4 and len(request.choices[0].token_ids) == 4
    with pytest.raises(ValueError, match="token id 300 is outside the vocabulary of 257"):
        tiny_engine.submit(Request([1, 300], SamplingParams()))
    with pytest.raises(ValueError, match="top_p must be in"):
        tiny_engine.submit(Request([1], SamplingParams(top_p=0)))


def test_cancel_frees_rows_at_once(tiny_engine):
    keep = tiny_engine.submit(
        Request([1, 2], SamplingParams(max_new_tokens=30, temperature=0, ignore_eos=True))
    )
    drop = tiny_engine.submit(
        Request([3, 4], SamplingParams(max_new_tokens=30, n=3, temperature=0.8, ignore_eos=True))
    )
    for _ in range(4):
        tiny_engine.step()
    assert tiny_engine.running == 4
    drop.cancel()
    tiny_engine.step()
    assert tiny_engine.running == 1 and drop.done
    tiny_engine.run()
    solo = run(tiny_engine, [1, 2], max_new_tokens=30, temperature=0, ignore_eos=True)
    assert keep.choices[0].token_ids == solo.choices[0].token_ids
